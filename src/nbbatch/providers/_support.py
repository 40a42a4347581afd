"""Where the adapters' shared helpers used to live; each now has a module of its job.

* :mod:`._encoding` -- base64 image fields, data URLs, the MIME type of image bytes;
* :mod:`._sizes` -- the nearest aspect ratio a service accepts;
* :mod:`._offload` -- heavy payload work off the event loop;
* :mod:`._fetch` -- polls and downloads of a remote job, retried for that job;
* :mod:`._access` -- ``same_origin``: where a key may be sent.

The names stay importable from here so that code written against the old module (an
adapter in a plug-in, a branch in flight) keeps working; new code imports from the
modules above.
"""

from ._access import same_origin
from ._encoding import b64_image, data_url, decode_data_url, guess_mime
from ._fetch import DEFAULT_MAX_DOWNLOAD, FETCH_ATTEMPTS, FETCH_RETRY_DELAY, retry_fetch
from ._offload import OFFLOAD_BYTES, offload
from ._sizes import nearest_aspect_ratio

__all__ = [
    "DEFAULT_MAX_DOWNLOAD",
    "FETCH_ATTEMPTS",
    "FETCH_RETRY_DELAY",
    "OFFLOAD_BYTES",
    "b64_image",
    "data_url",
    "decode_data_url",
    "guess_mime",
    "nearest_aspect_ratio",
    "offload",
    "retry_fetch",
    "same_origin",
]
