"""A process killed with SIGKILL in the middle of edits, moves and removes leaves a
journal that is exactly the state after the last acknowledged change — or after the one
that was being made — never a mix."""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nbbatch import Batch, Workspace

# The child makes random changes forever. Before each it prints what the batch will look
# like once the change is made (BEGIN), after it returns it prints ACK: the journal must
# then equal the last acknowledged picture or the one that was being made.
CHILD = textwrap.dedent(
    """
    import json, random, sys
    from nbbatch import Batch, Workspace

    ws_path, batch_id, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(seed)
    ws = Workspace(ws_path)
    batch = Batch.load(batch_id, ws)
    refs = [ws.add_reference(open(p, "rb").read(), p) for p in sys.argv[4:]]

    def picture(tasks):
        return [[t.id, t.prompt, [r.sha256 for r in t.references]] for t in tasks]

    n = 0
    print("STARTED", flush=True)
    while True:
        n += 1
        op = rng.choice(["edit", "edit", "move", "remove", "add", "duplicate"])
        tasks = list(batch.tasks)
        if op == "remove" and len(tasks) < 4:
            op = "add"
        if op == "edit":
            t = rng.choice(tasks)
            prompt = f"edited {n}"
            chosen = rng.sample(refs, rng.randint(0, len(refs)))
            after = [[x.id, prompt if x is t else x.prompt,
                      [r.sha256 for r in chosen] if x is t else [r.sha256 for r in x.references]]
                     for x in tasks]
            print("BEGIN", json.dumps(after), flush=True)
            batch.edit(t, prompt=prompt, references=chosen)
        elif op == "move":
            t = rng.choice(tasks)
            to = rng.randrange(len(tasks))
            after = list(tasks)
            after.insert(to, after.pop(after.index(t)))
            print("BEGIN", json.dumps(picture(after)), flush=True)
            batch.move(t, to)
        elif op == "remove":
            doomed = rng.sample(tasks, rng.randint(1, 2))
            print("BEGIN", json.dumps(picture([x for x in tasks if x not in doomed])), flush=True)
            batch.remove(*doomed)
        else:
            # the new task's id is random: the picture lists "?" for it
            if op == "add":
                at = len(tasks)
                src = None
            else:
                src = rng.choice(tasks)
                at = tasks.index(src) + 1
            prompt = f"new {n}" if src is None else src.prompt
            shas = [] if src is None else [r.sha256 for r in src.references]
            after = picture(tasks)
            after.insert(at, ["?", prompt, shas])
            print("BEGIN", json.dumps(after), flush=True)
            if src is None:
                batch.add([prompt])
            else:
                batch.duplicate(src)
        print("ACK", json.dumps(picture(batch.tasks)), flush=True)
    """
)

ROUNDS = 8


def _png(tmp: Path, i: int) -> Path:
    from PIL import Image

    p = tmp / f"ref{i}.png"
    Image.new("RGB", (8, 8), (i * 40, 10, 10)).save(p)
    return p


def _journal(ws_path: Path, batch_id: str) -> list[list[object]]:
    with Workspace(ws_path) as ws:
        return [
            [t.id, t.prompt, [r.sha256 for r in t.references]]
            for t in Batch.load(batch_id, ws).tasks
        ]


def _matches(journal: list[list[object]], picture: list[list[object]]) -> bool:
    if len(journal) != len(picture):
        return False
    return all(
        p[0] in ("?", j[0]) and p[1:] == j[1:] for j, p in zip(journal, picture, strict=True)
    )


@pytest.mark.kill
def test_sigkill_during_edits_leaves_the_last_acknowledged_or_the_next_state(
    tmp_path: Path,
) -> None:
    rng = random.Random(4321)
    ws_path = tmp_path / "ws"
    refs = [str(_png(tmp_path, i)) for i in range(3)]
    with Workspace(ws_path) as ws:
        batch_id = Batch.create([f"task {i}" for i in range(12)], workspace=ws).id
    changes = 0
    for round_no in range(ROUNDS):
        acked = _journal(ws_path, batch_id)
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(ws_path), batch_id, str(round_no), *refs],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        try:
            assert proc.stdout.readline().strip() == "STARTED"
            # let it make a few dozen changes, then kill it wherever it is
            time.sleep(rng.uniform(0.05, 0.3))
            proc.kill()
            proc.wait()
            lines = proc.stdout.read().splitlines()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        pending: list[list[object]] | None = None
        for line in lines:
            kind, _, payload = line.partition(" ")
            try:
                picture = json.loads(payload)
            except ValueError:
                continue  # cut off by the kill: a half BEGIN came before any change
            if kind == "BEGIN":
                pending = picture
            elif kind == "ACK":
                acked, pending = picture, None
                changes += 1
        journal = _journal(ws_path, batch_id)
        assert _matches(journal, acked) or (pending is not None and _matches(journal, pending)), (
            f"round {round_no}: the journal is neither the acknowledged nor the next state"
        )
        con = sqlite3.connect(ws_path / "nbbatch.sqlite3")
        try:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            orders = [r[0] for r in con.execute("SELECT ord FROM tasks ORDER BY ord")]
            assert len(orders) == len(set(orders)), "two tasks share a position"
            dangling = con.execute(
                "SELECT count(*) FROM task_refs r LEFT JOIN tasks t ON t.id = r.task_id "
                "WHERE t.id IS NULL"
            ).fetchone()[0]
            assert dangling == 0
        finally:
            con.close()
    assert changes > ROUNDS * 5, f"only {changes} changes were made before the kills"
