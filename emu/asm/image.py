"""Image: what the assembler produces and the loader, debugger and console read."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import NamedTuple

from ..errors import AsmWarning

# The constants of a struc's running offset (asm/structs.py): its fields show
# them, nothing else does.
HIDDEN_OFFSET = "..@struc."


class SourceLine(NamedTuple):
    """The line of source an instruction came from (a macro's line expanded)."""

    file: str
    line: int
    text: str


@dataclass(frozen=True)
class SectionInfo:
    """Where a section went: loaded at ``load``, its labels from ``base``."""

    name: str
    load: int
    base: int
    size: int
    nobits: bool


@dataclass(frozen=True)
class ListingLine:
    """One line of a listing: a source line and what it made.

    ``level`` is 0 for a line of a file, n for a line made by n macro calls
    or %rep blocks; ``kind`` says what the line is: "code", "data",
    "reserve", "label", "equ", "" (a comment, a directive ...) or "note" (a
    line of the listing itself, in ``text``).
    """

    file: str
    line: int
    text: str
    level: int
    kind: str = ""
    addr: int | None = None
    data: bytes = b""
    reserved: int = 0
    value: int | None = None


@dataclass(frozen=True)
class Image:
    """An assembled program.

    segments   (load address, bytes) pairs sorted by address, never
               overlapping: one per section that holds bytes
    entry      the value of ``_start`` if defined, else the lowest segment's
               address (0 for an empty program; ``assemble`` can require
               ``_start``)
    symbols    every label and equ constant -> value
    labels     the labels alone -> address
    lines      instruction address -> its SourceLine
    data       address of the bytes a data line (db, dd, times ... db,
               resb in a section with bytes) made -> (its SourceLine, how
               many bytes)
    sections   every section's place (SectionInfo), in address order
    listing    the source lines with what each made (``assemble(...,
               listing=True)``), else None
    warnings   what the assembly said and went on after (``%warning``)
    """

    segments: tuple[tuple[int, bytes], ...]
    entry: int
    symbols: dict[str, int]
    labels: dict[str, int]
    lines: dict[int, SourceLine]
    source_name: str = "<input>"
    sections: tuple[SectionInfo, ...] = ()
    listing: tuple[ListingLine, ...] | None = None
    data: dict[int, tuple[SourceLine, int]] = field(default_factory=dict)
    warnings: tuple[AsmWarning, ...] = ()       # %warning's, in order
    # Labels sorted by address; at one address non-local labels come first,
    # then by name: "main" is preferred to "main.loop".
    _addrs: tuple[int, ...] = field(init=False, repr=False, compare=False, default=())
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False, default=())
    _lengths: dict = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        order = sorted(self.labels.items(),
                       key=lambda kv: (kv[1], "." in kv[0], kv[0]))
        object.__setattr__(self, "_addrs", tuple(a for _, a in order))
        object.__setattr__(self, "_names", tuple(n for n, _ in order))
        object.__setattr__(self, "_lengths", {a: n for a, (_, n) in self.data.items()})

    @property
    def size(self) -> int:
        """Total number of bytes in all segments."""
        return sum(len(data) for _, data in self.segments)

    @property
    def constants(self) -> dict[str, int]:
        """The equ constants alone -> value (never addresses of code or data;
        not a struc's running offsets, which its fields show)."""
        return {k: v for k, v in self.symbols.items()
                if k not in self.labels and not k.startswith(HIDDEN_OFFSET)}

    def source_at(self, addr: int) -> SourceLine | None:
        """The source line of the instruction at ``addr``, if one starts there."""
        return self.lines.get(addr)

    def data_lengths(self) -> dict[int, int]:
        """Address -> length of the bytes of every data line (``data``)."""
        return self._lengths

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
