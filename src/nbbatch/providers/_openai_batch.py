"""The OpenAI Batch API: images at half price, up to 50,000 requests a job, within 24 h.

Wire format (provider-protocols.md §13): a JSONL input file uploaded with
``purpose=batch``, each line ``{"custom_id", "method": "POST", "url":
"/v1/images/generations", "body": {...}}`` (the body is what the synchronous endpoint
takes); ``POST /batches`` with ``input_file_id``, ``endpoint``, ``completion_window:
"24h"`` and ``metadata``; ``GET /batches/{id}`` until a terminal state; the output and
error files are JSONL of ``{"id", "custom_id", "response": {"status_code",
"request_id", "body"}, "error"}`` in no particular order. Every call here is idempotent
except :meth:`OpenAIBatchApi.create`, which the engine guards with the journal and
:meth:`OpenAIBatchApi.find`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from ..core._errors import (
    MalformedResponseError,
    NotSupportedError,
    ProviderError,
)
from ._base import GenerationRequest
from ._batchapi import LineResult, RemoteJob
from ._http import error_from_response
from ._openai import OpenAIProvider, _classify

__all__ = ["OpenAIBatchApi"]

_ENDPOINT = "/v1/images/generations"
_EDITS = "/v1/images/edits"
#: the most images one edit in a batch may take
_MAX_IMAGES = 16
#: the most one result file may be (50,000 images of up to ~2 MB of base64 each)
_MAX_RESULT_BYTES = 200 * 1024**3
#: error codes of requests the service never ran (the job expired or was cancelled)
_UNRUN = {"batch_expired": "expired", "batch_cancelled": "cancelled"}
#: how many jobs ``find`` looks through, newest first
_FIND_LIMIT = 1000


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class OpenAIBatchApi:
    """The Batch API of one :class:`~nbbatch.providers.OpenAIProvider` (its key, base URL
    and HTTP client)."""

    label = "OpenAI"
    max_requests = 50_000
    max_bytes = 200 * 1024 * 1024

    def __init__(self, provider: OpenAIProvider) -> None:
        self.provider = provider
        self._http = provider._http

    # ------------------------------------------------------------------ input
    def check(self, request: GenerationRequest) -> None:
        self.provider.validate(request)
        if request.mask is not None:
            raise NotSupportedError(
                "the OpenAI batch API run of nbbatch sends no masks; run tasks with a "
                "mask without batch_api=True",
                task_id=request.task_id,
            )
        if len(request.images) > _MAX_IMAGES:
            raise NotSupportedError(
                f"an edit in an OpenAI batch takes at most {_MAX_IMAGES} images; this task "
                f"has {len(request.images)}",
                task_id=request.task_id,
            )

    def endpoint(self, request: GenerationRequest) -> str:
        return _EDITS if request.images else _ENDPOINT

    def line(self, request: GenerationRequest, custom_id: str, files: Sequence[str] = ()) -> bytes:
        body = self.provider.request_fields(request)
        if request.images:
            # an edit in a batch is JSON: its images are files uploaded once each
            body["images"] = [{"file_id": f} for f in files]
        url = self.endpoint(request)
        record = {"custom_id": custom_id, "method": "POST", "url": url, "body": body}
        return json.dumps(record, separators=(",", ":")).encode() + b"\n"

    async def upload_image(self, data: bytes, name: str, mime: str) -> str:
        body = await self._http.json(
            "POST", "/files", data={"purpose": "vision"}, files=[("file", (name, data, mime))]
        )
        file_id = body.get("id") if isinstance(body, Mapping) else None
        if not isinstance(file_id, str):
            raise MalformedResponseError(
                f"{self.provider.name}: the image upload answered without a file id",
                provider=self.provider.name,
            )
        return file_id

    # ------------------------------------------------------------------ jobs
    def _job(self, body: Any) -> RemoteJob:
        if not isinstance(body, Mapping) or not isinstance(body.get("id"), str):
            raise MalformedResponseError(
                f"{self.provider.name}: the batch API answered without a job id",
                provider=self.provider.name,
            )
        counts = body.get("request_counts")
        counts = counts if isinstance(counts, Mapping) else {}
        errors = body.get("errors")
        words = ""
        if isinstance(errors, Mapping) and isinstance(errors.get("data"), list):
            words = "; ".join(
                str(e.get("message") or e.get("code"))
                + (f" (line {e['line']})" if e.get("line") else "")
                for e in errors["data"][:5]
                if isinstance(e, Mapping)
            )
        metadata = body.get("metadata")
        return RemoteJob(
            id=body["id"],
            state=str(body.get("status") or "validating"),
            total=int(counts.get("total") or 0),
            completed=int(counts.get("completed") or 0),
            failed=int(counts.get("failed") or 0),
            output_file=_text(body.get("output_file_id")),
            error_file=_text(body.get("error_file_id")),
            metadata=dict(metadata) if isinstance(metadata, Mapping) else None,
            errors=words,
        )

    async def upload(self, path: Path, name: str) -> str:
        with path.open("rb") as handle:
            body = await self._http.json(
                "POST",
                "/files",
                data={"purpose": "batch"},
                files=[("file", (name, handle, "application/jsonl"))],
            )
        file_id = body.get("id") if isinstance(body, Mapping) else None
        if not isinstance(file_id, str):
            raise MalformedResponseError(
                f"{self.provider.name}: the file upload answered without a file id",
                provider=self.provider.name,
            )
        return file_id

    async def create(
        self, input_file: str, metadata: Mapping[str, str], endpoint: str
    ) -> RemoteJob:
        return self._job(
            await self._http.json(
                "POST",
                "/batches",
                json={
                    "input_file_id": input_file,
                    "endpoint": endpoint,
                    "completion_window": "24h",
                    "metadata": dict(metadata),
                },
            )
        )

    async def get(self, job_id: str) -> RemoteJob:
        return self._job(await self._http.json("GET", f"/batches/{job_id}"))

    async def find(self, key: str, value: str) -> RemoteJob | None:
        after: str | None = None
        seen = 0
        while seen < _FIND_LIMIT:
            params: dict[str, Any] = {"limit": 100}
            if after:
                params["after"] = after
            page = await self._http.json("GET", "/batches", params=params)
            data = page.get("data") if isinstance(page, Mapping) else None
            if not isinstance(data, list) or not data:
                return None
            for item in data:
                job = self._job(item)
                if job.metadata and job.metadata.get(key) == value:
                    return job
            seen += len(data)
            if not page.get("has_more"):
                return None
            after = _text(page.get("last_id")) or self._job(data[-1]).id
        return None

    async def cancel(self, job_id: str) -> RemoteJob:
        return self._job(await self._http.json("POST", f"/batches/{job_id}/cancel"))

    async def download(self, file_id: str, path: Path) -> int:
        with path.open("wb") as sink:
            size = await self._http.download_to(
                f"/files/{file_id}/content", sink, max_bytes=_MAX_RESULT_BYTES
            )
            sink.flush()
        return size

    # ------------------------------------------------------------------ results
    def custom_id(self, line: Any) -> str | None:
        return _text(line.get("custom_id")) if isinstance(line, Mapping) else None

    async def read_line(self, line: Any, request: GenerationRequest) -> LineResult:
        name = self.provider.name
        custom_id = str(line.get("custom_id")) if isinstance(line, Mapping) else ""
        if not custom_id:
            raise MalformedResponseError(f"{name}: a result line has no custom_id", provider=name)
        error = line.get("error")
        response = line.get("response")
        if isinstance(error, Mapping) and error:
            code = str(error.get("code") or "")
            if code in _UNRUN:
                return LineResult(custom_id, unrun=_UNRUN[code])
            message = str(error.get("message") or code or "no reason given")
            return LineResult(
                custom_id,
                error=ProviderError(
                    f"{name}: the batch API did not run this request: {message}",
                    provider=name,
                    task_id=request.task_id,
                ),
            )
        if not isinstance(response, Mapping):
            return LineResult(
                custom_id,
                error=MalformedResponseError(
                    f"{name}: a result line has neither a response nor an error",
                    provider=name,
                    task_id=request.task_id,
                ),
            )
        status = int(response.get("status_code") or 0)
        body = response.get("body")
        if not 200 <= status < 300:
            # the same words and type as the synchronous answer would give
            answer = httpx.Response(status, json=body if body is not None else {})
            err = error_from_response(answer, name, task_id=request.task_id)
            return LineResult(custom_id, error=_classify(answer, err))
        try:
            images = await self.provider._read_images(body, request)
        except ProviderError as exc:
            return LineResult(custom_id, error=exc)
        return LineResult(custom_id, images=images)
