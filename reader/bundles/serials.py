"""The denylist's card serials, held compactly (issue 13: a million on a Pi with 1 GB)."""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left
from collections.abc import Sequence

from reader.system.i18n import _

_BUCKET_BITS = 16  # at most 2^16 buckets: 256 KiB of index


class SerialSet:
    """Denied card serials (8 bytes each) as one sorted array of 64-bit integers.

    8 bytes a serial where a frozenset of bytes objects costs about 75 (issue 13: 71 MB
    for a million, 324 MB for five million, on a Pi with 1 GB). The serials are sorted as
    bytes, packed and read as big-endian integers, which sort as the bytes did: no Python
    object per serial is kept. Sorting is the one O(n log n) step; a list the city sends
    already sorted costs a single pass.

    A lookup is one step into a bucket index, then a bisect over the few keys of that
    bucket (issue 22: a bisect over the whole array took 2-3.4 us, each of its 20 steps
    making a Python int of an array item). The index holds, per bucket (up to 2^16 of
    them, about four keys each), where the bucket starts: buckets are the bits just below
    the prefix every key shares (card serials often share a vendor's first byte), so they
    spread whatever that prefix is; 256 KiB for a million serials."""

    __slots__ = ("_base", "_keys", "_shift", "_starts")

    def __init__(self, keys: array[int] | None = None) -> None:
        self._keys: array[int] = keys if keys is not None else array("Q")
        keys = self._keys
        if not keys:
            self._shift, self._base, self._starts = 0, 0, array("I", [0, 0])
            return
        bits = min(_BUCKET_BITS, max(1, len(keys).bit_length() - 2))
        self._shift = max(0, (keys[0] ^ keys[-1]).bit_length() - bits)
        self._base = keys[0] >> self._shift
        buckets = (keys[-1] >> self._shift) - self._base + 1
        # Where each bucket starts: one bisect per bucket, not a pass over every key.
        self._starts = array("I", (bisect_left(keys, (self._base + b) << self._shift)
                                   for b in range(buckets)))
        self._starts.append(len(keys))

    @classmethod
    def of(cls, serials: Sequence[bytes]) -> SerialSet:
        try:
            packed = b"".join(sorted(serials))
        except TypeError:
            raise ValueError(_("every serial must be a byte string")) from None
        if len(packed) != 8 * len(serials):
            raise ValueError(_("every serial must be 8 bytes"))
        keys: array[int] = array("Q")
        keys.frombytes(packed)
        if sys.byteorder == "little":
            keys.byteswap()
        return cls(array("Q", keys))  # a copy at the exact size: frombytes over-allocates

    def __contains__(self, sn: object) -> bool:
        if not isinstance(sn, bytes) or len(sn) != 8:
            return False
        key = int.from_bytes(sn, "big")
        bucket = (key >> self._shift) - self._base
        starts = self._starts
        if not 0 <= bucket < len(starts) - 1:
            return False
        end = starts[bucket + 1]
        i = bisect_left(self._keys, key, starts[bucket], end)
        return i < end and self._keys[i] == key

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def nbytes(self) -> int:
        """What the serials hold in memory (the arrays' buffers)."""
        return (self._keys.itemsize * len(self._keys)
                + self._starts.itemsize * len(self._starts))
