"""Garbage-collector settings for a process that holds many long-lived connections.

A full collection walks every container object in the process; with thousands of open
sockets that is hundreds of thousands of objects and a pause of tens to hundreds of
milliseconds, during which no event is delivered. Two adjustments keep those pauses rare
and short (measured with ``bench/realtime_fanout.py``):

- once started, everything built so far (modules, the app, the clients) is moved out of
  the collector's sight with :func:`gc.freeze` — it lives as long as the process anyway;
- the young generation is larger (:data:`GEN0_THRESHOLD` instead of 700 allocations):
  almost everything a delivery allocates is freed by reference counting, so collections
  are triggered mostly by objects that live (new connections); fewer, slightly larger
  young collections cost less in total and promote less to the old generation.
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
