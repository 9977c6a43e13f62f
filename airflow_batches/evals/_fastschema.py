"""Whether a value is valid against a JSON Schema, fast, for the schemas most answers are judged by.

``jsonschema`` walks a schema afresh for every value (about 15 µs for a two-member object);
an evaluation judges hundreds of thousands of answers against the same few schemas.
:func:`compile_check` turns a schema made only of the keywords below into a Python predicate
with the same answer as ``jsonschema.Draft202012Validator(schema).is_valid`` (without a format
checker, as ``_builtin.JsonSchema`` builds it), or returns None for any other schema, which is
then judged by ``jsonschema`` as before. A value found invalid is judged again by
``jsonschema`` for its error message: only the verdict comes from here.

Asserted: ``type`` (one or a list), ``properties``, ``required``, ``additionalProperties``
(a boolean or a schema), ``items`` (one schema), ``minItems``/``maxItems``,
``minLength``/``maxLength``, ``pattern``, ``minimum``/``maximum``,
``exclusiveMinimum``/``exclusiveMaximum``, ``true``/``false`` schemas. Ignored, as
``jsonschema`` ignores them: ``title``, ``description``, ``$comment``, ``default``,
``examples``, ``deprecated``, ``readOnly``, ``writeOnly``, ``format`` (an annotation without a
format checker), ``$schema``, ``$id``, ``$defs`` (unused without ``$ref``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Check", "compile_check"]

Check = Callable[[Any], bool]

_IGNORED = frozenset(
    {
        "title",
        "description",
        "$comment",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "format",
        "$schema",
        "$id",
        "$defs",
    }
)
_NUMBERS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_COUNTS = ("minItems", "maxItems", "minLength", "maxLength")
_KNOWN = _IGNORED | {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "pattern",
    *_NUMBERS,
    *_COUNTS,
}


class _Unsupported(Exception):
    pass


def compile_check(schema: Any) -> Check | None:
    """A predicate with ``jsonschema``'s verdict on ``schema``, or None (see the docstring)."""
    try:
        return _compile(schema)
    except _Unsupported:
        return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _type_test(name: Any) -> Check:
    if name == "object":
        return lambda v: isinstance(v, dict)
    if name == "array":
        return lambda v: isinstance(v, list)
    if name == "string":
        return lambda v: isinstance(v, str)
    if name == "boolean":
        return lambda v: isinstance(v, bool)
    if name == "null":
        return lambda v: v is None
    if name == "number":
        return _is_number
    if name == "integer":
        return lambda v: (
            (isinstance(v, int) and not isinstance(v, bool))
            or (isinstance(v, float) and v.is_integer())
        )
    raise _Unsupported


def _compile(schema: Any) -> Check:
    if schema is True:
        return lambda v: True
    if schema is False:
        return lambda v: False
    if not isinstance(schema, Mapping) or not set(schema) <= _KNOWN:
        raise _Unsupported
    checks: list[Check] = []
    kind = schema.get("type")
    if kind is not None:
        names = kind if isinstance(kind, list) else [kind]
        tests = [_type_test(n) for n in names]
        checks.append(lambda v: any(t(v) for t in tests))
    if any(k in schema for k in ("properties", "required", "additionalProperties")):
        checks.append(_object_check(schema))
    if "items" in schema:
        item = _compile(schema["items"])
        checks.append(lambda v: not isinstance(v, list) or all(item(x) for x in v))
    for keyword in _COUNTS:
        if keyword in schema:
            checks.append(_count_check(keyword, schema[keyword]))
    if "pattern" in schema:
        if not isinstance(schema["pattern"], str):
            raise _Unsupported
        search = re.compile(schema["pattern"]).search
        checks.append(lambda v: not isinstance(v, str) or search(v) is not None)
    for keyword in _NUMBERS:
        if keyword in schema:
            checks.append(_bound_check(keyword, schema[keyword]))
    if len(checks) == 1:
        return checks[0]
    return lambda v: all(c(v) for c in checks)


def _object_check(schema: Mapping[str, Any]) -> Check:
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    if not isinstance(properties, Mapping) or not isinstance(required, list):
        raise _Unsupported
    if not all(isinstance(r, str) for r in required):
        raise _Unsupported
    subs = {name: _compile(sub) for name, sub in properties.items()}
    extra = schema.get("additionalProperties", True)
    others = _compile(extra)
    open_ended = extra is True

    def check(v: Any) -> bool:
        if not isinstance(v, dict):
            return True
        for name in required:
            if name not in v:
                return False
        for name, value in v.items():
            sub = subs.get(name)
            if sub is not None:
                if not sub(value):
                    return False
            elif not open_ended and not others(value):
                return False
        return True

    return check


def _count_check(keyword: str, bound: Any) -> Check:
    if not isinstance(bound, int) or isinstance(bound, bool):
        raise _Unsupported
    kind = list if keyword.endswith("Items") else str
    if keyword.startswith("min"):
        return lambda v: not isinstance(v, kind) or not len(v) < bound
    return lambda v: not isinstance(v, kind) or not len(v) > bound


def _bound_check(keyword: str, bound: Any) -> Check:
    if not _is_number(bound):
        raise _Unsupported
    # As jsonschema words each: the value fails when this holds (a NaN fails none).
    fails: Callable[[Any], bool] = {
        "minimum": lambda v: v < bound,
        "maximum": lambda v: v > bound,
        "exclusiveMinimum": lambda v: v <= bound,
        "exclusiveMaximum": lambda v: v >= bound,
    }[keyword]
    return lambda v: not _is_number(v) or not fails(v)
