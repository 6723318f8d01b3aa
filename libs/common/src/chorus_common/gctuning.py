"""Garbage-collector settings for a long-running async service, applied once it has started.

Measured with ``bench/``: the api's hottest read spends about 7% of its CPU time in young
collections at CPython's default threshold (``bench/api_users.py``: 319 to 296 us of
server CPU per request), and a realtime replica holding thousands of sockets paused for
tens of milliseconds in full collections (``bench/realtime_fanout.py``). Two adjustments:

- the young generation is larger (:data:`GEN0_THRESHOLD` instead of 700 allocations):
  almost everything a request or a delivery allocates is freed by reference counting, so
  collections are triggered mostly by objects that live a while (in-flight requests, new
  connections); fewer, slightly larger young collections cost less in total and promote
  less to the old generation (10,000 and 50,000 measured alike; 700 with only the freeze
  below gained nothing);
- everything built by startup (modules, the app, the pools and clients) is moved out of
  the collector's sight with :func:`gc.freeze` — it lives as long as the process anyway,
  and full collections no longer walk it.

:class:`chorus_common.server.DrainingServer` applies this after the app's startup, so
every served process has it and tests that build apps in-process do not.
"""

from __future__ import annotations

import gc

__all__ = ["GEN0_THRESHOLD", "settle_garbage_collector"]

#: Allocations (net of deallocations) that trigger a young collection.
GEN0_THRESHOLD = 10_000


def settle_garbage_collector() -> None:
    """Collect once, freeze what exists (startup state), and enlarge the young generation."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
