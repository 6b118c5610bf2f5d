"""Listings: every source line beside the address and bytes it made.

``emu asm PROG.s`` prints this.  One row per line, as NASM's ``-l`` does::

     8     00001000 02 40 00 00 08 00        mov esp, KSTACK_TOP
     9     00001006                          .loop:
    10              = 0x00080000             KSTACK_TOP equ 0x80000
    11     00001010 48 65 6c 6c 6f 00        msg: db "Hello", 0
    12     00002000 <res 0x1000>             stack: resb 4096

(the line number, with ``<n>`` for a line made by n macros or %reps; the
address and bytes, wrapped 8 to a row; a constant's value after ``=``, so
a constant is never taken for an address).  Data is shown as bytes, never
decoded as instructions.  A line from another file follows a ``;;`` line
naming it.  The sections and the entry point close the listing.
"""

from __future__ import annotations

from .image import HIDDEN_OFFSET, Image, ListingLine
from .preproc import Row

PER_ROW = 8               # bytes shown on one row
MAX_ROWS = 4              # rows of bytes shown for one line before "..."


class Recorder:
    """Collects, during pass 2, what each listing row made."""

    def __init__(self):
        self.made: dict[int, dict] = {}

    def _row(self, stmt) -> dict | None:
        if stmt.loc.row < 0:
            return None
        return self.made.setdefault(stmt.loc.row, {"kind": "", "addr": None, "data": b"",
                                                   "reserved": 0, "value": None})

    def symbol(self, stmt, addr: int, value: int | None) -> None:
        r = self._row(stmt)
        if r is None or stmt.name.startswith(HIDDEN_OFFSET):
            return                  # (a struc's running offset: its field shows it)
        if value is not None:
            r.update(kind="equ", value=value)
        else:
            r.update(kind=r["kind"] or "label", addr=addr if r["addr"] is None else r["addr"])

    def reserve(self, stmt, addr: int, size: int) -> None:
        r = self._row(stmt)
        if r is not None:
            r.update(kind="reserve", reserved=r["reserved"] + size)
            if r["addr"] is None or r["kind"] == "label":
                r["addr"] = addr

    def output(self, stmt, addr: int, data: bytearray, start: int, code: bool,
               reserve: bool) -> None:
        r = self._row(stmt)
        if r is None:
            return
        if r["addr"] is None:
            r["addr"] = addr
        r["data"] += bytes(data[start:])
        r["kind"] = "code" if code else "reserve" if reserve and r["kind"] != "data" \
            else "data"

    def lines(self, rows: list[Row], cut: bool = False) -> tuple[ListingLine, ...]:
        """One ListingLine per row; ``cut``: the rows stopped at the limit."""
        out = []
        for i, row in enumerate(rows):
            r = self.made.get(i)
            if r is None:
                out.append(ListingLine(row.file, row.line, row.text, row.level))
            else:
                out.append(ListingLine(row.file, row.line, row.text, row.level, r["kind"],
                                       r["addr"], r["data"], r["reserved"], r["value"]))
        if cut:
            out.append(ListingLine("", 0, f";; the listing stops after {len(rows):,} lines "
                                   "(the rest was assembled)", 0, "note"))
        return tuple(out)


def format_listing(image: Image) -> str:
    """The listing of ``image`` (assembled with ``listing=True``)."""
    if image.listing is None:
        raise ValueError("the image was assembled without listing=True")
    out: list[str] = []
    current = image.source_name
    for ln in image.listing:
        if ln.kind == "note":
            out.append(ln.text)
            continue
        if ln.level == 0 and ln.file != current:
            out.append(f";; {ln.file}")
            current = ln.file
        number = f"{ln.line:>6}" + (f" <{ln.level}>" if ln.level else "    ")
        text = ln.text.rstrip()
        if ln.kind == "equ":
            value = ln.value if ln.value is not None else 0
            shown = f"{value:#010x}" if 0 <= value < 1 << 32 else str(value)
            out.append(_row(number, "", "= " + shown, text))
            continue
        if ln.addr is None:
            out.append(_row(number, "", "", text))
            continue
        chunks = [ln.data[i:i + PER_ROW] for i in range(0, len(ln.data), PER_ROW)]
        if ln.kind == "reserve" and not ln.data:
            first = f"<res {ln.reserved:#x}>"
        else:
            first = _hex(chunks[0]) if chunks else ""
        out.append(_row(number, f"{ln.addr:08x}", first, text))
        for k, chunk in enumerate(chunks[1:MAX_ROWS], 1):
            out.append(_row("", f"{ln.addr + k * PER_ROW:08x}", _hex(chunk), ""))
        if len(chunks) > MAX_ROWS:
            out.append(_row("", "", f"... {len(ln.data):,} bytes", ""))
    out.append("")
    for s in image.sections:
        where = f"at {s.load:#010x}" + (f", labels from {s.base:#010x}" if s.base != s.load
                                          else "")
        kind = "nobits" if s.nobits else "progbits"
        out.append(f";; section {s.name} {where}: {s.size:#x} bytes ({kind})")
    entry = "_start" if "_start" in image.symbols else "the lowest address"
    out.append(f";; entry {entry} = {image.entry:#010x}")
    return "\n".join(out) + "\n"


def _row(number: str, addr: str, made: str, text: str) -> str:
    return f"{number:<10} {addr:<8} {made:<{3 * PER_ROW}} {text}".rstrip()


def _hex(data: bytes) -> str:
    return " ".join(f"{b:02x}" for b in data)
