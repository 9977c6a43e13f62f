"""A request's prompt as the API caches and counts it: blocks in order, bytes to tokens.

The emulator bills usage with these functions and the cost estimate predicts it with them, so
the two agree on what a prompt is: tools, then system, then messages (the API's cache order),
each content block one block of it, a cache breakpoint where a block carries ``cache_control``
(or on the last block, with top-level automatic caching). Tokens are bytes divided by the
tokenizer family's bytes per token, from the model-rules table.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec

__all__ = [
    "CACHE_TTL_SECONDS",
    "Breakpoint",
    "CacheLedger",
    "CacheUsage",
    "PromptBlock",
    "block_tokens",
    "prompt_blocks",
    "prompt_breakpoints",
    "ttl_of",
]

_encoder: Final = msgspec.json.Encoder(order="sorted")

CACHE_TTL_SECONDS: Final = {"5m": 300.0, "1h": 3600.0}

PromptBlock = tuple[bytes, Any]
"""``(bytes, cache_control or None)``."""


def block_tokens(size: int, bytes_per_token: float) -> int:
    """Tokens of one block of ``size`` bytes: at least 1."""
    return max(1, math.ceil(size / bytes_per_token))


def ttl_of(marker: Any) -> float:
    """Seconds a ``cache_control`` marker keeps its prefix (5 minutes unless ``"1h"``)."""
    if isinstance(marker, Mapping):
        return CACHE_TTL_SECONDS.get(str(marker.get("ttl", "5m")), 300.0)
    return 300.0


def prompt_blocks(params: Mapping[str, Any]) -> list[PromptBlock]:
    """The prompt in cache order (tools, system, messages): (bytes, cache_control or None)."""
    out: list[PromptBlock] = []

    def add(block: Any, prefix: bytes = b"") -> None:
        if isinstance(block, str):
            out.append((prefix + block.encode(), None))
        elif isinstance(block, Mapping):
            marker = block.get("cache_control")
            clean = {k: v for k, v in block.items() if k != "cache_control"}
            out.append((prefix + _encoder.encode(clean), marker))
        else:
            out.append((prefix + _encoder.encode(block), None))

    for tool in params.get("tools") or ():
        add(tool)
    system = params.get("system")
    if isinstance(system, list):
        for block in system:
            add(block)
    elif system:
        add(system)
    for message in params.get("messages") or ():
        is_map = isinstance(message, Mapping)
        role = str(message.get("role", "")).encode() + b":" if is_map else b""
        content = message.get("content") if is_map else message
        if isinstance(content, list):
            for block in content:
                add(block, role)
        else:
            add(content, role)
    top = params.get("cache_control")
    if top and out and out[-1][1] is None:
        # Automatic caching: the breakpoint goes on the last block of the prompt.
        out[-1] = (out[-1][0], top)
    return out


@dataclass(frozen=True, slots=True)
class Breakpoint:
    prefix_tokens: int
    key: str
    """Digest of the model and of every byte of the prompt up to this breakpoint."""
    ttl: float


def prompt_breakpoints(
    params: Mapping[str, Any], model: str, bytes_per_token: float
) -> tuple[list[Breakpoint], int]:
    """The cache breakpoints of a prompt and its total tokens.

    A prefix is keyed by the model and its exact bytes, as the API caches per model.
    """
    blocks = prompt_blocks(params)
    if not any(marker for _, marker in blocks):
        # No breakpoint: nothing to key, only tokens to count.
        return [], sum(block_tokens(len(data), bytes_per_token) for data, _ in blocks)
    running = hashlib.blake2b(model.encode(), digest_size=16)
    total = 0
    breakpoints: list[Breakpoint] = []
    for data, marker in blocks:
        running.update(len(data).to_bytes(8, "little"))
        running.update(data)
        total += block_tokens(len(data), bytes_per_token)
        if marker:
            breakpoints.append(Breakpoint(total, running.copy().hexdigest(), ttl_of(marker)))
    return breakpoints, total


@dataclass(frozen=True, slots=True)
class CacheUsage:
    input_tokens: int
    write_5m: int
    write_1h: int
    read: int


class CacheLedger:
    """Prompt-cache entries per workspace, expiring in (emulated) time.

    A lookup reads the longest cached prefix ending at a breakpoint (and refreshes its
    lifetime, as a hit does on the real API), then writes every later breakpoint whose prefix
    is long enough to be cached.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], float] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def account(
        self,
        workspace: str,
        breakpoints: list[Breakpoint],
        total_tokens: int,
        now: float,
        min_tokens: int,
    ) -> CacheUsage:
        with self._lock:
            if len(self._entries) > 200_000:
                self._entries = {k: v for k, v in self._entries.items() if v > now}
            read_upto = 0
            first_write = 0
            for i in range(len(breakpoints) - 1, -1, -1):
                bp = breakpoints[i]
                expiry = self._entries.get((workspace, bp.key))
                if expiry is not None and expiry > now:
                    read_upto = bp.prefix_tokens
                    self._entries[(workspace, bp.key)] = max(expiry, now + bp.ttl)
                    first_write = i + 1
                    break
            write_5m = write_1h = 0
            previous = read_upto
            for bp in breakpoints[first_write:]:
                if bp.prefix_tokens < max(min_tokens, 1) or bp.prefix_tokens <= previous:
                    continue
                written = bp.prefix_tokens - previous
                if bp.ttl >= CACHE_TTL_SECONDS["1h"]:
                    write_1h += written
                else:
                    write_5m += written
                self._entries[(workspace, bp.key)] = now + bp.ttl
                previous = bp.prefix_tokens
        return CacheUsage(
            input_tokens=max(total_tokens - read_upto - write_5m - write_1h, 0),
            write_5m=write_5m,
            write_1h=write_1h,
            read=read_upto,
        )

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
