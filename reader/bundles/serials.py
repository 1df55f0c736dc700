"""The denylist's card serials, held compactly (issue 13: a million on a Pi with 1 GB)."""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left
from collections.abc import Sequence

from reader.system.i18n import _


class SerialSet:
    """Denied card serials (8 bytes each) as one sorted array of 64-bit integers.

    8 bytes a serial where a frozenset of bytes objects costs about 75 (issue 13: 71 MB
    for a million, 324 MB for five million, on a Pi with 1 GB). A lookup is one bisect
    in C over about 20 steps. The serials are sorted as bytes, packed and read as
    big-endian integers, which sort as the bytes did: no Python object per serial is
    kept. Sorting is the one O(n log n) step; a list the city sends already sorted costs
    a single pass."""

    __slots__ = ("_keys",)

    def __init__(self, keys: array[int] | None = None) -> None:
        self._keys: array[int] = keys if keys is not None else array("Q")

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
        keys = self._keys
        i = bisect_left(keys, key)
        return i < len(keys) and keys[i] == key

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def nbytes(self) -> int:
        """What the serials hold in memory (the array's buffer)."""
        return self._keys.itemsize * len(self._keys)
