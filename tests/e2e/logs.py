"""Reading Airflow's logs from the outside: JSON-lines task logs, tails for failure reports."""

from __future__ import annotations

import contextlib
import json

# Fields every task-log line carries; they only add noise to a rendered log.
_LOG_NOISE_KEYS = frozenset(
    {"timestamp", "level", "event", "logger", "filename", "lineno", "dag_id", "task_id"}
    | {"run_id", "try_number", "ti_id", "map_index"}
)


def tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines()) or "    <empty>"


def render_log(text: str) -> str:
    """Turn Airflow's JSON-lines task log into one readable line per record."""
    out = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            out.append(line)
            continue
        if not isinstance(rec, dict):
            out.append(line)
            continue
        extras = " ".join(
            f"{key}={value if isinstance(value, str) else json.dumps(value, default=str)}"
            for key, value in rec.items()
            if key not in _LOG_NOISE_KEYS
        )
        logger = f"[{rec['logger']}] " if rec.get("logger") else ""
        parts = [
            str(rec.get("timestamp", "")),
            str(rec.get("level", "")),
            logger + str(rec.get("event", "")),
        ]
        out.append(" ".join(p for p in parts if p) + (f" {extras}" if extras else ""))
    return "\n".join(out)


def log_events(text: str) -> list[str]:
    """The ``event`` (message) of every JSON record in ``text``."""
    events = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            rec = json.loads(line)
            if isinstance(rec, dict) and isinstance(rec.get("event"), str):
                events.append(rec["event"])
    return events
