"""An order-independent digest of a set of custom_ids, to tell a batch's results are ours.

The API keeps no metadata on a batch: the only proof that a batch holds a job's requests is
its custom_ids. Pre-flight makes them unique within a job and the fetch makes the results'
unique within a batch, so the count and the sum (mod 2**128) of a 128-bit hash of each id
identify the set, in constant memory, whatever order the results come in.

:class:`SeenLines` keeps, for one batch being read, which custom_ids came and with which line,
in two flat arrays keyed by 64 bits of the same hash: 16 bytes a slot where a dict of the ids'
strings took about 130 bytes an entry (13 MiB for a batch of 100,000).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from hashlib import blake2b

_MASK = (1 << 128) - 1
_MASK64 = (1 << 64) - 1


_BLAKE2B_128 = blake2b(digest_size=16)
"""Copied for each id: a copy costs less than making a hash object with its options."""


def id_digest(custom_id: str) -> bytes:
    """The 128-bit BLAKE2b of a custom_id: pre-flight's set of a job's ids keeps it, and as an
    integer (:func:`id_hash`) it is what :class:`IdsDigest` sums."""
    digest = _BLAKE2B_128.copy()
    digest.update(custom_id.encode())
    return digest.digest()


def id_hash(custom_id: str) -> int:
    """The 128-bit hash of a custom_id that :class:`IdsDigest` sums."""
    return int.from_bytes(id_digest(custom_id))


class IdsDigest:
    __slots__ = ("count", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0

    def add(self, custom_id: str) -> None:
        self.add_hash(id_hash(custom_id))

    def add_hash(self, value: int) -> None:
        """Add an id by its :func:`id_hash`."""
        self.total = (self.total + value) & _MASK
        self.count += 1

    def hexdigest(self) -> str:
        return f"{self.count}:{self.total:032x}"


def ids_digest(custom_ids: Iterable[str]) -> str:
    digest = IdsDigest()
    for custom_id in custom_ids:
        digest.add(custom_id)
    return digest.hexdigest()


class SeenLines:
    """custom_id (by its :func:`id_hash`) to the key of its line, for one batch's results.

    Open addressing with linear probing over two ``array("Q")``: the low 64 bits of the hash
    (0 marks a free slot) and the line's key (``_download.line_key``, never 0). Sized for
    ``expected`` ids at half load and doubled if more come. Two ids whose
    hashes share 64 bits (about 3e-10 for 100,000 ids) would read as one: the batch then fails
    with two different lines for one custom_id; nothing is published wrong.
    """

    __slots__ = ("_ids", "_keys", "_mask", "count")

    def __init__(self, expected: int = 0) -> None:
        self.count = 0
        expected = min(max(expected, 1), 100_000)  # the API's most per batch; more grow it
        self._allocate(1 << max(4, (2 * expected).bit_length()))

    def _allocate(self, size: int) -> None:
        self._ids = array("Q", [0]) * size
        self._keys = array("Q", [0]) * size
        self._mask = size - 1

    def put(self, value: int, key: int) -> int:
        """Note the line ``key`` of the id hashed ``value``; returns 0 for an id first seen,
        else the key its first line had (and keeps that one)."""
        slot = value & _MASK64 or 1
        ids, mask = self._ids, self._mask
        i = slot & mask
        while True:
            found = ids[i]
            if not found:
                break
            if found == slot:
                return self._keys[i]
            i = (i + 1) & mask
        ids[i] = slot
        self._keys[i] = key
        self.count += 1
        if 2 * self.count > mask:
            self._grow()
        return 0

    def _grow(self) -> None:
        old = [(s, k) for s, k in zip(self._ids, self._keys, strict=True) if s]
        self._allocate(2 * (self._mask + 1))
        ids, keys, mask = self._ids, self._keys, self._mask
        for slot, key in old:
            i = slot & mask
            while ids[i]:
                i = (i + 1) & mask
            ids[i], keys[i] = slot, key

    def __len__(self) -> int:
        return self.count
