"""The Compare table's kernel side at 1,000 tasks x 6 configurations.

A comparison of 1,000 tasks on 6 configurations (6,000 cells, every one done with an
image; the cells share one image file so the setup is quick) is journaled; then, timed
in one run:

(a) journaling it: ``nbbatch.compare(...)`` (6,000 tasks and the layout);
(b) one page of the table as the browser asks for it while scrolling: ``rows`` of 20
    rows x 6 cells with their thumbnails (already in the workspace's thumbnail cache),
    median over pages spread across the table — against a plain baseline that reads the
    same 120 tasks' fields from a dict and the same thumbnail files;
(c) the column totals sent with every "changed" message (``summary_rows``: success rate,
    median/p90 time, cost over all 6,000 cells);
(d) reopening it: ``Comparison.load(id)``.

Every figure is printed as ``RESULT <name> <value>``. Run:

    python benchmarks/bench_compare.py            # 1,000 x 6
    python benchmarks/bench_compare.py --quick    # smoke run (100 x 6)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

import nbbatch
from nbbatch import Params, TaskStatus, Workspace
from nbbatch.engine import Comparison
from nbbatch.engine._blobs import StoredImage
from nbbatch.images import ImageInfo
from nbbatch.images._contact import sheet_bytes
from nbbatch.widgets import ComparePanel


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run (100 tasks)")
    ap.add_argument("--tasks", type=int, default=1000)
    args = ap.parse_args()
    tasks = 100 if args.quick else args.tasks
    configs = [("demo", {"label": f"config {i}", "steps": i + 1}) for i in range(6)]
    with tempfile.TemporaryDirectory() as tmp, Workspace(Path(tmp) / "ws") as ws:
        t0 = time.perf_counter()
        cmp = nbbatch.compare(
            [f"task {i}: a lighthouse" for i in range(tasks)],
            configs,
            workspace=ws,
            params=Params(size="64x64"),
        )
        create = time.perf_counter() - t0

        png = sheet_bytes(Image.new("RGB", (64, 64), (40, 90, 160)))
        _path, sha = ws.write_blob(png, "png")
        stored = StoredImage(sha, ImageInfo("PNG", 64, 64), 1, {})
        now = time.time()
        for task in cmp.batch.tasks:
            task.status = TaskStatus.SUCCEEDED
            task.started_at, task.finished_at = now, now + 1.5
            task.images = ws.record_success(task, [stored])

        panel = ComparePanel(cmp)
        sent: list[tuple[dict[str, object], list[bytes]]] = []
        panel.send = lambda content, buffers=None: sent.append((content, buffers or []))  # type: ignore[method-assign]
        step = max(1, tasks // 20)
        starts = list(range(0, tasks - 20, step))[:20]

        def page(start: int) -> float:
            t = time.perf_counter()
            panel._on_msg(panel, {"type": "rows", "uuid": "b", "start": start, "count": 20}, [])
            return time.perf_counter() - t

        page(0)  # makes the (one) thumbnail
        pages = [page(s) for s in starts]
        assert sent[-1][0]["ok"] and len(sent[-1][1]) == 120, sent[-1][0]

        # baseline: the same 120 cells' fields from a dict, the same thumbnail files read
        by_id = {t.id: t for t in cmp.batch.tasks}
        thumb = panel.thumbs.get(cmp.batch.tasks[0].images[0], 192)

        def plain(start: int) -> float:
            t = time.perf_counter()
            out = []
            for r in range(start, start + 20):
                for task_id in cmp._rows[r]:
                    task = by_id[task_id]
                    out.append((task.status.value, task.duration, len(task.images)))
                    thumb.read_bytes()
            return time.perf_counter() - t

        baseline = [plain(s) for s in starts]

        totals = []
        for _ in range(5):
            t = time.perf_counter()
            cmp.summary_rows(prices={"demo": 0.01})
            totals.append(time.perf_counter() - t)

        t = time.perf_counter()
        again = Comparison.load(cmp.id, ws)
        load = time.perf_counter() - t
        assert len(again.cells()) == tasks * 6
        panel.close()

    med, base = statistics.median(pages), statistics.median(baseline)
    print(f"RESULT compare_cells {tasks * 6}")
    print(f"RESULT compare_create_s {create:.3f}")
    print(f"RESULT compare_rows_page_ms {med * 1000:.2f}")
    print(f"RESULT compare_rows_page_baseline_ms {base * 1000:.2f}")
    print(f"RESULT compare_rows_page_ratio {med / base:.1f}")
    print(f"RESULT compare_totals_ms {statistics.median(totals) * 1000:.2f}")
    print(f"RESULT compare_load_s {load:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
