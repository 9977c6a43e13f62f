"""An order-independent digest of a set of custom_ids, to tell a batch's results are ours.

The API keeps no metadata on a batch: the only proof that a batch holds a job's requests is
its custom_ids. Pre-flight makes them unique within a job and the fetch makes the results'
unique within a batch, so the count and the sum (mod 2**128) of a 128-bit hash of each id
identify the set, in constant memory, whatever order the results come in.
"""

from __future__ import annotations

from collections.abc import Iterable
from hashlib import blake2b

_MASK = (1 << 128) - 1


class IdsDigest:
    __slots__ = ("count", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0

    def add(self, custom_id: str) -> None:
        value = int.from_bytes(blake2b(custom_id.encode(), digest_size=16).digest(), "big")
        self.total = (self.total + value) & _MASK
        self.count += 1

    def hexdigest(self) -> str:
        return f"{self.count}:{self.total:032x}"


def ids_digest(custom_ids: Iterable[str]) -> str:
    digest = IdsDigest()
    for custom_id in custom_ids:
        digest.add(custom_id)
    return digest.hexdigest()
