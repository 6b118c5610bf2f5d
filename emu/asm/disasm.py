"""Disassembler and listing, both driven by ``isa.decode``/``isa.format_insn``.

A listing shows each segment of an image, a ``name:`` line for every label and
one line per instruction::

    _start:
      0x00001000  02 00 01 00 00 00                 mov eax, 1
      0x00001006  61 f5 ff ff ff                    jmp _start

(address, the instruction's bytes in a column wide enough for the longest
encoding, then the text; a blank line separates segments).  Bytes that do not
decode -- or whose decoding would run past the end of the range or across a
label -- are shown one at a time as ``db 0x..``, so decoding resynchronises
at every label.  Data regions are decoded like code; that is expected.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .. import isa
from .image import Image

# The bytes column fits every page-1 encoding (11 bytes); the longest page-2
# ones (imul r32, m32, imm32 with an index: 13 bytes) push their text right
# rather than widen every listing.
MAX_INSN_BYTES = max(isa.length_of(row, (True, True)) for row in isa.TABLE
                     if row.opcode < 0x100)
BYTES_WIDTH = 3 * MAX_INSN_BYTES - 1
DATA_SHOWN = 8                  # the bytes of a data line its text shows


@dataclass(frozen=True)
class Line:
    """One disassembled instruction (or one undecodable byte)."""

    addr: int
    bytes: bytes
    text: str
    label: str | None = None

    def __str__(self) -> str:
        return format_line(self)


class _PastEnd(Exception):
    """Decoding wanted a byte at or beyond the end of the range."""


def _label_names(symbols: Mapping[str, int] | None) -> dict[int, str]:
    """address -> preferred label: non-local before local, then by name."""
    names: dict[int, str] = {}
    if symbols:
        for name, addr in sorted(symbols.items(), key=lambda kv: ("." in kv[0], kv[0])):
            names.setdefault(addr & 0xFFFFFFFF, name)
    return names


def disassemble(read_byte: Callable[[int], int], start: int, end: int,
                symbols: Mapping[str, int] | None = None,
                data: Mapping[int, int] | None = None, keep: int | None = None) -> list[Line]:
    """Decode the bytes in [start, end).

    ``read_byte(addr)`` returns one byte; it is never called outside the
    range.  ``symbols`` (name -> address, normally ``Image.labels``) names
    branch targets and labels the lines they point at.  ``data`` (address
    -> length, ``Image.data_lengths()``) marks the bytes of data lines:
    each is one line (``db`` and its first bytes), not decoded -- unless it
    holds the address ``keep`` (where the CPU is: data run as code).
    """
    names = _label_names(symbols)
    marks = sorted(a for a in names if start < a < end)

    def fetch(addr: int) -> int:
        if addr >= end:
            raise _PastEnd
        return read_byte(addr)

    out: list[Line] = []
    pc = start
    while pc < end:
        label = names.get(pc)
        n = data.get(pc) if data else None
        if n and pc + n <= end and not (keep is not None and pc <= keep < pc + n):
            raw = bytes(read_byte(a) for a in range(pc, pc + n))
            shown = ", ".join(f"{b:#04x}" for b in raw[:DATA_SHOWN])
            out.append(Line(pc, raw, f"db {shown}" + (", ..." if n > DATA_SHOWN else ""),
                            label))
            pc += n
            continue
        try:
            d = isa.decode(fetch, pc)
            nxt = bisect.bisect_right(marks, pc)
            if nxt < len(marks) and marks[nxt] < pc + d.length:
                raise _PastEnd          # would swallow a label: not code
        except (isa.DecodeError, _PastEnd):
            b = read_byte(pc)
            out.append(Line(pc, bytes([b]), f"db {b:#04x}", label))
            pc += 1
            continue
        raw = bytes(read_byte(a) for a in range(pc, pc + d.length))
        out.append(Line(pc, raw, isa.format_insn(d, pc, names.get), label))
        pc += d.length
    return out


def format_line(line: Line) -> str:
    """``  0x00001000  01 23 45 ...  text`` (no label line)."""
    hexes = " ".join(f"{b:02x}" for b in line.bytes[:MAX_INSN_BYTES])
    if len(line.bytes) > MAX_INSN_BYTES:        # a data line's (``disassemble``)
        hexes = hexes[:BYTES_WIDTH - 3] + "..."
    return f"  {line.addr:#010x}  {hexes:<{BYTES_WIDTH}}  {line.text}"


def format_listing(image: Image) -> str:
    """A listing of every segment of ``image`` (see the module doc)."""
    chunks: list[str] = []
    for start, data in image.segments:
        rows: list[str] = []
        for line in disassemble(lambda a, s=start, d=data: d[a - s], start,
                                start + len(data), image.labels):
            rows.extend(f"{name}:" for name in image.labels_at(line.addr))
            rows.append(format_line(line))
        end = start + len(data)
        if image.byte_at(end) is None:      # labels just past the last byte
            rows.extend(f"{name}:" for name in image.labels_at(end))
        chunks.append("\n".join(rows))
    return "\n\n".join(chunks) + ("\n" if chunks else "")
