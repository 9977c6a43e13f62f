# ruff: noqa: E501  (the corpus is data: long literal lines read best unbroken)
"""Writes the corpus of request files in this folder, and ``expected.toml``, the verdicts.

    .venv/bin/python tests/jobs/prepare/request_files/build.py

``malformed/``: files every one of which pre-flight must refuse with a
``RequestValidationError`` whose message names what ``names`` lists (the line, the custom_id,
the field, the fault). ``valid/``: files from real pipelines that look odd and must pass, with
the number of requests they hold. ``tests/jobs/prepare/test_request_corpus.py`` checks both, and that
this script still writes exactly the files committed here.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BOM = b"\xef\xbb\xbf"


def req(cid: str = "r1", *, params: str | None = None, **over: str) -> bytes:
    """One request line (no newline); ``over`` replaces params members by raw JSON text."""
    members = {
        "model": '"claude-haiku-4-5"',
        "max_tokens": "16",
        "messages": '[{"role":"user","content":"hello"}]',
    }
    members.update(over)
    body = params if params is not None else ",".join(f'"{k}":{v}' for k, v in members.items())
    return f'{{"custom_id":"{cid}","params":{{{body}}}}}'.encode()


def msgs(role: str = '"user"', content: str = '"hello"') -> str:
    return f'[{{"role":{role},"content":{content}}}]'


def lines(*items: bytes, end: bytes = b"\n") -> bytes:
    return b"".join(item + end for item in items)


OK = req("ok-0")
"""A valid first line, so that the bad one is line 2 and line numbers are checked."""

MALFORMED: dict[str, tuple[bytes, list[str]]] = {
    # duplicate keys: parsers disagree on which value wins
    "dup_key_max_tokens": (
        lines(OK, req("dup-1").replace(b'"max_tokens":16', b'"max_tokens":5,"max_tokens":500')),
        ["line 2", "custom_id 'dup-1'", "params.max_tokens", "duplicate key"],
    ),
    "dup_key_custom_id": (
        lines(OK, b'{"custom_id":"a1","custom_id":"a2",' + req("x")[len(b'{"custom_id":"x",') :]),
        ["line 2", "custom_id: duplicate key"],
    ),
    "dup_key_params": (
        lines(OK, req("dup-p")[:-1] + b',"params":{}}'),
        ["line 2", "custom_id 'dup-p'", "params: duplicate key"],
    ),
    "dup_key_in_message": (
        lines(OK, req("dup-m", messages='[{"role":"user","role":"assistant","content":"x"}]')),
        ["line 2", "custom_id 'dup-m'", "params.messages[0].role", "duplicate key"],
    ),
    "dup_key_escaped_spelling": (
        lines(
            OK, req("dup-e").replace(b'"max_tokens":16', b'"max_tokens":16,"max_tok\\u0065ns":9')
        ),
        ["line 2", "custom_id 'dup-e'", "params.max_tokens", "duplicate key"],
    ),
    "dup_key_and_escaped_colon": (
        lines(
            OK,
            req(
                "dup-c",
                model='"a\\u003ab"',
                messages='[{"role":"user","content":"x","content":"y"}]',
            ),
        ),
        ["line 2", "custom_id 'dup-c'", "params.messages[0].content", "duplicate key"],
    ),
    "dup_key_in_tool_schema": (
        lines(
            OK,
            req(
                "dup-t",
                tools='[{"name":"t","input_schema":{"type":"object","properties":{"a":{"type":"string","type":"number"}}}}]',
            ),
        ),
        [
            "line 2",
            "custom_id 'dup-t'",
            "params.tools[0].input_schema.properties.a.type",
            "duplicate key",
        ],
    ),
    "dup_key_spaced": (
        lines(
            OK,
            b'{ "custom_id" : "dup-s" , "params" : { "model" : "m" , "max_tokens" : 1 , "max_tokens" : 2 , "messages" : [ { "role" : "user" , "content" : "x" } ] } }',
        ),
        ["line 2", "custom_id 'dup-s'", "params.max_tokens", "duplicate key"],
    ),
    "dup_key_three_times_in_list_item": (
        lines(OK, req("dup-3", metadata='{"user_id":"a","user_id":"b","user_id":"c"}')),
        ["line 2", "params.metadata.user_id", "given 3 times"],
    ),
    # nesting
    "nesting_5000_levels": (
        lines(OK, req("deep-1", extra="[" * 5000 + "]" * 5000)),
        ["line 2", "custom_id 'deep-1'", "more than 100 levels"],
    ),
    "nesting_150_levels": (
        lines(OK, req("deep-2", extra="[" * 150 + "]" * 150)),
        ["line 2", "custom_id 'deep-2'", "params.extra[0][0]", "more than 100 levels"],
    ),
    "nesting_objects_3000": (
        lines(OK, req("deep-3", extra='{"a":' * 3000 + "1" + "}" * 3000)),
        ["line 2", "custom_id 'deep-3'", "more than 100 levels"],
    ),
    # invalid UTF-8
    "utf8_invalid_byte_ff": (
        lines(OK, req("u-1", messages=msgs(content='"cafXX"')).replace(b"XX", b"\xff")),
        ["line 2", "custom_id 'u-1'", "invalid UTF-8", "byte"],
    ),
    "utf8_encoded_surrogate": (
        lines(OK, req("u-2", messages=msgs(content='"xSURR"')).replace(b"SURR", b"\xed\xa0\x80")),
        ["line 2", "custom_id 'u-2'", "invalid UTF-8", "surrogate"],
    ),
    "utf8_encoded_surrogate_pair_cesu8": (
        lines(
            OK,
            req("u-3", messages=msgs(content='"xSURR"')).replace(
                b"SURR", b"\xed\xa0\xbd\xed\xb8\x80"
            ),
        ),
        ["line 2", "custom_id 'u-3'", "invalid UTF-8", "surrogate"],
    ),
    "utf8_overlong": (
        lines(OK, req("u-4", messages=msgs(content='"xBAD"')).replace(b"BAD", b"\xc0\xaf")),
        ["line 2", "custom_id 'u-4'", "invalid UTF-8"],
    ),
    "utf8_truncated_sequence": (
        lines(OK, req("u-5", messages=msgs(content='"xBAD"')).replace(b"BAD", b"\xe2\x82")),
        ["line 2", "custom_id 'u-5'", "invalid UTF-8"],
    ),
    "utf8_beyond_unicode": (
        lines(OK, req("u-6", messages=msgs(content='"xBAD"')).replace(b"BAD", b"\xf4\x90\x80\x80")),
        ["line 2", "custom_id 'u-6'", "invalid UTF-8"],
    ),
    "utf8_invalid_in_key": (
        lines(OK, req("u-7", KEYBAD="1").replace(b"KEYBAD", b"k\xfe")),
        ["line 2", "custom_id 'u-7'", "invalid UTF-8"],
    ),
    "latin1_file": (
        lines(
            req("l-1"),
            req("l-2", messages=msgs(content='"café"')).replace(b"caf\xc3\xa9", b"caf\xe9"),
        ),
        ["line 2", "custom_id 'l-2'", "invalid UTF-8", "Latin-1"],
    ),
    "windows1252_smart_quotes": (
        lines(
            OK,
            req("w-1", messages=msgs(content='"QsaidQ"'))
            .replace(b"Q", b"\x93", 1)
            .replace(b"Q", b"\x94", 1),
        ),
        ["line 2", "custom_id 'w-1'", "invalid UTF-8"],
    ),
    # lone surrogates written as escapes
    "lone_high_surrogate_escape": (
        lines(OK, req("s-1", messages=msgs(content='"a\\ud800b"'))),
        ["line 2", "custom_id 's-1'", "params.messages[0].content", "lone surrogate"],
    ),
    "lone_low_surrogate_escape": (
        lines(OK, req("s-2", messages=msgs(content='"\\udc00"'))),
        ["line 2", "custom_id 's-2'", "params.messages[0].content", "lone surrogate"],
    ),
    "lone_surrogate_at_end_of_string": (
        lines(OK, req("s-3", system='"be brief\\ud83d"')),
        ["line 2", "custom_id 's-3'", "params.system", "lone surrogate"],
    ),
    "surrogate_pair_reversed": (
        lines(OK, req("s-4", messages=msgs(content='"\\ude00\\ud83d"'))),
        ["line 2", "custom_id 's-4'", "lone surrogate"],
    ),
    "lone_surrogate_in_key": (
        lines(OK, req("s-5", metadata='{"\\ud800":"x"}')),
        ["line 2", "custom_id 's-5'", "params.metadata", "lone surrogate"],
    ),
    # byte-order marks
    "bom_at_start_of_line_2": (
        lines(OK, BOM + req("b-1")),
        ["line 2", "custom_id 'b-1'", "byte-order mark"],
    ),
    "bom_between_tokens": (
        lines(OK, req("b-2").replace(b'"params":', b'"params":' + BOM)),
        ["line 2", "custom_id 'b-2'", "byte-order mark"],
    ),
    "bom_inside_string": (
        lines(OK, req("b-3", messages=msgs(content='"hiBOM"')).replace(b"BOM", BOM)),
        ["line 2", "custom_id 'b-3'", "byte-order mark"],
    ),
    "bom_twice_at_file_start": (
        BOM + lines(BOM + req("b-4")),
        ["line 1", "custom_id 'b-4'", "byte-order mark"],
    ),
    "bom_after_blank_first_line": (
        b"\n" + BOM + lines(req("b-5")),
        ["line 2", "custom_id 'b-5'", "byte-order mark"],
    ),
    # roles
    "role_system": (
        lines(OK, req("role-1", messages=msgs(role='"system"'))),
        ["line 2", "custom_id 'role-1'", "params.messages[0].role", "params.system"],
    ),
    "role_tool": (
        lines(OK, req("role-2", messages=msgs(role='"tool"'))),
        ["line 2", "custom_id 'role-2'", "params.messages[0].role", "'user' or 'assistant'"],
    ),
    "role_capitalised": (
        lines(OK, req("role-3", messages=msgs(role='"User"'))),
        ["line 2", "custom_id 'role-3'", "params.messages[0].role"],
    ),
    "role_missing": (
        lines(OK, req("role-4", messages='[{"content":"x"}]')),
        ["line 2", "custom_id 'role-4'", "params.messages[0].role", "is required"],
    ),
    "role_second_message_developer": (
        lines(
            OK,
            req(
                "role-5",
                messages='[{"role":"user","content":"a"},{"role":"developer","content":"b"}]',
            ),
        ),
        ["line 2", "custom_id 'role-5'", "params.messages[1].role"],
    ),
    "role_number": (
        lines(OK, req("role-6", messages=msgs(role="1"))),
        ["line 2", "custom_id 'role-6'", "params.messages[0].role"],
    ),
    # numbers
    "max_tokens_5000_digits": (
        lines(OK, req("n-1", max_tokens="9" * 5000)),
        ["line 2", "custom_id 'n-1'", "params.max_tokens", "out of range"],
    ),
    "max_tokens_20_digits": (
        lines(OK, req("n-2", max_tokens="99999999999999999999")),
        ["line 2", "custom_id 'n-2'", "params.max_tokens", "out of range", "at most"],
    ),
    "max_tokens_negative_5000_digits": (
        lines(OK, req("n-3", max_tokens="-" + "9" * 5000)),
        ["line 2", "custom_id 'n-3'", "params.max_tokens", "out of range"],
    ),
    "max_tokens_float_5_0": (
        lines(OK, req("n-4", max_tokens="5.0")),
        ["line 2", "custom_id 'n-4'", "params.max_tokens", "must be an integer"],
    ),
    "max_tokens_exponent_1e3": (
        lines(OK, req("n-5", max_tokens="1e3")),
        ["line 2", "custom_id 'n-5'", "params.max_tokens", "must be an integer"],
    ),
    "max_tokens_negative_zero": (
        lines(OK, req("n-6", max_tokens="-0")),
        ["line 2", "custom_id 'n-6'", "params.max_tokens", ">= 1"],
    ),
    "max_tokens_1e400": (
        lines(OK, req("n-7", max_tokens="1e400")),
        ["line 2", "custom_id 'n-7'", "params.max_tokens", "out of range"],
    ),
    "max_tokens_string": (
        lines(OK, req("n-8", max_tokens='"16"')),
        ["line 2", "custom_id 'n-8'", "params.max_tokens", "must be an integer"],
    ),
    "max_tokens_missing": (
        lines(OK, req("n-9", params='"model":"m","messages":[{"role":"user","content":"x"}]')),
        ["line 2", "custom_id 'n-9'", "params.max_tokens", "is required"],
    ),
    "temperature_1e400": (
        lines(OK, req("n-10", temperature="1e400")),
        ["line 2", "custom_id 'n-10'", "params.temperature", "out of range"],
    ),
    "huge_integer_in_metadata": (
        lines(OK, req("n-11", metadata='{"n":' + "1" * 4301 + "}")),
        ["line 2", "custom_id 'n-11'", "params.metadata.n", "out of range"],
    ),
    "nan": (
        lines(OK, req("n-12", temperature="NaN")),
        ["line 2", "custom_id 'n-12'", "params.temperature", "NaN"],
    ),
    "infinity": (
        lines(OK, req("n-13", top_p="Infinity")),
        ["line 2", "custom_id 'n-13'", "params.top_p", "Infinity"],
    ),
    "negative_infinity": (
        lines(OK, req("n-14", top_k="-Infinity")),
        ["line 2", "custom_id 'n-14'", "params.top_k", "Infinity"],
    ),
    "leading_zero_number": (
        lines(OK, req("n-15", max_tokens="016")),
        ["line 2", "custom_id 'n-15'", "not valid JSON"],
    ),
    "plus_sign_number": (
        lines(OK, req("n-16", max_tokens="+16")),
        ["line 2", "custom_id 'n-16'", "not valid JSON"],
    ),
    "hex_number": (
        lines(OK, req("n-17", max_tokens="0x10")),
        ["line 2", "custom_id 'n-17'", "not valid JSON"],
    ),
    # custom_id
    "custom_id_100000_chars": (
        lines(OK, req("a" * 100_000)),
        ["line 2", "custom_id 'aaaa", "…", "must match"],
    ),
    "custom_id_integer": (
        lines(OK, req("x").replace(b'"custom_id":"x"', b'"custom_id":123')),
        ["line 2", "custom_id", "must be a string", "123"],
    ),
    "custom_id_null": (
        lines(OK, req("x").replace(b'"custom_id":"x"', b'"custom_id":null')),
        ["line 2", "custom_id", "is required"],
    ),
    "custom_id_list": (
        lines(OK, req("x").replace(b'"custom_id":"x"', b'"custom_id":["a"]')),
        ["line 2", "custom_id", "must be a string", "a list"],
    ),
    "custom_id_empty": (
        lines(OK, req("")),
        ["line 2", "custom_id", "must match"],
    ),
    "custom_id_65_chars": (
        lines(OK, req("b" * 65)),
        ["line 2", "custom_id", "must match"],
    ),
    "custom_id_non_ascii": (
        lines(OK, req("café")),
        ["line 2", "custom_id 'café'", "must match"],
    ),
    "custom_id_with_space": (
        lines(OK, req("a b")),
        ["line 2", "custom_id 'a b'", "must match"],
    ),
    "custom_id_used_twice": (
        lines(OK, req("twice"), req("other"), req("twice")),
        ["line 4", "custom_id 'twice'", "is used by an earlier request"],
    ),
    "custom_id_missing": (
        lines(
            OK,
            b'{"params":{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}]}}',
        ),
        ["line 2", "custom_id: is required"],
    ),
    # bounded messages
    "many_bad_lines": (
        lines(OK, *(req(f"bad-{i}", max_tokens="0") for i in range(500))),
        ["line 2", "custom_id 'bad-0'", "params.max_tokens", "and 4", "more"],
    ),
    "long_invalid_value": (
        lines(OK, req("long-v", max_tokens='"' + "7" * 100_000 + '"')),
        ["line 2", "custom_id 'long-v'", "params.max_tokens", "…"],
    ),
    "long_unknown_key": (
        lines(OK, req("x")[:-1] + b',"' + b"k" * 100_000 + b'":1}'),
        ["line 2", "custom_id 'x'", "unknown field", "…"],
    ),
    # line structure
    "crlf_then_bad_line_3": (
        lines(OK, req("c-1"), req("c-2", max_tokens="0"), end=b"\r\n"),
        ["line 3", "custom_id 'c-2'", "params.max_tokens"],
    ),
    "blank_lines_counted": (
        b"\n\n" + OK + b"\n   \n\t\n" + req("bl-1", max_tokens="0") + b"\n",
        ["line 6", "custom_id 'bl-1'", "params.max_tokens"],
    ),
    "nul_byte_in_string": (
        lines(OK, req("z-1", messages=msgs(content='"aNULb"')).replace(b"NUL", b"\x00")),
        ["line 2", "custom_id 'z-1'", "NUL"],
    ),
    "nul_bytes_line": (
        lines(OK, b"\x00" * 40, req("z-2")),
        ["line 2", "NUL"],
    ),
    "control_character_in_string": (
        lines(OK, req("z-3", messages=msgs(content='"a\x01b"'))),
        ["line 2", "custom_id 'z-3'", "not valid JSON"],
    ),
    "raw_tab_in_string": (
        lines(OK, req("z-4", messages=msgs(content='"a\tb"'))),
        ["line 2", "custom_id 'z-4'", "not valid JSON"],
    ),
    "form_feed_line": (
        lines(OK, b"\x0c", req("z-5")),
        ["line 2", "not valid JSON"],
    ),
    "nbsp_between_tokens": (
        lines(OK, req("z-6").replace(b'"params":', b'"params":\xc2\xa0')),
        ["line 2", "custom_id 'z-6'", "not valid JSON"],
    ),
    "json_array_one_line": (
        lines(b"[" + req("arr-1") + b"," + req("arr-2") + b"]"),
        ["line 1", "expected an object, got a list", "JSONL"],
    ),
    "json_array_pretty": (
        b"[\n  " + req("arr-1") + b",\n  " + req("arr-2") + b"\n]\n",
        ["line 1", "JSON array", "JSONL"],
    ),
    "pretty_printed_object": (
        json.dumps(json.loads(req("pp-1")), indent=2).encode() + b"\n",
        ["line 1", "several lines", "JSONL"],
    ),
    "trailing_garbage": (
        lines(OK, req("tg-1") + b" garbage"),
        ["line 2", "custom_id 'tg-1'", "data after the request object"],
    ),
    "two_objects_on_one_line": (
        lines(OK, req("two-1") + req("two-2")),
        ["line 2", "custom_id 'two-1'", "two requests on one line"],
    ),
    "old_mac_cr_line_endings": (
        lines(OK, req("cr-1"), req("cr-2"), end=b"\r"),
        ["line 1", "custom_id 'ok-0'", "end with \\r alone"],
    ),
    "trailing_comma": (
        lines(OK, req("tc-1")[:-1] + b",}"),
        ["line 2", "custom_id 'tc-1'", "not valid JSON"],
    ),
    "single_quotes_python_repr": (
        lines(OK, repr(json.loads(req("py-1"))).encode()),
        ["line 2", "Python repr"],
    ),
    "unterminated_last_line": (
        OK + b"\n" + req("ut-1")[:-9],
        ["line 2", "custom_id 'ut-1'", "not valid JSON"],
    ),
    "comment_line": (
        lines(OK, b"// generated by a script", req("cm-1")),
        ["line 2", "not valid JSON"],
    ),
    "invalid_escape": (
        lines(OK, req("esc-1", messages=msgs(content='"a\\qb"'))),
        ["line 2", "custom_id 'esc-1'", "not valid JSON"],
    ),
    "top_level_string": (lines(OK, b'"hello"'), ["line 2", "expected an object, got a string"]),
    "top_level_number": (lines(OK, b"42"), ["line 2", "expected an object, got a number"]),
    "top_level_null": (lines(OK, b"null"), ["line 2", "expected an object, got null"]),
    # request shape
    "params_missing": (
        lines(OK, b'{"custom_id":"p-1"}'),
        ["line 2", "custom_id 'p-1'", "params: is required"],
    ),
    "params_list": (
        lines(OK, b'{"custom_id":"p-2","params":[]}'),
        ["line 2", "custom_id 'p-2'", "params: must be an object"],
    ),
    "unknown_top_level_field": (
        lines(OK, req("p-3")[:-1] + b',"metadata":{}}'),
        ["line 2", "custom_id 'p-3'", "metadata: unknown field"],
    ),
    "stream_true": (
        lines(OK, req("p-4", stream="true")),
        ["line 2", "custom_id 'p-4'", "params.stream"],
    ),
    "sdk_key_extra_headers": (
        lines(OK, req("p-5", extra_headers='{"x":"y"}')),
        ["line 2", "custom_id 'p-5'", "params.extra_headers", "SDK option"],
    ),
    "messages_empty": (
        lines(OK, req("p-6", messages="[]")),
        ["line 2", "custom_id 'p-6'", "params.messages", "non-empty"],
    ),
    "messages_object": (
        lines(OK, req("p-7", messages="{}")),
        ["line 2", "custom_id 'p-7'", "params.messages", "non-empty list"],
    ),
    "message_content_missing": (
        lines(OK, req("p-8", messages='[{"role":"user"}]')),
        ["line 2", "custom_id 'p-8'", "params.messages[0].content", "is required"],
    ),
    "message_content_number": (
        lines(OK, req("p-9", messages=msgs(content="7"))),
        ["line 2", "custom_id 'p-9'", "params.messages[0].content"],
    ),
    "model_empty": (
        lines(OK, req("p-10", model='""')),
        ["line 2", "custom_id 'p-10'", "params.model"],
    ),
    # whole files
    "empty_file": (b"", ["no requests"]),
    "only_blank_lines": (b"\n \n\t\r\n\n", ["no requests"]),
    "only_a_bom": (BOM, ["no requests"]),
    "utf16_le_with_bom": ((OK.decode() + "\n").encode("utf-16"), ["line 1", "UTF-16"]),
    "utf16_be_with_bom": (
        b"\xfe\xff" + (OK.decode() + "\n").encode("utf-16-be"),
        ["line 1", "UTF-16"],
    ),
    "utf16_le_without_bom": ((OK.decode() + "\n").encode("utf-16-le"), ["line 1", "UTF-16"]),
    "utf32_with_bom": ((OK.decode() + "\n").encode("utf-32"), ["line 1", "UTF-32"]),
    "zip_archive": (b"PK\x03\x04\x14\x00\x00\x00" + b"\x00" * 30, ["line 1", "zip archive"]),
    "bzip2_data": (b"BZh91AY&SY" + b"\x00" * 30, ["line 1", "bzip2"]),
    "xz_data": (b"\xfd7zXZ\x00" + b"\x00" * 30, ["line 1", "xz"]),
    "zstd_data": (b"\x28\xb5\x2f\xfd" + b"\x00" * 30, ["line 1", "zstd"]),
    "gzip_truncated": (
        gzip.compress(lines(*(req(f"g-{i}") for i in range(2000))), mtime=0)[:-40],
        ["compressed data is broken"],
    ),
    "gzip_without_gz_name_with_bad_line": (
        gzip.compress(lines(OK, req("gz-1", messages=msgs(role='"system"'))), mtime=0),
        ["line 2", "custom_id 'gz-1'", "params.messages[0].role"],
    ),
}

VALID: dict[str, tuple[bytes, int]] = {
    "crlf_line_endings": (lines(req("a"), req("b"), req("c"), end=b"\r\n"), 3),
    "leading_bom": (BOM + lines(req("a"), req("b")), 2),
    "leading_bom_crlf": (BOM + lines(req("a"), end=b"\r\n"), 1),
    "blank_and_whitespace_lines": (b"\n" + req("a") + b"\n \t \n\r\n" + req("b") + b"\n\n\n", 2),
    "no_newline_at_end": (req("a") + b"\n" + req("b"), 2),
    "spaces_around_lines": (b"  " + req("a") + b"  \n\t" + req("b") + b"\t\n", 2),
    "gzip_without_gz_name": (gzip.compress(lines(req("a"), req("b")), mtime=0), 2),
    "json_dumps_default_spacing": (
        lines(*(json.dumps(json.loads(req(f"d{i}"))).encode() for i in range(3))),
        3,
    ),
    "ascii_escaped_non_ascii": (
        lines(json.dumps(json.loads(req("e", messages=msgs(content='"café 😀 日本"')))).encode()),
        1,
    ),
    "raw_utf8_text": (lines(req("u", messages=msgs(content='"café 😀 日本 \u2028"'))), 1),
    "escaped_colon_without_duplicates": (
        lines(req("c", model='"a\\u003ab"', system='"x:\\u003A"')),
        1,
    ),
    "colons_in_keys_and_values": (lines(req("k", metadata='{"a:b":"c:d:e"}', system='"::"')), 1),
    "escaped_nul_and_controls": (lines(req("n", messages=msgs(content='"a\\u0000b\\tc\\n"'))), 1),
    "escaped_bom_in_text": (lines(req("b", messages=msgs(content='"\\ufeffhi"'))), 1),
    "large_integer_in_unknown_param": (lines(req("i", metadata='{"n":' + "9" * 100 + "}")), 1),
    "negative_zero_and_exponents": (
        lines(req("z", temperature="-0.0", top_p="1e-400", top_k="1E2")),
        1,
    ),
    "nesting_90_levels": (lines(req("deep", extra="[" * 90 + "]" * 90)), 1),
    "multi_turn_with_blocks": (
        lines(
            req(
                "m",
                messages='[{"role":"user","content":[{"type":"text","text":"a"}]},'
                '{"role":"assistant","content":"b"},{"role":"user","content":"c"}]',
                system='[{"type":"text","text":"s","cache_control":{"type":"ephemeral"}}]',
            )
        ),
        1,
    ),
    "keys_in_any_order": (
        lines(
            b'{"params":{"messages":[{"content":"x","role":"user"}],"max_tokens":3,"model":"m"},"custom_id":"o"}'
        ),
        1,
    ),
}


def build(root: Path) -> dict[str, bytes]:
    """Write the corpus under ``root``; return every written file's bytes by relative path."""
    written: dict[str, bytes] = {}
    toml = [
        "# Written by build.py: what pre-flight must say about each file (see build.py).",
        "",
    ]
    for name, (data, names) in MALFORMED.items():
        written[f"malformed/{name}.jsonl"] = data
        toml += [
            f'[malformed."{name}.jsonl"]',
            f"names = {json.dumps(names, ensure_ascii=False)}",
            "",
        ]
    for name, (data, count) in VALID.items():
        written[f"valid/{name}.jsonl"] = data
        toml += [f'[valid."{name}.jsonl"]', f"requests = {count}", ""]
    written["expected.toml"] = "\n".join(toml).encode()
    for folder in ("malformed", "valid"):
        shutil.rmtree(root / folder, ignore_errors=True)
        (root / folder).mkdir(parents=True)
    for rel, data in written.items():
        (root / rel).write_bytes(data)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    files = build(target)
    print(f"wrote {len(files)} files under {target}")
