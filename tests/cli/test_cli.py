"""The nbbatch command, run as a user would: real processes, real workspace."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from nbbatch import Batch, Workspace
from nbbatch import _cli as cli

CLI = [sys.executable, "-m", "nbbatch"]


def nbbatch(
    *args: str, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_run_history_show_export(tmp_path: Path) -> None:
    ws = str(tmp_path / "ws")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# comment\na lighthouse at dusk\n\na fox in snow\n")
    run = nbbatch(
        "run",
        "--workspace",
        ws,
        "--concurrency",
        "2",
        "--prompts-file",
        str(prompts),
        "--size",
        "128x128",
        "a whale",
        "--quiet",
    )
    batch_id = run.stdout.strip()
    assert len(batch_id) == 12
    assert f"batch {batch_id}: 3 succeeded" in run.stderr

    history = json.loads(nbbatch("history", "--workspace", ws, "--json").stdout)
    assert history == [
        {**history[0], "id": batch_id, "status": "succeeded", "counts": {"succeeded": 3}}
    ]
    shown = nbbatch("show", batch_id, "--workspace", ws).stdout
    assert "a lighthouse at dusk" in shown and shown.count("succeeded") == 4

    out = tmp_path / "out.zip"
    nbbatch("export", batch_id, str(out), "--workspace", ws)
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read("manifest.json"))
    assert len(names) == 4 and "manifest.json" in names
    assert {im["prompt"] for im in manifest["images"]} == {
        "a whale",
        "a lighthouse at dusk",
        "a fox in snow",
    }


def test_failures_give_exit_code_1_and_say_why(tmp_path: Path) -> None:
    proc = nbbatch(
        "run",
        "-w",
        str(tmp_path / "ws"),
        "-q",
        "fine",
        "forbidden thing",
        "-o",
        'fail_prompts=["forbidden"]',
        check=False,
    )
    assert proc.returncode == 1
    assert "refused" in proc.stderr and "1 failed, 1 succeeded" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run"], "no prompts"),
        (["run", "-t", "{a|b|c} {d|e}", "--max-tasks", "5"], "more than"),
        (["run", "   "], "prompt is empty"),
        (["run", "x", "--provider", "nope"], "unknown provider 'nope'"),
        (["run", "x", "--concurrency", "0"], "concurrency must be"),
        (["run", "x", "-o", "colour=blue"], "does not accept these options"),
        (["run", "x", "--size", "huge"], "size must look like"),
        (["export", "abc", "out.zip"], "no batch 'abc'"),
        (["resume", "abc"], "no batch 'abc'"),
    ],
)
def test_bad_input_is_a_one_line_error_not_a_traceback(
    tmp_path: Path, args: list[str], message: str
) -> None:
    proc = nbbatch(*args, "--workspace", str(tmp_path / "ws"), check=False)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    # nothing half-made was journaled
    if (tmp_path / "ws").exists():
        assert json.loads(nbbatch("history", "-w", str(tmp_path / "ws"), "--json").stdout) == []


def test_ctrl_c_pauses_saves_in_flight_and_resume_finishes(tmp_path: Path) -> None:
    ws = str(tmp_path / "ws")
    proc = subprocess.Popen(
        [
            *CLI,
            "run",
            "-w",
            ws,
            "-c",
            "2",
            "-q",
            "-o",
            "latency=1.0",
            *[f"slow image {i}" for i in range(12)],
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    batch_id = proc.stdout.readline().strip()
    # Ctrl-C once the first image is journaled (waiting on the journal, not on a guessed
    # time): its partner started with it and is in flight, and ten tasks, five seconds of
    # work at -c 2, are still waiting.
    with Workspace(ws) as watch:
        deadline = time.monotonic() + 60
        while not watch.batches()[0].counts.get("succeeded"):
            assert time.monotonic() < deadline, "no image in 60 s"
            time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert f"nbbatch resume {batch_id}" in err
    (summary,) = json.loads(nbbatch("history", "-w", ws, "--json").stdout)
    counts = summary["counts"]
    assert counts.get("running", 0) == 0 and counts.get("interrupted", 0) == 0
    assert 2 <= counts["succeeded"] < 12, "in-flight requests finished and were saved"
    assert counts["succeeded"] + counts["idle"] == 12

    resumed = nbbatch("resume", batch_id, "-w", ws, "-q", "-c", "4")
    assert "succeeded" in resumed.stderr
    (summary,) = json.loads(nbbatch("history", "-w", ws, "--json").stdout)
    assert summary["counts"] == {"succeeded": 12}


def test_templates_and_a1111_style_prompt_files(tmp_path: Path) -> None:
    ws = str(tmp_path / "ws")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(
        'a castle --seed 5 --steps 12 --negative_prompt "blurry, low quality"\n'
        "a tower --colour red\n"
        "--seed 3\n"
    )
    run = nbbatch(
        "run", "-w", ws, "-q", "-f", str(prompts), "-t", "a {red|blue} car", "--size", "64x64"
    )
    assert "skipped" in run.stderr and "line 3" in run.stderr
    assert "colour" in run.stderr  # the unknown option is reported, not silently dropped
    batch_id = run.stdout.strip()
    tasks = json.loads(nbbatch("show", batch_id, "-w", ws, "--json").stdout)
    by_prompt = {t["prompt"]: t for t in tasks}
    assert set(by_prompt) == {"a red car", "a blue car", "a castle", "a tower"}
    assert by_prompt["a castle"]["params"] == {
        "size": "64x64",
        "seed": 5,
        "steps": 12,
        "negative_prompt": "blurry, low quality",
    }
    assert by_prompt["a castle"]["images"][0]["seed"] == 5


def test_saved_provider_configurations_are_used_by_name(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from nbbatch import ProviderConfig, Settings, save_settings

    monkeypatch.setenv("NBBATCH_CONFIG_DIR", str(tmp_path / "config"))
    settings = Settings()
    settings.add(
        ProviderConfig(provider="demo", name="picky-demo", options={"fail_prompts": ["forbidden"]})
    )
    save_settings(settings)
    assert "picky-demo  (saved configuration: demo" in nbbatch("providers").stdout
    ws = str(tmp_path / "ws")
    proc = nbbatch("run", "-w", ws, "-q", "-p", "picky-demo", "fine", "forbidden", check=False)
    assert proc.returncode == 1 and "1 failed, 1 succeeded" in proc.stderr
    (summary,) = json.loads(nbbatch("history", "-w", ws, "--json").stdout)
    assert summary["provider"] == "picky-demo"  # resume uses the same configuration
    resumed = nbbatch("resume", summary["id"], "-w", ws, "-q", "--retry-failed", check=False)
    assert resumed.returncode == 1 and "refused" in resumed.stderr


# -- hostile input on the terminal ---------------------------------------------
# Defect 6: `show` wrote control characters from the journal to the terminal. Defect 9:
# --max-tasks capped the lines of a prompts file too.


def test_show_escapes_control_characters_instead_of_writing_them_to_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws_path = tmp_path / "ws"
    with Workspace(ws_path) as ws:
        batch = Batch.create(["a fox"], workspace=ws, name="n\x1b[2Jame")
    with sqlite3.connect(ws_path / "nbbatch.sqlite3") as conn:
        # An older workspace, or a server's error echoed into the journal.
        conn.execute(
            "UPDATE tasks SET status='failed', error=?, prompt=?",
            ("server said \x1b[31mno\u202e", "raw \x1b[5m prompt"),
        )
    assert cli.main(["show", batch.id, "--workspace", str(ws_path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out
    assert "\\x1b[31mno\\u202e" in out and "n\\x1b[2Jame" in out
    assert cli.main(["history", "--workspace", str(ws_path)]) == 0
    assert "\x1b" not in capsys.readouterr().out


def test_max_tasks_caps_templates_but_not_the_lines_of_a_prompts_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = tmp_path / "many.txt"
    prompts.write_text("".join(f"prompt {i} --width 32 --height 32\n" for i in range(12)))
    monkeypatch.setattr(cli, "LARGE_FILE_TASKS", 10)
    ws = str(tmp_path / "ws")
    code = cli.main(["run", "-q", "-f", str(prompts), "--max-tasks", "5", "-w", ws])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "lists 12 tasks" in err and "nbbatch resume" in err  # warned, told how to go on
    code = cli.main(["run", "-q", "-t", "{a|b|c} {d|e}", "--max-tasks", "5", "-w", ws])
    assert code == 2 and "more than 5" in capsys.readouterr().err


@pytest.mark.slow  # a real process, and the probe's first wait of 1 s
def test_a_run_waits_for_a_webui_that_is_down_and_finishes_when_it_is_back(
    tmp_path: Path,
) -> None:
    import threading

    from nbbatch.testing import FakeA1111

    with FakeA1111() as server:
        server.go_down()
        args = ["run", "-w", str(tmp_path / "ws"), "-q", "a fox", "an owl", "-p", "a1111"]
        args += ["-o", f"base_url={server.url}", "-o", "poll_interval=null"]
        proc = subprocess.Popen(
            [*CLI, *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        lines: list[str] = []
        waiting = threading.Event()

        def read() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.append(line)
                if "is not answering; waiting for it — 2 tasks left (Ctrl-C to stop)" in line:
                    waiting.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            assert waiting.wait(60), "".join(lines)
            assert proc.poll() is None  # paused, waiting: not stopped as on a full disk
            server.come_back()
            assert proc.wait(60) == 0, "".join(lines)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(10)
            assert proc.stdout is not None
            proc.stdout.close()
            proc.stderr.close()  # type: ignore[union-attr]
    text = "".join(lines)
    assert ": 2 succeeded\n" in text and " failed (" not in text  # no task failed
    assert len(server.runs) == 2


@pytest.mark.slow
def test_run_with_batch_api_submits_one_job_and_collects_its_results(tmp_path: Path) -> None:
    from nbbatch.testing import FakeOpenAI

    ws = str(tmp_path / "ws")
    # no clock given: the fake's job completes by itself within about a second
    with FakeOpenAI(api_key="test-key-cli-batch-0001", render="fast", max_side=64) as server:
        run = nbbatch(
            "run", "-w", ws, "-p", "openai", "--batch-api", "-q",
            "-o", f"base_url={server.base_url}", "-o", "api_key=test-key-cli-batch-0001",
            "--size", "64x64", "a fox", "an owl", "a forbidden owl", check=False,
        )  # fmt: skip
        created = list(server.batch_api.created)
    batch_id = run.stdout.strip()
    assert run.returncode == cli.EXIT_FAILED  # one prompt was refused
    assert "1 failed, 2 succeeded" in run.stderr and "(refused)" in run.stderr
    assert len(created) == 1 and created[0]["metadata"]["nbbatch_batch"] == batch_id
    assert not server.calls("/v1/images/generations", "POST")


@pytest.mark.slow
def test_resume_collects_tasks_at_the_batch_api_without_sending_them_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nbbatch.testing import FakeOpenAI

    ws_path = tmp_path / "ws"
    key = "test-key-cli-batch-0002"
    with FakeOpenAI(api_key=key, render="fast", max_side=64) as server:
        options = ["-o", f"base_url={server.base_url}", "-o", f"api_key={key}"]
        with Workspace(ws_path) as ws:
            batch = Batch.create(["a fox", "an owl"], workspace=ws)

            async def submit_then_stop(seconds: float) -> None:
                assert batch.runner is not None
                batch.runner.stop()  # as if the kernel went away after submitting

            from nbbatch.providers import OpenAIProvider

            provider = OpenAIProvider(api_key=key, base_url=server.base_url)
            batch.run_sync(provider, batch_api={"sleep": submit_then_stop})
        code = cli.main(["resume", batch.id, "-w", str(ws_path), "-p", "openai", "-q", *options])
        created = len(server.batch_api.created)
    err = capsys.readouterr().err
    assert code == cli.EXIT_OK, err
    assert "2 task(s) are at the batch API: collecting" in err and "2 succeeded" in err
    assert created == 1
