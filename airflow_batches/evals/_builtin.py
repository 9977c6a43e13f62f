"""The built-in scorers, and scorers named by a string.

Each reads the expected value from ``metadata[expected]`` (``"expected"`` unless told
otherwise; a list there means "any of these"), and returns None (not scored) when the metadata
has none: :func:`exact_match`, :func:`contains`, :func:`regex`, :func:`json_schema`,
:func:`numeric`; :func:`by_category` picks one of several by a metadata field. A scorer may
also be named by a string: a built-in's name (``"exact_match"``) or
``"package.module:function"`` (:func:`resolve_scorer`).
"""

from __future__ import annotations

import importlib
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_batches.evals._json_checks import extract_json, remote_ref, schema_checker
from airflow_batches.evals._scorers import EvalResult, Scorer, ScorerError, is_mapping

__all__ = [
    "by_category",
    "contains",
    "exact_match",
    "extract_json",
    "json_schema",
    "last_number",
    "numeric",
    "regex",
    "resolve_scorer",
]


def _expected(metadata: Any, key: str) -> Sequence[Any] | None:
    """The expected values (any of them will do), or None when the metadata has none."""
    if not is_mapping(metadata) or key not in metadata:
        return None
    value = metadata[key]
    if type(value) is list:  # as JSON decodes it: read, never changed
        return value
    return list(value) if isinstance(value, list | tuple) else [value]


def _normalise(text: str, *, case: bool, spaces: bool) -> str:
    text = unicodedata.normalize("NFKC", text).strip()
    if spaces:
        text = " ".join(text.split())
    return text if case else text.casefold()


@dataclass(frozen=True)
class _Named:
    name: str

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True, repr=False)
class ExactMatch(_Named):
    expected: str = "expected"
    case_sensitive: bool = False
    strip_punctuation: str = ".!"

    def __call__(self, result: EvalResult, metadata: Any) -> bool | None:
        wanted = _expected(metadata, self.expected)
        if wanted is None:
            return None
        case = self.case_sensitive
        answer = _normalise(result.text, case=case, spaces=True)
        answer = answer.rstrip(self.strip_punctuation).strip()
        for w in wanted:
            if answer == _normalise(w if type(w) is str else str(w), case=case, spaces=True):
                return True
        return False


def exact_match(
    expected: str = "expected", *, case_sensitive: bool = False, strip_punctuation: str = ".!"
) -> Scorer:
    """Passes when the answer's text equals ``metadata[expected]`` (or one of a list), after
    Unicode NFKC normalisation, trimming, collapsing whitespace, dropping trailing
    ``strip_punctuation`` and, unless ``case_sensitive``, case folding."""
    name = f"exact_match(expected={expected!r})"
    return ExactMatch(name, expected, case_sensitive, strip_punctuation)


@dataclass(frozen=True, repr=False)
class Contains(_Named):
    expected: str = "expected"
    case_sensitive: bool = False
    all_of: bool = False

    def __call__(self, result: EvalResult, metadata: Any) -> bool | None:
        wanted = _expected(metadata, self.expected)
        if wanted is None:
            return None
        answer = _normalise(result.text, case=self.case_sensitive, spaces=True)
        found = (
            _normalise(str(w), case=self.case_sensitive, spaces=True) in answer for w in wanted
        )
        return all(found) if self.all_of else any(found)


def contains(
    expected: str = "expected", *, case_sensitive: bool = False, all_of: bool = False
) -> Scorer:
    """Passes when the answer's text contains ``metadata[expected]`` (with a list: any of
    them, or with ``all_of`` every one), compared as :func:`exact_match` does."""
    return Contains(f"contains(expected={expected!r})", expected, case_sensitive, all_of)


@dataclass(frozen=True, repr=False)
class Regex(_Named):
    pattern: re.Pattern[str] | None = None
    expected: str = "pattern"
    flags: int = 0

    def __call__(self, result: EvalResult, metadata: Any) -> bool | None:
        if self.pattern is not None:
            patterns: Iterable[re.Pattern[str]] = [self.pattern]
        else:
            wanted = _expected(metadata, self.expected)
            if wanted is None:
                return None
            patterns = [re.compile(str(w), self.flags) for w in wanted]
        text = result.text
        return any(p.search(text) for p in patterns)


def regex(pattern: str | None = None, *, expected: str = "pattern", flags: int = 0) -> Scorer:
    """Passes when the answer's text matches ``pattern`` (``re.search``), or, without one, the
    pattern(s) in ``metadata[expected]``."""
    compiled = re.compile(pattern, flags) if pattern is not None else None
    name = f"regex({pattern!r})" if pattern is not None else f"regex(expected={expected!r})"
    return Regex(name, compiled, expected, flags)


@dataclass(frozen=True, repr=False)
class JsonSchema(_Named):
    schema: Mapping[str, Any] | None = None
    schema_key: str = "schema"
    expected: str | None = "expected"
    from_tool: bool = False

    def __call__(self, result: EvalResult, metadata: Any) -> dict[str, Any] | None:
        schema = self.schema
        if schema is None:
            if not is_mapping(metadata) or self.schema_key not in metadata:
                return None
            schema = metadata[self.schema_key]
        try:
            if self.from_tool:
                inputs = result.tool_inputs
                if not inputs:
                    raise ValueError("no tool_use block in the answer")
                value = inputs[0]
            else:
                value = extract_json(result.text)
        except ValueError as exc:
            return {"score": False, "error": str(exc)}
        try:
            return self._check(schema, value, metadata)
        except RecursionError:
            return {"score": False, "error": "the answer nests too deep to be checked"}

    def _check(self, schema: Any, value: Any, metadata: Any) -> dict[str, Any]:
        error = schema_checker(schema).first_error(value)
        if error is not None:
            return {"score": False, "error": error}
        wanted = _expected(metadata, self.expected) if self.expected else None
        if wanted is not None and value not in wanted:
            return {"score": False, "error": "valid, but not the expected value"}
        return {"score": True}


def json_schema(
    schema: Mapping[str, Any] | None = None,
    *,
    schema_key: str = "schema",
    expected: str | None = "expected",
    from_tool: bool = False,
) -> Scorer:
    """Passes when the answer holds JSON (the whole text, a fenced block or the first
    object/array in it; with ``from_tool`` the first tool call's input) valid against
    ``schema`` (or ``metadata[schema_key]``; JSON Schema 2020-12), and, when the metadata
    has ``expected``, equal to it. A failure says why in ``details.error``."""
    if schema is not None:
        import jsonschema

        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ScorerError(f"json_schema: the schema is not valid: {exc.message}") from None
        uri = remote_ref(schema)
        if uri is not None:
            raise ScorerError(
                f"json_schema: the schema's $ref {uri} is outside it, and a schema is never "
                "fetched from elsewhere: put what it refers to under $defs"
            )
    name = "json_schema(schema)" if schema is not None else f"json_schema({schema_key!r})"
    return JsonSchema(name, schema, schema_key, expected, from_tool)


_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")


def last_number(text: str) -> float | None:
    """The last number written in a text (``1,234.5`` reads as 1234.5), or None."""
    if text.isdecimal():  # digits alone (the characters `\d` matches): the number is the text
        return float(text)
    found = _NUMBER.findall(text)
    return float(found[-1].replace(",", "")) if found else None


@dataclass(frozen=True, repr=False)
class Numeric(_Named):
    expected: str = "expected"
    abs_tol: float = 1e-9
    rel_tol: float = 0.0

    def __call__(self, result: EvalResult, metadata: Any) -> dict[str, Any] | None:
        wanted = _expected(metadata, self.expected)
        if wanted is None:
            return None
        got = last_number(result.text)
        if got is None:
            return {"score": False, "error": "no number in the answer"}
        for value in wanted:
            try:
                target = float(value)
            except (TypeError, ValueError):
                raise ScorerError(
                    f"numeric: metadata[{self.expected!r}] = {value!r} is not a number"
                ) from None
            if math.isclose(got, target, rel_tol=self.rel_tol, abs_tol=self.abs_tol):
                return {"score": True, "answer": got}
        return {"score": False, "answer": got}


def numeric(expected: str = "expected", *, abs_tol: float = 1e-9, rel_tol: float = 0.0) -> Scorer:
    """Passes when the last number in the answer is within ``abs_tol`` or ``rel_tol``
    (``math.isclose``) of ``metadata[expected]``; the number read is kept in details."""
    return Numeric(f"numeric(expected={expected!r})", expected, abs_tol, rel_tol)


@dataclass(frozen=True, repr=False)
class ByCategory(_Named):
    field: str
    scorers: Mapping[str, Scorer]
    default: Scorer | None

    def __call__(self, result: EvalResult, metadata: Any) -> Any:
        category = metadata.get(self.field) if is_mapping(metadata) else None
        scorer = self.scorers.get(str(category), self.default) if category is not None else None
        if scorer is None:
            scorer = self.default
        return None if scorer is None else scorer(result, metadata)


def by_category(
    scorers: Mapping[str, Scorer | str],
    *,
    field: str = "category",
    default: Scorer | str | None = None,
) -> Scorer:
    """The scorer ``scorers[metadata[field]]`` (else ``default``; else not scored)."""
    resolved = {k: resolve_scorer(v) for k, v in scorers.items()}
    fallback = resolve_scorer(default) if default is not None else None
    name = f"by_category({field!r}: " + ", ".join(f"{k}={v!r}" for k, v in resolved.items()) + ")"
    return ByCategory(name, field, resolved, fallback)


BUILT_IN: Mapping[str, Callable[[], Scorer]] = {
    "exact_match": exact_match,
    "contains": contains,
    "regex": regex,
    "json_schema": json_schema,
    "numeric": numeric,
}


def resolve_scorer(spec: Scorer | str | Sequence[Any]) -> Scorer:
    """A scorer from a callable, a built-in's name, or ``"package.module:callable"``."""
    if callable(spec):
        return spec
    if isinstance(spec, str):
        if spec in BUILT_IN:
            return BUILT_IN[spec]()
        module, sep, attr = spec.partition(":")
        if sep and module and attr:
            target: Any = importlib.import_module(module)
            for part in attr.split("."):
                target = getattr(target, part)
            if not callable(target):
                raise ScorerError(f"scorer {spec!r} is not callable")
            return target  # type: ignore[no-any-return]
    raise ScorerError(
        f"unknown scorer {spec!r}: give a callable (result, metadata) -> score, one of "
        f"{', '.join(BUILT_IN)}, or 'package.module:function'"
    )
