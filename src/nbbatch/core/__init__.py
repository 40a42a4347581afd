"""The bottom layer: plain data that every other layer may use and that uses none of them.

``_model`` (tasks, params, references, images), ``_errors`` (the one exception tree),
``_events`` (what a batch announces), ``_retry`` (backoff policy), ``_secrets`` (keys and
scrubbing), ``_aio`` (running a coroutine from sync code). Nothing here does I/O beyond
opening an image file lazily when asked.
"""
