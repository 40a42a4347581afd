"""The Gemini API Batch Mode part of :class:`~nbbatch.testing.FakeGemini` (file input).

Routes: the File API's resumable upload (``POST /upload/v1beta/files`` with
``X-Goog-Upload-Command: start``, then ``upload, finalize`` to the URL it returns),
``GET /v1beta/files/{id}``, ``GET /download/v1beta/files/{id}:download?alt=media``,
``POST /v1beta/models/{model}:batchGenerateContent`` (``batch.inputConfig.fileName``),
``GET /v1beta/batches`` (``operations``), ``GET /v1beta/batches/{id}`` and ``POST
/v1beta/batches/{id}:cancel``. Jobs run on the same clock machinery as the OpenAI fake's
(``validating`` is ``BATCH_STATE_PENDING`` here, ``in_progress`` and ``finalizing``
``BATCH_STATE_RUNNING``); every answered line, image or error, goes to the one responses
file as ``{"key", "response"}`` or ``{"key", "status"}``, in shuffled order; requests
never run have no line.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ._openai_batch import OpenAIBatches, _Job

__all__ = ["GeminiBatches"]

_WIRE = {
    "validating": "BATCH_STATE_PENDING",
    "in_progress": "BATCH_STATE_RUNNING",
    "finalizing": "BATCH_STATE_RUNNING",
    "cancelling": "BATCH_STATE_RUNNING",
    "completed": "BATCH_STATE_SUCCEEDED",
    "failed": "BATCH_STATE_FAILED",
    "expired": "BATCH_STATE_EXPIRED",
    "cancelled": "BATCH_STATE_CANCELLED",
}
_STATUS_NAMES = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 429: "RESOURCE_EXHAUSTED"}


def _record(
    key: Any, status: int, body: dict[str, Any], unrun: str | None
) -> tuple[dict[str, Any], bool] | None:
    if unrun is not None:
        return None  # never run: no line at all
    if 200 <= status < 300:
        return {"key": key, "response": body}, True
    found = body.get("error")
    error: dict[str, Any] = found if isinstance(found, dict) else {}
    return {
        "key": key,
        "status": {
            "code": status,
            "message": str(error.get("message") or "error"),
            "status": _STATUS_NAMES.get(status, "UNKNOWN"),
        },
    }, False


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class GeminiBatches:
    """Files and batch jobs of one FakeGemini (see the module docstring)."""

    def __init__(
        self,
        answer: Callable[[str, dict[str, Any]], tuple[int, dict[str, Any]]],
        *,
        clock: Callable[[], float] | None = None,
        timing: tuple[float, float, float] = (0.1, 0.6, 0.1),
        window: float = 24 * 3600.0,
    ) -> None:
        self.engine = OpenAIBatches(
            lambda line: answer(line["model"], line["request"]),
            lambda status, message, *rest: JSONResponse(
                {"error": {"code": status, "message": message, "status": "INVALID_ARGUMENT"}},
                status_code=status,
            ),
            clock=clock,
            timing=timing,
            window=window,
            record=_record,
            single_file=True,
        )
        self._uploads: dict[str, dict[str, Any]] = {}
        self._upload_ids = itertools.count(1)

    @property
    def created(self) -> list[dict[str, Any]]:
        """Every accepted ``batchGenerateContent`` body, in order."""
        return self.engine.created

    @property
    def jobs(self) -> dict[str, _Job]:
        return self.engine.jobs

    def close(self) -> None:
        self.engine.close()

    # ------------------------------------------------------------------ views
    def _file(self, file_id: str) -> dict[str, Any] | None:
        f = self.engine.files.get(file_id)
        if f is None:
            return None
        return {
            "name": f"files/{f.id}",
            "displayName": f.filename,
            "mimeType": "application/jsonl",
            "sizeBytes": str(f.size),
            "createTime": _iso(f.created_at),
            "updateTime": _iso(f.created_at),
            "uri": f"files/{f.id}",
            "state": "ACTIVE",
            "source": "UPLOADED",
        }

    def _operation(self, job: _Job) -> dict[str, Any]:
        state = self.engine.settle(job)
        total = len(job.requests)
        if job.final is None:
            done = self.engine._progress(job, self.engine.clock()) if state == "in_progress" else 0
            ok, bad = done, 0
        else:
            ok, bad = job.completed, job.failed
        metadata: dict[str, Any] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "model": job.endpoint,
            "displayName": (job.metadata or {}).get("displayName", ""),
            "inputConfig": {"fileName": f"files/{job.input_file_id}"},
            "createTime": _iso(job.wall),
            "updateTime": _iso(time.time()),
            "batchStats": {
                "requestCount": str(total),
                "successfulRequestCount": str(ok),
                "failedRequestCount": str(bad),
                "pendingRequestCount": str(max(0, total - ok - bad)),
            },
            "state": _WIRE[state],
            "name": f"batches/{job.id}",
        }
        if job.final is not None:
            metadata["endTime"] = _iso(time.time())
            if job.output_file_id:
                metadata["output"] = {"responsesFile": f"files/{job.output_file_id}"}
        return {"name": f"batches/{job.id}", "metadata": metadata, "done": job.final is not None}

    # ------------------------------------------------------------------ routes
    def routes(self, auth: Callable[[Request], Response | None]) -> list[Route]:
        def bad(status: int, message: str) -> Response:
            code = _STATUS_NAMES.get(status, "NOT_FOUND" if status == 404 else "UNKNOWN")
            return JSONResponse(
                {"error": {"code": status, "message": message, "status": code}},
                status_code=status,
            )

        async def upload(request: Request) -> Response:
            command = request.headers.get("x-goog-upload-command", "").lower()
            if "start" in command:
                denied = auth(request)
                if denied is not None:
                    return denied
                try:
                    meta = json.loads(await request.body() or b"{}").get("file") or {}
                except (ValueError, AttributeError):
                    return bad(400, "Invalid JSON payload received.")
                upload_id = f"u{next(self._upload_ids)}"
                self._uploads[upload_id] = {"meta": meta, "data": bytearray()}
                url = f"{request.base_url}{request.url.path.lstrip('/')}?upload_id={upload_id}"
                return Response(
                    b"",
                    headers={"x-goog-upload-url": url, "x-goog-upload-status": "active"},
                )
            upload_id = request.query_params.get("upload_id", "")
            state = self._uploads.get(upload_id)
            if state is None:
                return bad(404, "No such upload.")
            offset = int(request.headers.get("x-goog-upload-offset", "0") or 0)
            if offset != len(state["data"]):
                return bad(400, f"Upload offset {offset} does not match {len(state['data'])}.")
            state["data"] += await request.body()
            if "finalize" not in command:
                return Response(b"", headers={"x-goog-upload-status": "active"})
            del self._uploads[upload_id]
            name = str(state["meta"].get("displayName") or "upload.jsonl")
            f = self.engine.add_file(bytes(state["data"]), name, "batch")
            return JSONResponse(
                {"file": self._file(f.id)}, headers={"x-goog-upload-status": "final"}
            )

        async def download(request: Request) -> Response:
            denied = auth(request)
            if denied is not None:
                return denied
            name = request.path_params["name"]
            if not name.endswith(":download"):
                return bad(404, "Not found.")
            f = self.engine.files.get(name[: -len(":download")])
            if f is None:
                return bad(404, "File not found.")

            def chunks() -> Any:
                with f.path.open("rb") as handle:
                    while piece := handle.read(1 << 20):
                        yield piece

            return StreamingResponse(
                chunks(),
                media_type="application/octet-stream",
                headers={"content-length": str(f.size)},
            )

        async def file_info(request: Request) -> Response:
            if request.path_params["file_id"].endswith(":download"):  # the client's path
                request.path_params["name"] = request.path_params["file_id"]
                return await download(request)
            denied = auth(request)
            if denied is not None:
                return denied
            info = self._file(request.path_params["file_id"])
            return bad(404, "File not found.") if info is None else JSONResponse(info)

        async def create(request: Request) -> Response:
            denied = auth(request)
            if denied is not None:
                return denied
            model = request.path_params["model"]
            try:
                body = json.loads(await request.body())
                batch = body["batch"]
                file_name = str(batch["inputConfig"]["fileName"])
            except (ValueError, KeyError, TypeError):
                return bad(400, "batch.inputConfig.fileName is required.")
            f = self.engine.files.get(file_name.removeprefix("files/"))
            if f is None:
                return bad(400, f"File {file_name} not found.")
            requests: list[dict[str, Any]] = []
            problems: list[dict[str, Any]] = []
            for number, raw in enumerate(f.path.read_bytes().splitlines(), 1):
                if not raw.strip():
                    continue
                try:
                    line = json.loads(raw)
                    key, req = line["key"], line["request"]
                except (ValueError, KeyError, TypeError):
                    problems.append({"message": f"line {number} is not a keyed request"})
                    continue
                requests.append({"custom_id": key, "body": {"model": model, "request": req}})
            display = str(batch.get("displayName") or batch.get("display_name") or "")
            job = self.engine.add_job(
                f.id, f"models/{model}", {"displayName": display}, requests, problems, body
            )
            return JSONResponse(self._operation(job))

        async def listing(request: Request) -> Response:
            denied = auth(request)
            if denied is not None:
                return denied
            jobs = list(reversed(self.engine.jobs.values()))
            start = int(request.query_params.get("pageToken") or 0)
            size = max(1, min(100, int(request.query_params.get("pageSize") or 50)))
            page = jobs[start : start + size]
            body: dict[str, Any] = {"operations": [self._operation(j) for j in page]}
            if start + size < len(jobs):
                body["nextPageToken"] = str(start + size)
            return JSONResponse(body)

        async def batch(request: Request) -> Response:
            denied = auth(request)
            if denied is not None:
                return denied
            name = request.path_params["name"]
            cancel = name.endswith(":cancel")
            job = self.engine.jobs.get(name.removesuffix(":cancel"))
            if job is None:
                return bad(404, "Batch not found.")
            if cancel != (request.method == "POST"):
                return bad(404, "Not found.")
            if cancel:
                refused = self.engine.cancel_job(job)
                if refused is not None:
                    return bad(400, f"Cannot cancel a batch that is {refused}.")
                return JSONResponse({})
            return JSONResponse(self._operation(job))

        # the client uploads to /upload/v1 and downloads from /download/v1 whatever
        # version it was given; the REST docs say v1beta: serve both
        routes = []
        for version in ("v1beta", "v1"):
            routes += [
                Route(f"/upload/{version}/files", upload, methods=["POST"]),
                Route(f"/download/{version}/files/{{name}}", download, methods=["GET"]),
                Route(f"/{version}/files/{{file_id}}", file_info, methods=["GET"]),
                Route(f"/{version}/batches", listing, methods=["GET"]),
                Route(f"/{version}/batches/{{name}}", batch, methods=["GET", "POST"]),
                Route(
                    f"/{version}/models/{{model}}:batchGenerateContent", create, methods=["POST"]
                ),
            ]
        return routes
