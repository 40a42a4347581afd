"""The ``nbbatch`` command: run, resume, list and export batches from a shell.

Exit codes: 0 every task asked for succeeded; 1 some task failed, was cancelled or was
left undone (e.g. another live process is running it); 2 bad usage or a typed nbbatch
error; 130 stopped by Ctrl-C (the batch can be resumed).

Text that came from prompts, files or servers is escaped before it reaches the terminal
(:func:`_safe`): a prompt holding ESC must not be able to drive the terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import re
import signal
import sys
from collections.abc import Sequence
from typing import Any

from .core._errors import ConfigError, NbbatchError
from .core._events import Event, RunState, TaskCancelled, TaskFailed, TaskInterrupted, TaskSucceeded
from .core._model import Params, Task, TaskStatus
from .engine._batch import Batch
from .engine._runner import DEFAULT_CONCURRENCY, Runner, check_concurrency
from .engine._salvage import salvage
from .engine._settings import load_settings
from .engine._store import Workspace, default_workspace
from .planning._sources import read_prompts
from .planning._templates import expand
from .providers import Provider, get_provider

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: above this many tasks from a prompts file the CLI warns (it never refuses what a file lists)
LARGE_FILE_TASKS = 10_000

# C0/C1 controls, DEL, and the bidirectional embeddings, overrides and isolates that can
# make a terminal line read differently from its bytes.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _safe(text: object) -> str:
    """``text`` with terminal-unsafe characters shown as escapes (``\\x1b``, ``\\u202e``)."""

    def escape(m: re.Match[str]) -> str:
        code = ord(m.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _UNSAFE.sub(escape, str(text))


def _print(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


def _params(args: argparse.Namespace) -> Params:
    return Params(
        size=args.size,
        n=args.n,
        seed=args.seed,
        steps=args.steps,
        negative_prompt=args.negative_prompt,
        model=args.model,
    )


def _pace_options(args: argparse.Namespace) -> dict[str, Any]:
    """``--budget``, ``--price``, ``--allow-unknown-prices``, ``--deadline`` for start()."""
    prices: dict[str, float] = {}
    for item in getattr(args, "price", None) or []:
        name, sep, value = item.partition("=")
        try:
            prices[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ConfigError(f"--price takes NAME=PRICE (e.g. openai=0.04), got {item!r}")
    deadline: object = getattr(args, "deadline", None)
    if isinstance(deadline, str):
        with contextlib.suppress(ValueError):
            deadline = float(deadline)
    return {
        "budget": getattr(args, "budget", None),
        "prices": prices or None,
        "allow_unknown_prices": bool(getattr(args, "allow_unknown_prices", False)),
        "deadline": deadline,
    }


async def _drive(
    batch: Batch, provider: Provider, args: argparse.Namespace, *, retry_failed: bool = False
) -> int:
    """Run ``batch`` with a progress bar; Ctrl-C pauses, a second Ctrl-C stops."""
    try:
        return await _drive_with(batch, provider, args, retry_failed)
    finally:
        await provider.aclose()


async def _drive_with(
    batch: Batch, provider: Provider, args: argparse.Namespace, retry_failed: bool
) -> int:
    from tqdm import tqdm

    runner: Runner = batch.start(
        provider,
        concurrency=args.concurrency,
        retry=args.retries,
        retry_failed=retry_failed,
        batch_api=getattr(args, "batch_api", False),
        **_pace_options(args),
    )
    total = runner.progress().total
    bar = tqdm(
        total=total, unit="task", desc=f"batch {batch.id}", file=sys.stderr, disable=args.quiet
    )
    failures: list[str] = []

    def on_event(event: Event) -> None:
        if isinstance(event, (TaskSucceeded, TaskCancelled, TaskInterrupted)):
            bar.update(1)
        elif isinstance(event, TaskFailed):
            bar.update(1)
            failures.append(
                f"  task {event.task.id} failed ({_safe(event.kind)}): {_safe(event.error)}"
            )
            bar.set_postfix(failed=len(failures))

    runner.subscribe(on_event)
    runner.server_wait.hint = "Ctrl-C to stop"  # a server away: said, then waited for
    interrupts = 0
    loop = asyncio.get_running_loop()

    def on_sigint() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            runner.pause()
            bar.write(
                "Pausing: requests in flight will finish and be saved (Ctrl-C again to stop "
                "them now).",
                file=sys.stderr,
            )
        else:
            runner.stop()

    with contextlib.suppress(NotImplementedError):  # Windows event loops: no handlers
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    waiter = asyncio.ensure_future(runner.wait())
    storage: str | None = None  # why the run paused by itself (a full disk)
    waiting_for: str | None = None  # a server that does not answer (said once)
    try:
        while not waiter.done():
            # After the first Ctrl-C, stop once the in-flight requests have been saved.
            if interrupts and runner.active == 0 and runner.state is RunState.PAUSED:
                runner.stop()
            # A full disk paused the run: nobody is here to press Resume, so stop once
            # the requests in flight are settled and say how to go on.
            if runner.server_wait.waiting:  # it resumes by itself when the server answers
                if runner.paused_reason is not None and runner.paused_reason != waiting_for:
                    waiting_for = runner.paused_reason
                    bar.write(waiting_for, file=sys.stderr)
            elif storage is None and runner.paused_reason is not None:
                storage = runner.paused_reason
                bar.write(storage, file=sys.stderr)
            if storage is not None and runner.active == 0 and not runner.done:
                runner.stop()
            await asyncio.wait([waiter], timeout=0.1)
    finally:
        with contextlib.suppress(NotImplementedError):
            loop.remove_signal_handler(signal.SIGINT)
        bar.close()
    problem = getattr(runner, "problem", None)  # a batch API run's last problem
    if problem:
        _print(f"batch API: {_safe(problem)}")
    for line in failures[:20]:
        _print(line)
    if len(failures) > 20:
        _print(f"  ... and {len(failures) - 20} more failures")
    counts = _journal_counts(batch)
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    _print(f"batch {batch.id}: {summary}")
    _print(f"images: {batch.workspace.images_dir}")
    if storage is not None:
        _print(f"{storage}: nbbatch resume {batch.id} --workspace {batch.workspace.path}")
        return EXIT_FAILED
    if interrupts:
        _print(
            f"Stopped. Resume with: nbbatch resume {batch.id} --workspace {batch.workspace.path}"
        )
        return EXIT_INTERRUPTED
    if runner.left_to_others:
        pids = sorted({pid for pid in runner.left_to_others.values() if pid})
        who = f" (process {', '.join(map(str, pids))})" if pids else ""
        _print(
            f"{len(runner.left_to_others)} task(s) were not run here: another live run"
            f"{who} is running them. Wait for it to finish (or stop it), then run "
            f"`nbbatch resume {batch.id} --workspace {batch.workspace.path}` again."
        )
        return EXIT_FAILED
    if total and runner.progress().succeeded == total:
        return EXIT_OK
    return EXIT_FAILED


def _journal_counts(batch: Batch) -> dict[str, int]:
    """The batch's counts as the journal holds them (what a later command will see)."""
    for summary in batch.workspace.batches():
        if summary.id == batch.id:
            return dict(summary.counts)
    return batch.counts


def _provider_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; values parse as JSON when they can (numbers, lists, true)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option takes KEY=VALUE, got {pair!r}")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        options[key.strip().replace("-", "_")] = value
    return options


def _make_provider(args: argparse.Namespace) -> Provider:
    """Check the options and build the provider before anything is journaled."""
    settings = load_settings()
    # the saved run defaults (Settings.run) stand in for options not given
    if args.concurrency is None:
        args.concurrency = settings.run.concurrency
    if args.retries is None:
        args.retries = settings.run.retries
    check_concurrency(args.concurrency)
    if args.retries < 0:
        raise ConfigError("--retries must be 0 or more")
    options = _provider_options(args.option)
    if args.provider in settings.providers:
        # A saved configuration (nbbatch.save_settings): its base URL, model, options.
        config = settings.get(args.provider)
        if options:
            config = dataclasses.replace(config, options={**config.options, **options})
        return config.build()
    return get_provider(args.provider, **options)


def _cmd_run(args: argparse.Namespace) -> int:
    params = _params(args)
    provider = _make_provider(args)
    if not (args.prompts or args.prompts_file or args.template):
        raise ConfigError(
            "no prompts: give them as arguments, with --prompts-file FILE or --template T"
        )
    with Workspace(args.workspace) as ws:
        tasks = [Task(p, params=params) for p in args.prompts]
        # --max-tasks guards against template explosions ("{a|b} x 12 slots"); it is not
        # a limit on what a prompts file lists line by line, which is what was asked for.
        expanded = 0
        for template in args.template:
            made = expand(template, params=params, cap=args.max_tasks)
            expanded += len(made)
            tasks += made
        if expanded > args.max_tasks:
            raise ConfigError(
                f"the templates expand to {expanded:,} tasks, more than --max-tasks "
                f"{args.max_tasks:,}; raise it if you mean it"
            )
        if args.prompts_file:
            from_file = read_prompts(args.prompts_file, params=params, workspace=ws)
            for skipped in from_file.skipped:
                _print(_safe(f"skipped {skipped}"))
            for warning in from_file.warnings:
                _print(_safe(f"warning: {warning}"))
            if len(from_file) > LARGE_FILE_TASKS:
                _print(
                    f"warning: {args.prompts_file} lists {len(from_file):,} tasks; they are all "
                    "queued. Stop with Ctrl-C at any time and continue later with "
                    "`nbbatch resume`; split the file to run it in parts."
                )
            tasks += from_file
        if not tasks:
            raise ConfigError("no prompts: every line of the prompts file was skipped")
        # Record the name as typed (a saved configuration or a provider) for `resume`.
        batch = Batch.create(
            tasks, workspace=ws, name=args.name, params=params, provider=args.provider
        )
        print(batch.id, flush=True)  # first line on stdout: scripts can capture it
        _print(
            f"batch {batch.id}: {len(batch)} tasks on provider {_safe(repr(args.provider))} "
            f"(workspace {ws.path})"
        )
        return asyncio.run(_drive(batch, provider, args))


def _cmd_resume(args: argparse.Namespace) -> int:
    with Workspace(args.workspace) as ws:
        batch = Batch.load(args.batch_id, ws)
        if args.provider is None:
            args.provider = batch.provider or "demo"
        todo = batch.runnable(retry_failed=args.retry_failed)
        print(batch.id, flush=True)
        at_api = [t for t in batch.tasks if t.error_kind == "batch_api"]
        if at_api and not args.batch_api:
            # tasks at a provider's batch API are collected from there, never re-sent
            _print(f"batch {batch.id}: {len(at_api)} task(s) are at the batch API: collecting")
            args.batch_api = True
        if not todo and not at_api:
            busy = [
                t.id for t in batch.tasks if t.status in (TaskStatus.QUEUED, TaskStatus.RUNNING)
            ]
            if busy:
                # Opening the workspace repaired every dead run's tasks: these are live.
                pids = sorted(set(ws.claimed_elsewhere(busy).values()))
                who = f" (process {', '.join(map(str, pids))})" if pids else ""
                _print(
                    f"batch {batch.id}: {len(busy)} task(s) are being run by another live "
                    f"run{who}; nothing to resume here until it ends"
                )
                return EXIT_FAILED
            _print(f"batch {batch.id}: nothing to resume ({batch.status})")
            return EXIT_OK if batch.status == "succeeded" else EXIT_FAILED
        provider = _make_provider(args)
        _print(f"batch {batch.id}: resuming {len(todo)} task(s) on provider {args.provider!r}")
        return asyncio.run(_drive(batch, provider, args, retry_failed=args.retry_failed))


def _cmd_history(args: argparse.Namespace) -> int:
    with Workspace(args.workspace) as ws:
        summaries = ws.history()
    if args.json:
        print(json.dumps([s.to_dict() for s in summaries], indent=2))
        return EXIT_OK
    if not summaries:
        _print(f"no batches in {ws.path}")
        return EXIT_OK
    for s in summaries:
        counts = ", ".join(f"{v} {k}" for k, v in sorted(s.counts.items()))
        print(
            f"{s.id}  {s.status:<11}  {s.total:>5} tasks  {s.images:>5} images  "
            f"{_safe(s.name)}  ({counts})"
        )
    return EXIT_OK


def _cmd_show(args: argparse.Namespace) -> int:
    with Workspace(args.workspace) as ws:
        batch = Batch.load(args.batch_id, ws)
    if args.json:
        print(json.dumps([t.to_record() for t in batch.tasks], indent=2))
        return EXIT_OK
    print(f"batch {batch.id} {_safe(repr(batch.name))}: {batch.status}")
    for t in batch.tasks:
        line = f"{t.order + 1:>5}  {t.id}  {t.status.value:<11} {_safe(t.prompt[:60])}"
        if t.status in (TaskStatus.FAILED, TaskStatus.INTERRUPTED) and t.error:
            line += f"  [{_safe(t.error[:80])}]"
        print(line)
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    with Workspace(args.workspace) as ws:
        batch = Batch.load(args.batch_id, ws)
        out = batch.export_zip(args.output)
    _print(f"wrote {out} ({len(batch.images)} images + manifest.json)")
    return EXIT_OK


def _cmd_repair(args: argparse.Namespace) -> int:
    report = salvage(args.workspace if args.workspace is not None else default_workspace())
    _print(report.summary())
    return EXIT_OK


def _cmd_providers(args: argparse.Namespace) -> int:
    from .providers import available_providers

    for name in available_providers():
        print(name)
    for config in load_settings():
        print(
            f"{config.name}  (saved configuration: {config.provider}"
            f"{', ' + config.base_url if config.base_url else ''})"
        )
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nbbatch", description="Batch AI image generation (headless).")
    sub = p.add_subparsers(dest="command", required=True)

    def workspace(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--workspace",
            "-w",
            default=None,
            help=f"workspace folder (default: $NBBATCH_WORKSPACE or {default_workspace()})",
        )

    def running(sp: argparse.ArgumentParser, provider_default: str | None) -> None:
        sp.add_argument(
            "--provider",
            "-p",
            default=provider_default,
            help="provider name (see `nbbatch providers`)",
        )
        sp.add_argument(
            "--concurrency",
            "-c",
            type=int,
            default=None,
            help=f"tasks at once (1-10; default: the saved setting, else {DEFAULT_CONCURRENCY})",
        )
        sp.add_argument(
            "--retries",
            type=int,
            default=None,
            help="automatic retries per task (default: the saved setting, else 2)",
        )
        sp.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
        sp.add_argument(
            "--budget",
            type=float,
            default=None,
            help="stop sending before the batch's spend would pass this amount (journaled)",
        )
        sp.add_argument(
            "--price",
            action="append",
            default=[],
            metavar="NAME=PRICE",
            help="price of one image for this run, e.g. --price openai/gpt-image-1=0.042",
        )
        sp.add_argument(
            "--allow-unknown-prices",
            action="store_true",
            help="under a budget, run tasks whose price is unknown anyway",
        )
        sp.add_argument(
            "--deadline",
            default=None,
            help="start no request after this: seconds from now or a time like 07:00",
        )
        sp.add_argument(
            "--batch-api",
            action="store_true",
            help="send the tasks through the provider's batch API (OpenAI: half price, "
            "results within 24 h; Ctrl-C stops waiting, `nbbatch resume` collects them)",
        )
        sp.add_argument(
            "--option",
            "-o",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="provider option, e.g. -o base_url=http://127.0.0.1:7860 -o latency=0.5",
        )

    run = sub.add_parser("run", help="create a batch from prompts and run it")
    run.add_argument("prompts", nargs="*", help="prompts (one task each)")
    run.add_argument(
        "--prompts-file",
        "-f",
        help=".txt (one prompt per line, A1111 options like --seed 5 allowed), .csv or .jsonl",
    )
    run.add_argument(
        "--template",
        "-t",
        action="append",
        default=[],
        help="Dynamic Prompts template, e.g. 'a {red|blue} {car|boat}' (all combinations)",
    )
    run.add_argument(
        "--max-tasks",
        type=int,
        default=1000,
        help="refuse templates expanding to more tasks than this (default 1000); prompts "
        "given as arguments or listed in a file are never refused",
    )
    run.add_argument("--name", help="batch name")
    run.add_argument("--n", type=int, default=1, help="images per task")
    run.add_argument("--size", help="WIDTHxHEIGHT, e.g. 512x512")
    run.add_argument("--seed", type=int)
    run.add_argument("--steps", type=int)
    run.add_argument("--negative-prompt")
    run.add_argument("--model")
    workspace(run)
    running(run, "demo")
    run.set_defaults(func=_cmd_run)

    resume = sub.add_parser("resume", help="continue an interrupted or incomplete batch")
    resume.add_argument("batch_id")
    resume.add_argument(
        "--retry-failed", action="store_true", help="also re-run failed and cancelled tasks"
    )
    workspace(resume)
    running(resume, None)
    resume.set_defaults(func=_cmd_resume)

    history = sub.add_parser("history", help="list the batches in a workspace")
    history.add_argument("--json", action="store_true")
    workspace(history)
    history.set_defaults(func=_cmd_history)

    show = sub.add_parser("show", help="list the tasks of a batch")
    show.add_argument("batch_id")
    show.add_argument("--json", action="store_true")
    workspace(show)
    show.set_defaults(func=_cmd_show)

    export = sub.add_parser("export", help="write a batch's images and manifest to a ZIP")
    export.add_argument("batch_id")
    export.add_argument("output", help="path of the .zip to write")
    workspace(export)
    export.set_defaults(func=_cmd_export)

    repair = sub.add_parser(
        "repair",
        help="salvage a damaged workspace journal: keep every row that can be read "
        "(close every notebook using the workspace first)",
    )
    workspace(repair)
    repair.set_defaults(func=_cmd_repair)

    providers = sub.add_parser("providers", help="list the available providers")
    providers.set_defaults(func=_cmd_providers)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except NbbatchError as exc:
        _print(f"nbbatch: error: {_safe(exc)}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _print("nbbatch: interrupted")
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
