"""What the Airflow release under test offers, as docs/compatibility.md states it.

Tests that expect a different behaviour per release branch on these names only;
``tests/operators/test_releases.py`` checks that they match what the release really does.
"""

from __future__ import annotations

from airflow_batches._compat import AIRFLOW_VERSION

RELEASE = tuple(int(part) for part in AIRFLOW_VERSION.split(".")[:2])

HAS_TASK_STATE_STORE = RELEASE >= (3, 3)
"""``context["task_state_store"]``: a per-task key/value store in the metadata DB."""

HAS_TRIGGER_ON_KILL = RELEASE >= (3, 3)
"""The triggerer calls ``BaseTrigger.on_kill()`` when a user kills a deferred task."""

HAS_AWAITING_INPUT = RELEASE >= (3, 3)
"""A task waiting for a person (HITL) parks in ``awaiting_input``, with no trigger; before,
it defers to ``HITLTrigger``."""

HAS_STATE_AUDIT_LOG = RELEASE >= (3, 2)
"""The execution API writes an audit-log row for each state a worker reports."""

HAS_DECLARATIVE_CONNECTION_FORM = RELEASE >= (3, 2)
"""The connection form's fields come from the provider info's ``conn-fields``."""
