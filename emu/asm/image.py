"""Image: what the assembler produces and the loader, debugger and console read."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Image:
    """An assembled program.

    segments   (address, bytes) pairs sorted by address, never overlapping;
               one per ``org`` that was followed by output
    entry      the value of ``_start`` if defined, else the lowest segment's
               address (0 for an empty program)
    symbols    every label and equ constant -> value
    labels     the labels alone -> address
    lines      instruction address -> (file, line) of its source
    """

    segments: tuple[tuple[int, bytes], ...]
    entry: int
    symbols: dict[str, int]
    labels: dict[str, int]
    lines: dict[int, tuple[str, int]]
    source_name: str = "<input>"
    # Labels sorted by address; at one address non-local labels come first,
    # then by name: "main" is preferred to "main.loop".
    _addrs: tuple[int, ...] = field(init=False, repr=False, compare=False, default=())
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        order = sorted(self.labels.items(),
                       key=lambda kv: (kv[1], "." in kv[0], kv[0]))
        object.__setattr__(self, "_addrs", tuple(a for _, a in order))
        object.__setattr__(self, "_names", tuple(n for n, _ in order))

    @property
    def size(self) -> int:
        """Total number of bytes in all segments."""
        return sum(len(data) for _, data in self.segments)

    def symbol_at(self, addr: int) -> str | None:
        """The label exactly at ``addr`` (a non-local one if there is one)."""
        names = self.labels_at(addr)
        return names[0] if names else None

    def nearest_label(self, addr: int) -> tuple[str, int] | None:
        """(label, addr - label's address) for the closest label at or below
        ``addr``; None if no label is."""
        i = bisect.bisect_right(self._addrs, addr)
        if i == 0:
            return None
        at = self._addrs[i - 1]
        return self.labels_at(at)[0], addr - at

    def labels_at(self, addr: int) -> list[str]:
        """Every label at ``addr``, non-local ones first."""
        lo = bisect.bisect_left(self._addrs, addr)
        hi = bisect.bisect_right(self._addrs, addr)
        return list(self._names[lo:hi])

    def byte_at(self, addr: int) -> int | None:
        """The byte the image puts at ``addr``, or None if it puts none."""
        for start, data in self.segments:
            if start <= addr < start + len(data):
                return data[addr - start]
        return None
