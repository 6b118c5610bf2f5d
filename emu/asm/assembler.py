"""The passes: lines -> statements -> offsets -> addresses -> bytes -> Image.

Pass 1 lays each section out on its own: every statement's size is known
from its syntax, so pass 1 gives every label its offset in its section.
The values that decide the layout -- ``times`` and ``res*`` counts, ``align``
boundaries, ``org`` and section attributes -- must be numbers (NASM's
"critical expressions"): they may use ``$ - $$``, numbers, and symbols
defined *above* the line.  ``sections.place`` then gives each section its
address, and every label its address.

Between the passes every ``equ`` constant is evaluated (it may use any label
or constant, defined before or after it; ``$`` in its expression is the
address of the equ line).  Pass 2 checks that each value the program
stores is a number or an address plus a number, evaluates, and encodes.

Limits: the image holds at most ``MAX_IMAGE`` bytes, a ``times`` count is
at most ``MAX_TIMES`` and all of them together emit at most ``MAX_ITEMS``
statements.  With the source limits (``source.MAX_SOURCE`` per file, and
those of ``preproc``) they bound the memory one assembly takes to a few
hundred MB, whatever its input.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import partial

from .. import isa
from ..errors import AsmError
from . import preproc
from .expr import Node, Num
from .image import Image, SectionInfo, SourceLine
from .lexer import Loc, clip
from .listing import Recorder
from .macros import strip_comment
from .parser import Parser
from .preproc import Preprocessor
from .sections import ADDRESS_END, Section, declare, place
from .source import read_source, recorded, unchanged
from .stmts import (
    Align,
    Data,
    EquDef,
    Instruction,
    LabelDef,
    Org,
    Reserve,
    SectAlign,
    SectionDecl,
    Stmt,
    Times,
)
from .symbols import ExprEnv, SymbolTable
from .values import check_stmt

MAX_IMAGE = 16 << 20        # bytes in all sections together
MAX_TIMES = 1 << 20         # largest times count
MAX_ITEMS = 2 << 20         # statements emitted, times repetitions included (memory)
NOP = isa.BY_KEY[("nop", ())]
EMPTY = "the program is empty: there is no code to run (execution starts at the label _start)"
NO_START = "no '_start' label: execution starts at _start (put '_start:' where the program begins)"


class Assembler(SymbolTable):
    """One assembly: preprocess, parse, lay out, place, resolve, encode
    (its symbols: ``symbols.SymbolTable``)."""

    def __init__(self, include_dirs: Iterable[str | os.PathLike] = (), listing: bool = False):
        self.parser = Parser(include_dirs=tuple(os.fspath(d) for d in include_dirs))
        self.pre = Preprocessor(self.parser.include_dirs, listing,
                                self.parser.constant)
        self.parser.user_warnings = self.pre.user
        self.recorder = Recorder() if listing else None
        self.label_at: dict[str, tuple[Section, int]] = {}
        self.labels: dict[str, int] = {}
        self.equs: dict[str, tuple[EquDef, Section, int]] = {}  # stmt, section, offset
        self.values: dict[str, int] = {}                        # resolved equs
        self.pass1_values: dict[str, int] = {}
        self.rels: dict[str, dict] = {}
        self.defined_at: dict[str, Loc] = {}
        # Names defined again (the second definition, its section and offset):
        # as in NASM, an error only if the value differs (``_redefinitions``).
        self.again: list[tuple[str, Stmt, Section, int]] = []
        self.resolving: set[str] = set()
        self.layout: list[tuple[Section, int, int]] = []        # section, offset, count
        self.sections: list[Section] = []
        self.origin: int | None = None
        self.placed = False

    # --- pass 1: each section's layout ---------------------------------------

    def pass1(self, stmts: list[Stmt], main: str) -> None:
        sec = Section(".text", False, Loc(main, 0, ""), None)
        self.sections.append(sec)
        total = items = 0
        for stmt in stmts:
            off = sec.size
            count = size = 0
            if isinstance(stmt, LabelDef):
                if self._define(stmt.name, stmt, sec, off):
                    self.label_at[stmt.name] = (sec, off)
            elif isinstance(stmt, EquDef):
                if self._define(stmt.name, stmt, sec, off):
                    self.equs[stmt.name] = (stmt, sec, off)
            elif isinstance(stmt, SectionDecl):
                sec = declare(self.sections, stmt, partial(
                    self._attribute, stmt.loc, sec))
            elif isinstance(stmt, Org):
                self._org(stmt, sec)
            elif isinstance(stmt, SectAlign):
                sec.raise_align(self._boundary(stmt.n, "a section alignment", "sectalign",
                                               stmt.loc, sec, off))
            elif isinstance(stmt, (Align, Times)):
                count, size = self._repeat(stmt, sec, off)
                items += count if isinstance(stmt, Times) else 0
                if items > MAX_ITEMS:
                    raise stmt.loc.error(f"more than {MAX_ITEMS:,} statements emitted "
                                         "(times repetitions counted)", stmt.col)
            elif isinstance(stmt, Reserve):
                size = self._reserve(stmt, sec, off)
            else:
                self._fits(stmt, sec)
                size = stmt.size  # type: ignore[attr-defined]
            self.layout.append((sec, off, count))
            if size:
                if not sec.nobits:
                    total += size
                    if total > MAX_IMAGE:
                        raise stmt.loc.error("image larger than 16 MiB", stmt.col)
                if off + size > ADDRESS_END:
                    raise stmt.loc.error("output goes past address 0xffffffff", stmt.col)
                sec.size += size

    def _boundary(self, node: Node, what: str, word: str, loc: Loc, sec: Section,
                  off: int) -> int:
        """An alignment (``align N``, ``sectalign N``): a power of two."""
        n = self.critical(node, what, loc, sec, off)
        if n <= 0 or n & (n - 1):
            raise loc.error(f"{word} {n} is not a power of two", node.start)
        return n

    def _attribute(self, loc: Loc, sec: Section, node: Node, what: str) -> int:
        return self.critical(node, what, loc, sec, sec.size)

    def _org(self, stmt: Org, sec: Section) -> None:
        value = self.critical(stmt.expr, "an org address", stmt.loc, sec, sec.size)
        if not 0 <= value < ADDRESS_END:
            raise stmt.loc.error(f"org address {value:#x} out of range (0..0xffffffff)",
                                 stmt.expr.start)
        if self.origin is not None and value != self.origin:
            raise stmt.loc.error(f"program origin redefined: a program has one org "
                                 f"({self.origin:#x}); place code elsewhere with 'section "
                                 "NAME start=ADDR'", stmt.col)
        self.origin = value
        text = self.sections[0]
        if text.defined_at.line == 0:           # the implicit .text: errors point here
            text.defined_at = stmt.loc

    def _fits(self, stmt: Stmt, sec: Section) -> None:
        if sec.nobits:
            raise stmt.loc.error(f"code or data in the nobits section '{clip(sec.name)}': "
                                 "only resb ... resz and alignb reserve space there",
                                 stmt.col)

    def _reserve(self, stmt: Reserve, sec: Section, off: int) -> int:
        n = self.critical(stmt.count, "a reserve count", stmt.loc, sec, off)
        if not 0 <= n * stmt.width < ADDRESS_END:
            raise stmt.loc.error(f"cannot reserve {n} items (0 .. 4 GiB)", stmt.count.start)
        stmt.size = n * stmt.width
        return stmt.size

    def _repeat(self, stmt: Align | Times, sec: Section, off: int) -> tuple[int, int]:
        """(repetitions, bytes) of a times or align statement."""
        if isinstance(stmt, Times):
            count = self.critical(stmt.count, "a times count", stmt.loc, sec, off)
            if count < 0:
                raise stmt.loc.error(f"times count {count} is negative", stmt.count.start)
            if count > MAX_TIMES:
                raise stmt.loc.error(f"times count {count} too large (limit {MAX_TIMES})",
                                     stmt.count.start)
        else:
            n = self._boundary(stmt.n, "an align boundary", "align", stmt.loc, sec, off)
            if stmt.sect:
                sec.raise_align(n)
            count = -off % n
            if stmt.inner is None:
                if stmt.reserve or sec.nobits:
                    stmt.inner = Reserve(stmt.loc, stmt.col, 1, Num(1, stmt.col), 1)
                else:
                    stmt.inner = Instruction(stmt.loc, stmt.col, NOP, [], 1)
        inner = stmt.inner
        assert inner is not None
        if isinstance(inner, Reserve):
            self._reserve(inner, sec, off)
        elif count:
            self._fits(stmt, sec)
        return count, count * inner.size

    # --- the whole thing ---------------------------------------------------

    def run(self, text: str, filename: str, require_start: bool) -> Image:
        real = filename if filename.startswith("<") else os.path.realpath(filename)
        for loc in self.pre.run(text, filename, ((real, filename),)):
            self.parser.parse_line(loc)
        self.parser.finish()
        stmts = self.parser.stmts
        self.pass1(stmts, filename)
        place(self.sections, self.origin)
        self.labels = {name: sec.base + off for name, (sec, off) in self.label_at.items()}
        for stmt in stmts:
            if isinstance(stmt, EquDef) and stmt.name not in self.values \
                    and self.equs.get(stmt.name, (None,))[0] is stmt:
                self._equ(stmt.name, stmt.col, stmt.loc, False)
        self._redefinitions()
        lines, data = self.pass2(stmts)
        segments = tuple(sorted((s.load, bytes(s.data)) for s in self.sections if s.data))
        symbols = {**self.values, **self.labels}
        if "_start" in symbols:
            entry = symbols["_start"] & 0xFFFFFFFF
        elif require_start:
            raise AsmError(EMPTY if not segments else NO_START, filename)
        else:
            entry = segments[0][0] if segments else 0
        infos = tuple(SectionInfo(s.name, s.load, s.base, s.size, s.nobits)
                      for s in sorted(self.sections, key=lambda s: (s.load, s.name)))
        listing = None
        if self.recorder is not None:
            assert self.pre.rows is not None
            listing = self.recorder.lines(self.pre.rows,
                                          len(self.pre.rows) >= preproc.MAX_ROWS)
        return Image(segments, entry, symbols, dict(self.labels), lines, filename, infos,
                     listing, data, tuple(self.pre.warnings))

    # --- pass 2: bytes -----------------------------------------------------

    def pass2(self, stmts: list[Stmt]) -> tuple[dict, dict]:
        """The bytes of every section; returns the source lines of the
        instructions and of the data (``Image.lines``, ``Image.data``)."""
        lines: dict[int, SourceLine] = {}
        data: dict[int, tuple[SourceLine, int]] = {}
        rec = self.recorder
        for stmt, (sec, off, count) in zip(stmts, self.layout, strict=True):
            addr = sec.base + off
            if isinstance(stmt, (LabelDef, EquDef)):
                if rec is not None:
                    rec.symbol(stmt, addr, self.values.get(stmt.name)
                               if isinstance(stmt, EquDef) else None)
                continue
            if isinstance(stmt, (SectionDecl, Org, SectAlign)):
                continue
            env = ExprEnv(self, stmt.loc, addr, sec.base, sec)
            inner = stmt.inner if isinstance(stmt, (Times, Align)) else stmt
            if not isinstance(stmt, (Times, Align)):
                count = 1
            assert isinstance(inner, (Data, Instruction, Reserve))
            src = SourceLine(stmt.loc.file, stmt.loc.line, strip_comment(stmt.loc.text).strip())
            if isinstance(inner, Instruction):
                for k in range(count):
                    lines[addr + k * inner.size] = src
            if count:
                check_stmt(inner, env)
            if sec.nobits:
                if rec is not None:
                    rec.reserve(stmt, addr, count * inner.size)
                continue
            start = len(sec.data)
            if isinstance(inner, Instruction) and inner.relative and count > 1:
                # $ is the line's address in every repetition, as in NASM;
                # a relative branch still counts from where each one is.
                for k in range(count):
                    sec.data += inner.encode(env, addr + k * inner.size)
            elif count:
                sec.data += inner.encode(env) * count
            if len(sec.data) > start and not isinstance(inner, Instruction):
                data[addr] = (src, len(sec.data) - start)
            if rec is not None:
                rec.output(stmt, addr, sec.data, start, isinstance(inner, Instruction),
                           isinstance(inner, Reserve))
        return lines, data


def assemble(source: str, filename: str = "<input>",
             include_dirs: Iterable[str | os.PathLike] = (), *,
             require_start: bool = False, listing: bool = False) -> Image:
    """Assemble ``source`` (the text of the file named ``filename``).

    ``%include`` looks next to ``filename`` (the current directory for names
    like ``<input>``), then in each of ``include_dirs``.  A program must
    define ``_start`` when ``require_start`` (what ``assemble_file`` does);
    a fragment need not.  ``listing`` fills ``Image.listing``.  Raises
    AsmError.
    """
    include_dirs = tuple(os.fspath(d) for d in include_dirs)
    key = (source, filename, include_dirs, require_start, listing, os.getcwd())
    made = _MADE.get(key)
    if made is not None and unchanged(made[1]):
        return made[0]
    try:
        with recorded() as reads:
            image = Assembler(include_dirs, listing).run(source, filename, require_start)
    except RecursionError:  # a safety net: the parser limits nesting itself
        raise AsmError("source too deeply nested", filename, 0, 0, "") from None
    if len(_MADE) >= MADE_LIMIT:
        _MADE.pop(next(iter(_MADE)))
    _MADE[key] = (image, reads)
    return image


# Programs assembled in this process, by their source, name, include
# directories, options and working directory, with the reads that made
# them: the same source whose includes read the same again gives the same
# (immutable) Image without assembling it again -- the runs of one guest in
# every mode, the tests.
_MADE: dict = {}
MADE_LIMIT = 64


def assemble_file(path: str | os.PathLike, include_dirs: Iterable[str | os.PathLike] = (),
                  *, require_start: bool = True, listing: bool = False) -> Image:
    """Assemble the program in the file at ``path``; any problem is an
    AsmError, a program without ``_start`` included."""
    name = os.fspath(path)
    text = read_source(name, name)
    return assemble(text, name, include_dirs, require_start=require_start, listing=listing)
