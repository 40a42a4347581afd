"""Which providers have a batch API, and the :class:`BatchApi` of one (``batch_api=True``).

The pairing lives here, above both sides: a provider module knows nothing of its batch
API (which builds on it: the same request fields, answer parsing and error words), so
neither imports the other in a circle.
"""

from __future__ import annotations

from ._base import Provider
from ._batchapi import BatchApi
from ._gemini import GeminiProvider
from ._gemini_batch import GeminiBatchApi
from ._openai import OpenAIProvider
from ._openai_batch import OpenAIBatchApi

__all__ = ["batch_api_of"]


def batch_api_of(provider: Provider) -> BatchApi | None:
    """``provider``'s batch API, or None when it has none.

    OpenAI Images and Gemini have theirs; a provider of one's own may offer one through a
    ``batch_api()`` method returning a :class:`BatchApi`.
    """
    if isinstance(provider, OpenAIProvider):
        return OpenAIBatchApi(provider)
    if isinstance(provider, GeminiProvider):
        return GeminiBatchApi(provider)
    make = getattr(provider, "batch_api", None)
    if make is None:
        return None
    api: BatchApi = make()
    return api
