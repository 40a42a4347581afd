"""The Gemini API Batch Mode, file input: image models at half price, within 24 h.

Wire format (provider-protocols.md §13.2): a JSONL of ``{"key", "request":
GenerateContentRequest}`` uploaded through the File API's resumable protocol (a
``start`` call returns the upload URL, one ``upload, finalize`` call sends the bytes),
``POST /v1beta/models/{model}:batchGenerateContent`` with ``batch.inputConfig.fileName``
-> an operation ``batches/{id}``; ``GET /v1beta/batches/{id}`` until ``BATCH_STATE_*``
is final; the responses file (``metadata.output.responsesFile``) holds one line per
request, ``{"key", "response"}`` or ``{"key", "status"}``. Inline mode is not used: its
image responses are known to come back duplicated and unretrievable past ~150 images.

Gemini batches have no metadata map: the nbbatch batch and job ids travel in the
``displayName`` (``nbbatch nbbatch_batch=... nbbatch_job=...``), which is how a job
created by a process killed before it journaled the id is found again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from ..core._errors import MalformedResponseError, NotSupportedError, ProviderError
from ._base import GenerationRequest
from ._batchapi import LineResult, RemoteJob
from ._gemini import GeminiProvider, _classify, _inline_size
from ._http import error_from_response

__all__ = ["GeminiBatchApi"]

_STATES = {
    "BATCH_STATE_PENDING": "validating",
    "BATCH_STATE_RUNNING": "in_progress",
    "BATCH_STATE_SUCCEEDED": "completed",
    "BATCH_STATE_FAILED": "failed",
    "BATCH_STATE_CANCELLED": "cancelled",
    "BATCH_STATE_EXPIRED": "expired",
    # the Python SDK's names, should a proxy pass them on
    "JOB_STATE_PENDING": "validating",
    "JOB_STATE_RUNNING": "in_progress",
    "JOB_STATE_SUCCEEDED": "completed",
    "JOB_STATE_FAILED": "failed",
    "JOB_STATE_CANCELLED": "cancelled",
    "JOB_STATE_EXPIRED": "expired",
}
_MAX_RESULT_BYTES = 200 * 1024**3
_FIND_PAGES = 20
_CHUNK = 1024 * 1024


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


class GeminiBatchApi:
    """The Batch Mode of one :class:`~nbbatch.providers.GeminiProvider`."""

    label = "Gemini"
    max_requests = 50_000
    #: the File API's limit for one file is 2 GB; a job's input is kept far below
    max_bytes = 200 * 1024 * 1024

    def __init__(self, provider: GeminiProvider) -> None:
        self.provider = provider
        self._http = provider._http

    # ------------------------------------------------------------------ input
    def check(self, request: GenerationRequest) -> None:
        self.provider.validate(request)
        if request.params.model not in (None, self.provider.model):
            raise NotSupportedError(
                f"a Gemini batch job runs one model ({self.provider.model}); this task asks "
                f"for {request.params.model}. Use GeminiProvider(model=...) for it",
                task_id=request.task_id,
            )
        if request.images:
            raise NotSupportedError(
                "the Gemini batch API run of nbbatch sends text-to-image requests only; run "
                "tasks with reference images without batch_api=True",
                task_id=request.task_id,
            )

    def endpoint(self, request: GenerationRequest) -> str:
        return f"models/{self.provider.model}:generateContent"

    async def upload_image(self, data: bytes, name: str, mime: str) -> str:
        raise NotSupportedError(  # check() refuses such tasks before anything is sent
            "the Gemini batch API run of nbbatch sends no reference images"
        )

    def line(self, request: GenerationRequest, custom_id: str, files: Sequence[str] = ()) -> bytes:
        record = {"key": custom_id, "request": self.provider._body(request)}
        return json.dumps(record, separators=(",", ":")).encode() + b"\n"

    # ------------------------------------------------------------------ jobs
    def _job(self, body: Any) -> RemoteJob:
        name = body.get("name") if isinstance(body, Mapping) else None
        meta = body.get("metadata") if isinstance(body, Mapping) else None
        if not isinstance(name, str) or not isinstance(meta, Mapping):
            raise MalformedResponseError(
                "gemini: the batch API answered without a batch name", provider="gemini"
            )
        stats = meta.get("batchStats") if isinstance(meta.get("batchStats"), Mapping) else {}
        assert isinstance(stats, Mapping)
        output = meta.get("output") if isinstance(meta.get("output"), Mapping) else {}
        assert isinstance(output, Mapping)
        display = str(meta.get("displayName") or "")
        tags = dict(
            part.split("=", 1) for part in display.split() if "=" in part and part[0] != "="
        )
        state = _STATES.get(str(meta.get("state")), "in_progress")
        errors = ""
        if state == "failed" and isinstance(body.get("error"), Mapping):
            errors = str(body["error"].get("message") or "")
        file = output.get("responsesFile")
        return RemoteJob(
            id=name,
            state=state,
            total=_int(stats.get("requestCount")),
            completed=_int(stats.get("successfulRequestCount")),
            failed=_int(stats.get("failedRequestCount")),
            output_file=file if isinstance(file, str) and file else None,
            error_file=None,
            metadata=tags,
            errors=errors,
        )

    async def upload(self, path: Path, name: str) -> str:
        size = path.stat().st_size
        start = await self._http.request(
            "POST",
            "/upload/v1beta/files",
            headers={
                "X-Goog-Upload-Protocol": "resumable",
                "X-Goog-Upload-Command": "start",
                "X-Goog-Upload-Header-Content-Length": str(size),
                "X-Goog-Upload-Header-Content-Type": "application/jsonl",
            },
            json={"file": {"displayName": name}},
        )
        url = start.headers.get("x-goog-upload-url")
        if not url:
            raise MalformedResponseError(
                "gemini: the File API gave no upload URL", provider=self.provider.name
            )

        async def chunks() -> AsyncIterator[bytes]:
            with path.open("rb") as handle:
                while piece := await asyncio.to_thread(handle.read, _CHUNK):
                    yield piece

        done = await self.provider._access.client_for(url).request(
            "POST",
            url,
            headers={
                "X-Goog-Upload-Command": "upload, finalize",
                "X-Goog-Upload-Offset": "0",
                "Content-Length": str(size),
            },
            content=chunks(),
        )
        try:
            file_name = done.json()["file"]["name"]
        except (ValueError, KeyError, TypeError):
            file_name = None
        if not isinstance(file_name, str):
            raise MalformedResponseError(
                "gemini: the File API answered the upload without a file name",
                provider=self.provider.name,
            )
        return file_name

    async def create(
        self, input_file: str, metadata: Mapping[str, str], endpoint: str
    ) -> RemoteJob:
        display = "nbbatch " + " ".join(f"{k}={v}" for k, v in metadata.items())
        return self._job(
            await self._http.json(
                "POST",
                f"/v1beta/models/{self.provider.model}:batchGenerateContent",
                json={"batch": {"displayName": display, "inputConfig": {"fileName": input_file}}},
            )
        )

    async def get(self, job_id: str) -> RemoteJob:
        return self._job(await self._http.json("GET", f"/v1beta/{job_id}"))

    async def find(self, key: str, value: str) -> RemoteJob | None:
        token: str | None = None
        for _ in range(_FIND_PAGES):
            params: dict[str, Any] = {"pageSize": 100}
            if token:
                params["pageToken"] = token
            page = await self._http.json("GET", "/v1beta/batches", params=params)
            items = page.get("operations") if isinstance(page, Mapping) else None
            for item in items if isinstance(items, list) else []:
                job = self._job(item)
                if job.metadata and job.metadata.get(key) == value:
                    return job
            token = page.get("nextPageToken") if isinstance(page, Mapping) else None
            if not token:
                return None
        return None

    async def cancel(self, job_id: str) -> RemoteJob:
        await self._http.json("POST", f"/v1beta/{job_id}:cancel")
        return await self.get(job_id)

    async def download(self, file_id: str, path: Path) -> int:
        with path.open("wb") as sink:
            size = await self._http.download_to(
                f"/download/v1beta/{file_id}:download",
                sink,
                max_bytes=_MAX_RESULT_BYTES,
                params={"alt": "media"},
            )
            sink.flush()
        return size

    # ------------------------------------------------------------------ results
    def custom_id(self, line: Any) -> str | None:
        key = line.get("key") if isinstance(line, Mapping) else None
        return key if isinstance(key, str) and key else None

    async def read_line(self, line: Any, request: GenerationRequest) -> LineResult:
        name = self.provider.name
        key = line.get("key") if isinstance(line, Mapping) else None
        if not isinstance(key, str) or not key:
            raise MalformedResponseError(f"{name}: a result line has no key", provider=name)
        status = line.get("status") or line.get("error")
        if isinstance(status, Mapping) and status:
            code = _int(status.get("code")) or 500
            answer = httpx.Response(code if code >= 400 else 500, json={"error": dict(status)})
            err = error_from_response(answer, name, task_id=request.task_id)
            return LineResult(key, error=_classify(answer, err))
        response = line.get("response")
        from ._offload import offload

        try:
            images = await offload(
                self.provider._images, response, request, size=_inline_size(response)
            )
        except ProviderError as exc:
            return LineResult(key, error=exc)
        return LineResult(key, images=images)
