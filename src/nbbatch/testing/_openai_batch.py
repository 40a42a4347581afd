"""The OpenAI Batch API part of :class:`~nbbatch.testing.FakeOpenAI`: files and batches.

Routes (under ``/v1``): ``POST /files`` (multipart ``file`` + ``purpose``), ``GET
/files/{id}``, ``GET /files/{id}/content``, ``POST /batches``, ``GET /batches`` (newest
first, ``limit`` / ``after``), ``GET /batches/{id}``, ``POST /batches/{id}/cancel``.

A job moves ``validating`` -> ``in_progress`` -> ``finalizing`` -> ``completed`` as its
clock advances: ``timing`` gives the seconds of the first three states. The clock is
``time.monotonic`` unless the test gives its own (a :class:`BatchClock` it advances), so
with no clock a job finishes by itself within about a second. While ``in_progress`` the
requests are answered in input order, in proportion to the time spent; a job still
unfinished when its ``window`` (24 h) has passed ends ``expired`` with the answers made
so far, and a cancelled one ``cancelled`` the same way. The answers are the same as the
synchronous endpoints give (a refused prompt is a 400 line of the error file), written
to disk when the job finalizes, in shuffled order; requests never run are error lines
(``batch_expired`` / ``batch_cancelled``). With the real clock the files are written in
a thread (the job reads ``finalizing`` meanwhile); with a test's clock, at once.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ._render import parse_multipart

__all__ = ["BatchClock", "OpenAIBatches"]

#: endpoints a batch may name (the images ones since the client's 2.20)
ENDPOINTS = ("/v1/images/generations", "/v1/images/edits")
#: the most requests and bytes one input file may hold
MAX_REQUESTS = 50_000
MAX_FILE_BYTES = 200 * 1024 * 1024


#: (custom id, status, body, state that left it unrun or None) -> (line, ok) or None
Record = Callable[[Any, int, dict[str, Any], str | None], tuple[dict[str, Any], bool] | None]


def openai_record(
    custom_id: Any, status: int, body: dict[str, Any], unrun: str | None
) -> tuple[dict[str, Any], bool]:
    """One line of an OpenAI result file, and whether it goes to the output file."""
    rid = f"batch_req_{os.urandom(8).hex()}"
    if unrun is not None:
        code = "batch_expired" if unrun == "expired" else "batch_cancelled"
        text = (
            "This request could not be executed before the completion window expired."
            if unrun == "expired"
            else "This request was not executed because the batch was cancelled."
        )
        return {
            "id": rid,
            "custom_id": custom_id,
            "response": None,
            "error": {"code": code, "message": text},
        }, False
    response = {"status_code": status, "request_id": os.urandom(16).hex(), "body": body}
    line = {"id": rid, "custom_id": custom_id, "response": response, "error": None}
    return line, 200 <= status < 300


class BatchClock:
    """A clock a test moves by hand: ``clock.advance(seconds)``."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@dataclass
class _File:
    id: str
    path: Path
    filename: str
    purpose: str
    created_at: int
    size: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.size,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


@dataclass
class _Job:
    id: str
    input_file_id: str
    endpoint: str
    window: str
    metadata: dict[str, str] | None
    started: float  # on the fake's clock
    wall: int  # created_at, Unix seconds
    requests: list[dict[str, Any]]
    problems: list[dict[str, Any]]
    cancel_at: float | None = None
    final: str | None = None  # the terminal state once its files are written
    output_file_id: str | None = None
    error_file_id: str | None = None
    completed: int = 0
    failed: int = 0
    stamps: dict[str, int] = field(default_factory=dict)
    writing: bool = False


class OpenAIBatches:
    """Files and batches of one fake server (see the module docstring)."""

    def __init__(
        self,
        answer: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]],
        error: Callable[..., Response],
        *,
        clock: Callable[[], float] | None = None,
        timing: tuple[float, float, float] = (0.1, 0.6, 0.1),
        window: float = 24 * 3600.0,
        seed: int = 0,
        record: Record | None = None,
        single_file: bool = False,
    ) -> None:
        self._answer = answer
        self._record = record or openai_record
        #: every line in the output file (Gemini), not failures in an error file (OpenAI)
        self._single = single_file
        self._error = error
        self.clock = clock or time.monotonic
        # with the test's own clock a job's files are written at once, when a request
        # first sees it terminal (the test sees "completed" then, never a race)
        self._threaded = clock is None
        self.timing = timing
        self.window = window
        self._rng = random.Random(seed)
        self._dir = Path(tempfile.mkdtemp(prefix="nbbatch-fake-openai-"))
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.files: dict[str, _File] = {}
        self.jobs: dict[str, _Job] = {}
        #: every accepted ``POST /batches`` body, in order (duplicates show here)
        self.created: list[dict[str, Any]] = []

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

    # ------------------------------------------------------------------ files
    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):06d}{os.urandom(4).hex()}"

    def add_file(self, data: bytes | None, filename: str, purpose: str) -> _File:
        file_id = self._new_id("file")
        path = self._dir / file_id
        if data is not None:
            path.write_bytes(data)
        f = _File(file_id, path, filename, purpose, int(time.time()), len(data or b""))
        with self._lock:
            self.files[file_id] = f
        return f

    # ------------------------------------------------------------------ states
    def _progress(self, job: _Job, at: float) -> int:
        """How many requests ``job`` has answered at clock time ``at``."""
        validating, running, _ = self.timing
        spent = at - job.started - validating
        if spent <= 0:
            return 0
        if running <= 0 or spent >= running:
            return len(job.requests)
        return int(len(job.requests) * spent / running)

    def state(self, job: _Job) -> str:
        if job.final is not None:
            return job.final
        now = self.clock()
        validating, running, finalizing = self.timing
        if job.problems:
            return "validating" if now < job.started + validating else "failed"
        deadline = job.started + self.window
        done_at = job.started + validating + running
        if job.cancel_at is not None and job.cancel_at < done_at:
            return "cancelling" if now < job.cancel_at + finalizing else "cancelled"
        if deadline < done_at and now >= deadline:
            return "expired"
        if now < job.started + validating:
            return "validating"
        if now < done_at:
            return "in_progress"
        if now < done_at + finalizing:
            return "finalizing"
        return "completed"

    def settle(self, job: _Job) -> str:
        """``job``'s state now, its result files being written once it has ended."""
        state = self.state(job)
        if state in ("completed", "expired", "cancelled") and job.final is None:
            self._finish(job, state)
            if job.final is None:  # its files are being written
                state = "cancelling" if state == "cancelled" else "finalizing"
        return state

    def _view(self, job: _Job) -> dict[str, Any]:
        state = self.settle(job)
        total = len(job.requests)
        if job.final is None:
            completed = self._progress(job, self.clock()) if state == "in_progress" else 0
            counts = {"total": total, "completed": completed, "failed": 0}
        else:
            counts = {"total": total, "completed": job.completed, "failed": job.failed}
        stamps = dict(job.stamps)
        stamps.setdefault(f"{state}_at", int(time.time()))
        errors = None
        if job.problems:
            errors = {"object": "list", "data": job.problems}
        return {
            "id": job.id,
            "object": "batch",
            "endpoint": job.endpoint,
            "errors": errors,
            "input_file_id": job.input_file_id,
            "completion_window": job.window,
            "status": state,
            "output_file_id": job.output_file_id,
            "error_file_id": job.error_file_id,
            "created_at": job.wall,
            "in_progress_at": job.wall if state != "validating" else None,
            "expires_at": job.wall + int(self.window),
            "finalizing_at": stamps.get("finalizing_at"),
            "completed_at": stamps.get("completed_at") if state == "completed" else None,
            "failed_at": stamps.get("failed_at") if state == "failed" else None,
            "expired_at": stamps.get("expired_at") if state == "expired" else None,
            "cancelling_at": stamps.get("cancelling_at") if job.cancel_at is not None else None,
            "cancelled_at": stamps.get("cancelled_at") if state == "cancelled" else None,
            "request_counts": counts,
            "metadata": job.metadata,
        }

    def _finish(self, job: _Job, state: str) -> None:
        """Answer the requests run and write the output and error files (a thread:
        the job reads ``finalizing`` meanwhile)."""
        with self._lock:
            if job.writing:
                return
            job.writing = True
        until = {
            "completed": None,
            "expired": job.started + self.window,
            "cancelled": job.cancel_at,
        }[state]
        ran = len(job.requests) if until is None else self._progress(job, until)
        order = list(range(len(job.requests)))
        self._rng.shuffle(order)  # the service answers in no particular order
        job.stamps["finalizing_at"] = int(time.time())

        def write() -> None:
            out_path = self._dir / f"{job.id}-output.jsonl"
            err_path = self._dir / f"{job.id}-errors.jsonl"
            completed = failed = 0
            with out_path.open("wb") as out, err_path.open("wb") as err:
                for index in order:
                    line = job.requests[index]
                    custom_id = line.get("custom_id")
                    if index >= ran:
                        made = self._record(custom_id, 0, {}, state)
                    else:
                        status, body = self._answer(line.get("body") or {})
                        made = self._record(custom_id, status, body, None)
                    if made is None:
                        failed += 1
                        continue
                    record, ok = made
                    completed += ok
                    failed += not ok
                    (out if ok or self._single else err).write(json.dumps(record).encode() + b"\n")
            now = int(time.time())
            output = error = None
            if out_path.stat().st_size:
                output = self.add_file(None, "batch_output.jsonl", "batch_output")
                out_path.replace(output.path)
                output.size = output.path.stat().st_size
            if err_path.stat().st_size:
                error = self.add_file(None, "batch_errors.jsonl", "batch_output")
                err_path.replace(error.path)
                error.size = error.path.stat().st_size
            out_path.unlink(missing_ok=True)
            err_path.unlink(missing_ok=True)
            job.output_file_id = output.id if output else None
            job.error_file_id = error.id if error else None
            job.completed, job.failed = completed, failed
            job.stamps[f"{state}_at"] = now
            job.final = state

        if self._threaded:
            threading.Thread(target=write, name=f"fake-openai-{job.id}", daemon=True).start()
        else:
            write()

    def add_job(
        self,
        input_file_id: str,
        endpoint: str,
        metadata: dict[str, str] | None,
        requests: list[dict[str, Any]],
        problems: list[dict[str, Any]],
        created: dict[str, Any],
    ) -> _Job:
        """A new job of ``requests`` (each ``{"custom_id", "body"}``), recorded as made
        by the request body ``created``."""
        job = _Job(
            self._new_id("batch"),
            input_file_id,
            endpoint,
            "24h",
            metadata,
            self.clock(),
            int(time.time()),
            requests,
            problems,
        )
        with self._lock:
            self.jobs[job.id] = job
            self.created.append(created)
        return job

    def cancel_job(self, job: _Job) -> str | None:
        """Cancel ``job`` (None) or say why it cannot be (its state)."""
        state = self.state(job)
        if state in ("validating", "in_progress"):
            job.cancel_at = self.clock()
            job.stamps["cancelling_at"] = int(time.time())
            return None
        if state in ("cancelling", "cancelled"):
            return None
        return state

    # ------------------------------------------------------------------ routes
    def routes(self, auth: Callable[[Request], Response | None]) -> list[Route]:
        err = self._error

        def invalid(message: str, param: str | None = None, status: int = 400) -> Response:
            return err(status, message, "invalid_request_error", None, param)

        async def upload(request: Request) -> Response:
            denied = auth(request)
            if denied is not None:
                return denied
            try:
                parts = parse_multipart(
                    request.headers.get("content-type", ""), await request.body()
                )
            except ValueError as exc:
                return invalid(str(exc))
            fields = {p.name: p for p in parts}
            purpose = fields["purpose"].data.decode() if "purpose" in fields else ""
            if purpose not in ("batch", "vision", "user_data"):
                return invalid(f"Invalid value for 'purpose': {purpose!r}.", "purpose")
            upload = fields.get("file")
            if upload is None or upload.filename is None:
                return invalid("Missing required parameter: 'file'.", "file")
            if len(upload.data) > MAX_FILE_BYTES:
                return invalid("File is too large: at most 200 MB for purpose 'batch'.")
            return JSONResponse(self.add_file(upload.data, upload.filename, purpose).to_json())

        async def file_content(request: Request) -> Response:
            denied = auth(request)
            if denied is not None:
                return denied
            f = self.files.get(request.path_params["file_id"])
            if f is None:
                return err(404, "No such File object.", "invalid_request_error", None, "id")

            def chunks() -> Iterator[bytes]:
                with f.path.open("rb") as handle:
                    while piece := handle.read(1 << 20):
                        yield piece

            return StreamingResponse(
                chunks(),
                media_type="application/octet-stream",
                headers={"content-length": str(f.size)},
            )

        async def create(request: Request) -> Response:
            denied = auth(request)
            if denied is not None:
                return denied
            try:
                body = json.loads(await request.body())
            except ValueError:
                return invalid("We could not parse the JSON body of your request.")
            if not isinstance(body, dict):
                return invalid("The body must be a JSON object.")
            endpoint = body.get("endpoint")
            if endpoint not in ENDPOINTS:
                return invalid(f"Invalid value for 'endpoint': {endpoint!r}.", "endpoint")
            if body.get("completion_window") != "24h":
                return invalid("completion_window must be '24h'.", "completion_window")
            metadata = body.get("metadata")
            if metadata is not None and (
                not isinstance(metadata, dict)
                or len(metadata) > 16
                or any(
                    not isinstance(v, str) or len(k) > 64 or len(v) > 512
                    for k, v in metadata.items()
                )
            ):
                return invalid("metadata: at most 16 string pairs.", "metadata")
            f = self.files.get(str(body.get("input_file_id")))
            if f is None or f.purpose != "batch":
                return invalid("The input file does not exist or is not for batch.", "input")
            requests, problems = self._read_input(f.path, endpoint)
            job = self.add_job(f.id, endpoint, metadata, requests, problems, body)
            return JSONResponse(self._view(job))

        async def listing(request: Request) -> Response:
            denied = auth(request)
            if denied is not None:
                return denied
            try:
                limit = max(1, min(100, int(request.query_params.get("limit", "20"))))
            except ValueError:
                return invalid("limit must be a number.", "limit")
            jobs = list(reversed(self.jobs.values()))
            after = request.query_params.get("after")
            if after:
                ids = [j.id for j in jobs]
                jobs = jobs[ids.index(after) + 1 :] if after in ids else []
            page = jobs[:limit]
            data = [self._view(j) for j in page]
            return JSONResponse(
                {
                    "object": "list",
                    "data": data,
                    "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None,
                    "has_more": len(jobs) > limit,
                }
            )

        async def retrieve(request: Request) -> Response:
            denied = auth(request)
            if denied is not None:
                return denied
            job = self.jobs.get(request.path_params["batch_id"])
            if job is None:
                return err(404, "No such batch.", "invalid_request_error", None, "batch_id")
            return JSONResponse(self._view(job))

        async def cancel(request: Request) -> Response:
            denied = auth(request)
            if denied is not None:
                return denied
            job = self.jobs.get(request.path_params["batch_id"])
            if job is None:
                return err(404, "No such batch.", "invalid_request_error", None, "batch_id")
            refused = self.cancel_job(job)
            if refused is not None:
                return invalid(f"Cannot cancel a batch with status '{refused}'.", None, 409)
            return JSONResponse(self._view(job))

        return [
            Route("/v1/files", upload, methods=["POST"]),
            Route("/v1/files/{file_id}/content", file_content, methods=["GET"]),
            Route("/v1/batches", create, methods=["POST"]),
            Route("/v1/batches", listing, methods=["GET"]),
            Route("/v1/batches/{batch_id}", retrieve, methods=["GET"]),
            Route("/v1/batches/{batch_id}/cancel", cancel, methods=["POST"]),
        ]

    def file_info(self, file_id: str) -> Response | None:
        """``GET /files/{id}`` of an uploaded or output file (None: not one of them)."""
        f = self.files.get(file_id)
        return None if f is None else JSONResponse(f.to_json())

    def _read_input(
        self, path: Path, endpoint: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        requests: list[dict[str, Any]] = []
        problems: list[dict[str, Any]] = []
        seen: set[str] = set()
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, 1):
                if not raw.strip():
                    continue
                try:
                    line = json.loads(raw)
                except ValueError:
                    line = None
                why = None
                if not isinstance(line, dict):
                    why = "the line is not a JSON object"
                elif not isinstance(line.get("custom_id"), str) or not line["custom_id"]:
                    why = "custom_id is missing"
                elif line["custom_id"] in seen:
                    why = f"custom_id {line['custom_id']!r} is used twice"
                elif line.get("method") != "POST" or line.get("url") != endpoint:
                    why = f"each line must POST to the batch's endpoint {endpoint}"
                elif not isinstance(line.get("body"), dict):
                    why = "body must be an object"
                if why is not None:
                    problems.append(
                        {"code": "invalid_request", "message": why, "param": None, "line": number}
                    )
                    continue
                assert isinstance(line, dict)
                seen.add(line["custom_id"])
                requests.append(line)
        if len(requests) > MAX_REQUESTS:
            problems.append(
                {
                    "code": "too_many_requests",
                    "message": f"at most {MAX_REQUESTS} requests per batch",
                    "param": None,
                    "line": None,
                }
            )
        return requests, problems
