"""The model-rules table as a pre-flight check for :class:`~._validate.RequestValidator`.

Each refusal becomes a problem naming the request, its custom_id, ``params.<field>`` and the
model, so every request a model would answer ``errored`` a day later is listed before anything
is sent. A rule the API drops before the table does is switched off by name.
"""

from __future__ import annotations

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
    rules = ModelRules(
        table,
        betas=betas,
        disabled=disabled,
        removed_params=PARAMS_REMOVED_IN.get(anthropic_version, frozenset()),
    )

    def check(params: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        for violation in rules.check(params):
            spec = table.get(violation.model)
            checked = spec.checked.isoformat() if spec and spec.checked else "undated"
            yield (
                violation.field,
                f"{violation.message} (model rule {violation.rule!r}, checked {checked}; "
                f"disabled_model_rules=[{violation.rule!r}] switches it off)",
            )

    return check
