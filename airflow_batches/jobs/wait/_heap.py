"""The triggerer's start-up heap, frozen once, out of the garbage collector's full passes.

A triggerer holds Airflow's imports (some 200,000 objects tracked by CPython's collector) and
every waiting trigger's objects. A full collection walks all of them, on the event loop: at
10,000 waits one pass took about 0.3 s, past Airflow's 0.2 s warning. ``gc.freeze()`` moves
every object tracked at that moment to a permanent generation that later passes skip, as
Airflow's own DAG processor does before it forks.

:func:`freeze_startup_heap` does it at two moments of a process, each once: ``"start"``, when
the first trigger starts to run, before the wait's modules are imported in a thread
(``airflow_batches.triggers.batch.load_wait``), or when the first shared status poller is made
(``_poller``), whichever comes first (Airflow is loaded: a full collection falling due while
the wait is imported or the first client is made then has only what came since to walk, not
Airflow's objects); and ``"triggers"``, when that
poller starts its second round of reads (the triggers handed out at once have started, read a
first answer and logged it: their client, readings, progress and loggers are made). It costs
nothing per call (the collector's lists are spliced, not walked). What it gives up: cyclic
garbage among the frozen objects is never collected (a young collection runs first, so that
is only what the old generation already held, twice in a process's life), and a frozen object
that later becomes part of a cycle stays. Objects freed by their reference count (nearly all)
are freed as before. Set ``AIRFLOW_BATCHES_GC_FREEZE=0`` in the triggerer's environment to
leave the collector alone.
"""

from __future__ import annotations

import gc
import os

__all__ = ["FREEZE_VARIABLE", "MOMENTS", "freeze_startup_heap"]

FREEZE_VARIABLE = "AIRFLOW_BATCHES_GC_FREEZE"
MOMENTS = ("start", "triggers")
_done: set[str] = set()


def freeze_startup_heap(moment: str) -> bool:
    """Freeze the objects the collector tracks now, the first time at ``moment`` only (one of
    :data:`MOMENTS`); whether it did.

    Not done when the variable says ``0``/``false``/``no``/``off``, nor when the collector is
    disabled (whoever disabled it manages it)."""
    if moment not in MOMENTS:
        raise ValueError(f"moment must be one of {MOMENTS}, got {moment!r}")
    if moment in _done:
        return False
    _done.add(moment)
    if os.environ.get(FREEZE_VARIABLE, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if not gc.isenabled():
        return False
    gc.collect(1)  # the young generations only: milliseconds, and their garbage is not kept
    gc.freeze()
    return True
