"""Process-wide tuning of CPython's cyclic garbage collector, applied once a process has started.

Measured: without it a worker spent about a quarter of its CPU per 100-event batch request in the
collector (in process, deriver off: 6.6-7.0 ms against 4.4-5.0 ms), and a deriver a third of its
CPU per event (139-150 µs against 86-102 µs at 100,000). The collector walked the objects loaded at
start-up (modules, FastAPI's routes and models, pydantic's validators) again and again while requests
allocate and free their messages. `gc.freeze()` moves everything alive at start-up into a generation
the collector never scans; a larger first-generation threshold collects less often while a batch's
objects are alive (they are freed by reference counting, not by the collector)."""

from __future__ import annotations

import gc


def tune_gc(gen0_threshold: int) -> None:
    """Freeze what is alive now; collect the youngest generation every gen0_threshold allocations
    (0: leave the collector as Python set it)."""
    if gen0_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
