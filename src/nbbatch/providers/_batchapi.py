"""What a provider's batch API looks like to the engine (``batch_api=True`` runs).

A provider with a batch API (half price, results within 24 h) is paired with a
:class:`BatchApi` (``providers/_batchapis.batch_api_of``): how one task becomes a line
of the input file, how
that file is uploaded and a job created, polled, found again by its metadata and
cancelled, how the result files are downloaded, and how one result line becomes the
task's images or its error. The engine (``engine/_batchapi``) does the rest: the journal,
the order of the steps, resuming after a kill.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..core._errors import ProviderError
from ._base import GenerationRequest, ImageData, Provider

__all__ = ["TERMINAL", "BatchApi", "LineResult", "RemoteJob"]

#: job states after which nothing more happens at the provider
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass(frozen=True)
class RemoteJob:
    """A job at the provider, its state in OpenAI's words (``validating``,
    ``in_progress``, ``finalizing``, ``completed``, ``failed``, ``expired``,
    ``cancelling``, ``cancelled``) whatever the provider calls it."""

    id: str
    state: str
    total: int
    completed: int
    failed: int
    output_file: str | None = None
    error_file: str | None = None
    metadata: Mapping[str, str] | None = None
    #: why the provider refused the job (``failed``), in its words
    errors: str = ""

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


@dataclass(frozen=True)
class LineResult:
    """One line of a result file: the task's images, its error, or that it never ran.

    ``unrun`` names why a request was not executed (``expired``, ``cancelled``): the
    task is runnable again, never failed.
    """

    custom_id: str
    images: list[ImageData] | None = None
    error: ProviderError | None = None
    unrun: str | None = None


class BatchApi(Protocol):
    """One provider's batch API (see the module docstring)."""

    @property
    def provider(self) -> Provider:
        """The provider whose key and address the batch API uses (read-only here, so an
        implementation may narrow it to its own provider class)."""

    #: the service's name in messages ("OpenAI")
    label: str
    #: the most requests and input bytes one job may hold
    max_requests: int
    max_bytes: int

    def check(self, request: GenerationRequest) -> None:
        """Raise when this request cannot go through the batch API (nothing is sent)."""

    def endpoint(self, request: GenerationRequest) -> str:
        """The endpoint this request goes to (one job holds one endpoint's requests)."""

    def line(self, request: GenerationRequest, custom_id: str, files: Sequence[str] = ()) -> bytes:
        """The input file's line for one request (JSON, ending in a newline); ``files``
        are the ids of its reference images, uploaded with :meth:`upload_image`."""

    async def upload(self, path: Path, name: str) -> str:
        """Upload the input file; return its id."""

    async def upload_image(self, data: bytes, name: str, mime: str) -> str:
        """Upload one reference image for the requests that use it; return its id."""

    async def create(
        self, input_file: str, metadata: Mapping[str, str], endpoint: str
    ) -> RemoteJob: ...

    async def get(self, job_id: str) -> RemoteJob: ...

    async def find(self, key: str, value: str) -> RemoteJob | None:
        """The job whose ``metadata[key] == value``, newest first (None: none)."""

    async def cancel(self, job_id: str) -> RemoteJob: ...

    async def download(self, file_id: str, path: Path) -> int:
        """Write a result file to ``path`` as it arrives; return its size."""

    def custom_id(self, line: Any) -> str | None:
        """The custom id (task id) a parsed result line is for (None: it names none)."""

    async def read_line(self, line: Any, request: GenerationRequest) -> LineResult:
        """One parsed line of a result file (output or errors) as a :class:`LineResult`."""
