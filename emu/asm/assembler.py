"""The two passes: statements -> addresses -> bytes, and the Image.

Pass 1 lays the program out.  Every statement's size is known from its
syntax, so pass 1 gives every label its final address.  The few values that
decide the layout itself -- ``org`` addresses, ``align`` boundaries and
``times`` counts -- must be computable in pass 1: they may use ``$``, ``$$``,
numbers, and symbols defined *above* the line.

Between the passes every ``equ`` constant is evaluated (it may use any label
or constant, defined before or after it; ``$`` in its expression is the
address of the equ line).  Pass 2 evaluates everything else and encodes.

Limits: the image holds at most ``MAX_IMAGE`` bytes, nothing may lie beyond
address 0xffffffff, segments must not overlap, a ``times`` count is at
most ``MAX_TIMES`` and all of them together emit at most ``MAX_ITEMS``
statements.  With the source limits (``source.MAX_SOURCE`` per file,
``parser.MAX_TOTAL_SOURCE`` per assembly) they bound the memory one assembly
takes to a few hundred MB, whatever its input.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import AsmError
from .expr import Node, Sym, walk
from .image import Image
from .lexer import Loc, clip
from .parser import Align, Data, EquDef, Instruction, LabelDef, Org, Parser, Stmt, Times
from .source import read_source

MAX_IMAGE = 16 << 20        # bytes in all segments together
MAX_TIMES = 1 << 20         # largest times count
MAX_ITEMS = 2 << 20         # statements emitted, times repetitions included (memory)
ADDRESS_END = 1 << 32       # first address past the 32-bit space


class _NotYet(Exception):
    """Pass 1 needed a symbol that is not defined above the current line."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


@dataclass
class _Env:
    """What an expression sees: ``$``, ``$$`` and the symbol table."""

    asm: Assembler
    loc: Loc
    here: int
    seg_start: int
    pass1: bool = False

    def lookup(self, name: str, col: int) -> int:
        return self.asm.lookup(name, col, self.loc, self.pass1)


@dataclass
class _Segment:
    start: int
    size: int
    org: Org | None      # the statement that opened it (None: the default)


class Assembler:
    """One assembly: parse, lay out, resolve constants, encode."""

    def __init__(self, include_dirs: Iterable[str | os.PathLike] = ()):
        self.parser = Parser(tuple(os.fspath(d) for d in include_dirs))
        self.labels: dict[str, int] = {}
        self.equs: dict[str, tuple[EquDef, int, int]] = {}  # stmt, $, $$
        self.values: dict[str, int] = {}                    # resolved equs
        self.defined_at: dict[str, Loc] = {}
        self.resolving: set[str] = set()
        self.layout: list[tuple[int, int, int]] = []        # addr, $$, count/pad
        self.segments: list[_Segment] = []

    # --- symbols -----------------------------------------------------------

    def lookup(self, name: str, col: int, loc: Loc, pass1: bool) -> int:
        if name in self.labels:
            return self.labels[name]
        if name in self.values:
            return self.values[name]
        if name in self.equs:
            return self._resolve_equ(name, col, loc, pass1)
        if pass1:
            raise _NotYet(name)
        raise loc.error(f"undefined symbol '{clip(name)}'", col)

    def _resolve_equ(self, name: str, col: int, loc: Loc, pass1: bool) -> int:
        stmt, here, seg_start = self.equs[name]
        if name in self.resolving:
            raise loc.error(f"circular definition: '{clip(name)}' depends on itself", col)
        self.resolving.add(name)
        try:
            value = stmt.expr.ev(_Env(self, stmt.loc, here, seg_start, pass1))
        finally:
            self.resolving.discard(name)
        self.values[name] = value
        return value

    def _define(self, name: str, stmt: Stmt, what: str) -> None:
        first = self.defined_at.get(name)
        if first is not None:
            raise stmt.loc.error(f"duplicate {what} '{clip(name)}' (first defined at "
                                 f"{first.file}:{first.line})", stmt.col)
        self.defined_at[name] = stmt.loc

    def _pass1_value(self, expr: Node, what: str, loc: Loc, here: int, seg: int) -> int:
        try:
            return expr.ev(_Env(self, loc, here, seg, pass1=True))
        except _NotYet as e:
            col = next((n.col for n in walk(expr)
                        if isinstance(n, Sym) and n.name == e.name), expr.start)
            raise loc.error(f"{what} must be known in pass 1, but '{e.name}' is not "
                            "defined above this line", col) from None

    # --- pass 1: layout ----------------------------------------------------

    def pass1(self, stmts: list[Stmt]) -> None:
        addr = seg_start = 0
        seg = _Segment(0, 0, None)
        total = 0
        items = 0
        for stmt in stmts:
            extra = 0
            size = 0
            if isinstance(stmt, LabelDef):
                self._define(stmt.name, stmt, "label")
                self.labels[stmt.name] = addr
            elif isinstance(stmt, EquDef):
                self._define(stmt.name, stmt, "symbol")
                self.equs[stmt.name] = (stmt, addr, seg_start)
            elif isinstance(stmt, Org):
                value = self._pass1_value(stmt.expr, "an org address", stmt.loc,
                                          addr, seg_start)
                if not 0 <= value < ADDRESS_END:
                    raise stmt.loc.error(f"org address {value:#x} out of range "
                                         "(0..0xffffffff)", stmt.expr.start)
                self._close(seg)
                addr = seg_start = value
                seg = _Segment(value, 0, stmt)
            elif isinstance(stmt, Align):
                n = self._pass1_value(stmt.n, "an align boundary", stmt.loc, addr,
                                      seg_start)
                if n <= 0 or n & (n - 1):
                    raise stmt.loc.error(f"align {n} is not a power of two", stmt.n.start)
                size = extra = -addr % n
            elif isinstance(stmt, Times):
                extra = self._times_count(stmt, addr, seg_start)
                items += extra
                if items > MAX_ITEMS:
                    raise stmt.loc.error(f"more than {MAX_ITEMS:,} statements emitted "
                                         "(times repetitions counted)", stmt.col)
                size = extra * stmt.inner.size
            else:
                size = stmt.size  # type: ignore[attr-defined]
            self.layout.append((addr, seg_start, extra))
            if size:
                total += size
                if total > MAX_IMAGE:
                    raise stmt.loc.error("image larger than 16 MiB", stmt.col)
                if addr + size > ADDRESS_END:
                    raise stmt.loc.error("output goes past address 0xffffffff", stmt.col)
                addr += size
                seg.size += size
        self._close(seg)

    def _times_count(self, stmt: Times, addr: int, seg_start: int) -> int:
        n = self._pass1_value(stmt.count, "a times count", stmt.loc, addr, seg_start)
        if n < 0:
            raise stmt.loc.error(f"times count {n} is negative", stmt.count.start)
        if n > MAX_TIMES:
            raise stmt.loc.error(f"times count {n} too large (limit {MAX_TIMES})",
                                 stmt.count.start)
        return n

    def _close(self, seg: _Segment) -> None:
        """Record a finished segment; it must not overlap an earlier one."""
        if seg.size == 0:
            return
        end = seg.start + seg.size
        for other in self.segments:
            o_end = other.start + other.size
            if seg.start < o_end and other.start < end:
                org = seg.org
                assert org is not None  # the first segment overlaps nothing
                lo, hi = max(seg.start, other.start), min(end, o_end) - 1
                raise org.loc.error(
                    f"org {seg.start:#x} goes backwards over bytes already emitted "
                    f"({lo:#x}..{hi:#x})", org.col)
        self.segments.append(seg)

    def resolve_constants(self, stmts: list[Stmt]) -> None:
        for stmt in stmts:
            if isinstance(stmt, EquDef) and stmt.name not in self.values:
                self._resolve_equ(stmt.name, stmt.col, stmt.loc, False)

    # --- pass 2: bytes -----------------------------------------------------

    def pass2(self, stmts: list[Stmt]) -> tuple[list[tuple[int, bytes]],
                                                dict[int, tuple[str, int]]]:
        out: list[tuple[int, bytearray]] = []
        buf = bytearray()
        start = 0
        lines: dict[int, tuple[str, int]] = {}
        for stmt, (addr, seg_start, extra) in zip(stmts, self.layout, strict=True):
            if isinstance(stmt, Org):
                if buf:
                    out.append((start, buf))
                buf, start = bytearray(), addr
                continue
            if isinstance(stmt, (LabelDef, EquDef)):
                continue
            env = _Env(self, stmt.loc, addr, seg_start)
            if isinstance(stmt, Align):
                fill = 0
                if stmt.fill is not None:
                    fill = stmt.fill.ev(env)
                    if not -128 <= fill <= 255:
                        raise stmt.loc.error(f"align fill {fill} out of range "
                                             "(-128..255)", stmt.fill.start)
                buf += bytes([fill & 0xFF]) * extra
                continue
            inner = stmt.inner if isinstance(stmt, Times) else stmt
            count = extra if isinstance(stmt, Times) else 1
            assert isinstance(inner, (Data, Instruction))
            if isinstance(inner, Instruction):
                for k in range(count):
                    lines[addr + k * inner.size] = (stmt.loc.file, stmt.loc.line)
            if count and not inner.uses_here:
                buf += inner.encode(env) * count
                continue
            for _ in range(count):
                buf += inner.encode(env)
                env.here += inner.size
        if buf:
            out.append((start, buf))
        return sorted((a, bytes(b)) for a, b in out), lines

    # --- the whole thing ---------------------------------------------------

    def run(self, text: str, filename: str) -> Image:
        real = filename if filename.startswith("<") else os.path.realpath(filename)
        self.parser.parse_file_text(text, filename, ((real, filename),))
        stmts = self.parser.stmts
        self.pass1(stmts)
        self.resolve_constants(stmts)
        segments, lines = self.pass2(stmts)
        symbols = {**self.values, **self.labels}
        if "_start" in symbols:
            entry = symbols["_start"] & 0xFFFFFFFF
        else:
            entry = segments[0][0] if segments else 0
        return Image(tuple(segments), entry, symbols, dict(self.labels), lines, filename)


def assemble(source: str, filename: str = "<input>",
             include_dirs: Iterable[str | os.PathLike] = ()) -> Image:
    """Assemble ``source`` (the text of the file named ``filename``).

    ``%include`` looks next to ``filename`` (the current directory for names
    like ``<input>``), then in each of ``include_dirs``.  Raises AsmError.
    """
    try:
        return Assembler(include_dirs).run(source, filename)
    except RecursionError:  # a safety net: the parser limits nesting itself
        raise AsmError("source too deeply nested", filename, 0, 0, "") from None


def assemble_file(path: str | os.PathLike,
                  include_dirs: Iterable[str | os.PathLike] = ()) -> Image:
    """Assemble the file at ``path``; any problem is an AsmError."""
    name = os.fspath(path)
    text = read_source(name, name)
    return assemble(text, name, include_dirs)
