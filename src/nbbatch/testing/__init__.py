"""Loopback fake servers of the real services, for tests, demos and benchmarks.

They speak each service's real wire protocol over real HTTP on 127.0.0.1, so the studio
and your own pipelines can be tried without keys or network. Needs the ``testing`` extra
(``pip install 'nbbatch[testing]'``: starlette, uvicorn, websockets).
"""

from ._a1111 import FakeA1111
from ._chat import FakeChat
from ._comfyui import FakeComfyUI
from ._fal import FakeFal
from ._gemini import FakeGemini
from ._huggingface import FakeHuggingFace
from ._openai import FakeOpenAI
from ._openai_batch import BatchClock
from ._ratelimited import RateLimitedProvider, VirtualTimeLoop
from ._replicate import FakeReplicate
from ._server import FakeServer, Fault, RecordedRequest
from ._stability import FakeStability

__all__ = [
    "BatchClock",
    "FakeA1111",
    "FakeChat",
    "FakeComfyUI",
    "FakeFal",
    "FakeGemini",
    "FakeHuggingFace",
    "FakeOpenAI",
    "FakeReplicate",
    "FakeServer",
    "FakeStability",
    "Fault",
    "RateLimitedProvider",
    "RecordedRequest",
    "VirtualTimeLoop",
]
