"""A small ``multipart/form-data`` reader for the fakes (no python-multipart needed).

Starlette's own form parser needs the optional ``python-multipart`` package; the
standard library's MIME parser reads these bodies just as well for test-sized uploads.
"""

from __future__ import annotations

import email.parser
import email.policy
from dataclasses import dataclass

__all__ = ["FormPart", "parse_form"]


@dataclass(frozen=True)
class FormPart:
    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


def parse_form(body: bytes, content_type: str) -> list[FormPart]:
    """Parts of a multipart body in order; raises ValueError when it is not multipart."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise ValueError(f"expected multipart/form-data, got {content_type!r}")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise ValueError("the multipart body could not be read (boundary missing?)")
    parts = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        ctype = part.get("content-type")
        parts.append(FormPart(name, data, part.get_filename(), str(ctype) if ctype else None))
    return parts
