"""The model-rules table as a pre-flight check for :class:`~._validate.RequestValidator`.

Each refusal becomes a problem naming the request, its custom_id, ``params.<field>`` and the
model, so every request a model would answer ``errored`` a day later is listed before anything
is sent. A rule the API drops before the table does is switched off by name.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from airflow_batches.api._request_shape import PARAMS_REMOVED_IN
from airflow_batches.api._rules import ModelRules, RulesTable, load_rules_table
from airflow_batches.jobs.prepare._validate import ParamCheck

__all__ = ["model_rules_check"]


def model_rules_check(
    *,
    anthropic_version: str,
    betas: Sequence[str] = (),
    disabled: Iterable[str] = (),
    table: RulesTable | None = None,
) -> ParamCheck:
    """A ``checks=`` entry: ``(field, message)`` for each rule a request's model refuses.

    ``betas`` are the batch-level beta headers the job is sent with (they raise the output
    limit of the models that support them); ``disabled`` names rules to skip (``"rule"`` or
    ``"model:rule"``); ``table`` defaults to the packaged one.
    """
    table = table if table is not None else load_rules_table()
    removed = PARAMS_REMOVED_IN.get(anthropic_version, frozenset())
    rules = ModelRules(table, betas=betas, disabled=disabled, removed_params=removed)
    what = [_plain(table._state()), sorted(betas), sorted(disabled), sorted(removed)]
    identity = hashlib.sha256(json.dumps(what, sort_keys=True).encode())
    return _RulesCheck(rules, table, f"model-rules:{identity.hexdigest()}")


class _RulesCheck:
    """The check itself; ``identity`` names what its verdicts depend on (the table, the
    betas, the rules switched off), for pre-flight's receipts (``jobs.cache._receipts``)."""

    def __init__(self, rules: ModelRules, table: RulesTable, identity: str) -> None:
        self.rules = rules
        self.table = table
        self.identity = identity

    def __call__(self, params: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        for violation in self.rules.check(params):
            spec = self.table.get(violation.model)
            checked = spec.checked.isoformat() if spec and spec.checked else "undated"
            yield (
                violation.field,
                f"{violation.message} (model rule {violation.rule!r}, checked {checked}; "
                f"disabled_model_rules=[{violation.rule!r}] switches it off)",
            )


def _plain(value: Any) -> Any:
    """``value`` as JSON the same in every process (sets sorted; models dumped)."""
    if hasattr(value, "model_dump"):
        return _plain(value.model_dump(mode="json"))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((_plain(v) for v in value), key=repr)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)
