"""The triggerer's start-up heap, frozen once, out of the garbage collector's full passes.

A triggerer holds Airflow's imports (some 200,000 objects tracked by CPython's collector) and
every waiting trigger's objects. A full collection walks all of them, on the event loop: at
10,000 waits one pass took about 0.3 s, past Airflow's 0.2 s warning. ``gc.freeze()`` moves
every object tracked at that moment to a permanent generation that later passes skip, as
Airflow's own DAG processor does before it forks.

:func:`freeze_startup_heap` does it once per process, when the first shared status poller
starts its first round of reads (``_poller``): by then the triggerer has loaded Airflow and
this package, and the triggers it was handed at once have started and subscribed. It costs
nothing per call (the collector's lists are spliced, not walked). What it gives up: cyclic
garbage among the frozen objects is never collected (a young collection runs first, so that
is only what the old generation already held), and a frozen object that later becomes part
of a cycle stays. Objects freed by their reference count (nearly all) are freed as before.
Set ``AIRFLOW_BATCHES_GC_FREEZE=0`` in the triggerer's environment to leave the collector
alone.
"""

from __future__ import annotations

import gc
import os

__all__ = ["FREEZE_VARIABLE", "freeze_startup_heap"]

FREEZE_VARIABLE = "AIRFLOW_BATCHES_GC_FREEZE"
_state = {"done": False}


def freeze_startup_heap() -> bool:
    """Freeze the objects the collector tracks now, the first time only; whether it did.

    Not done when the variable says ``0``/``false``/``no``, nor when the collector is disabled
    (whoever disabled it manages it)."""
    if _state["done"]:
        return False
    _state["done"] = True
    if os.environ.get(FREEZE_VARIABLE, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if not gc.isenabled():
        return False
    gc.collect(1)  # the young generations only: milliseconds, and their garbage is not kept
    gc.freeze()
    return True
