"""The assembler's symbols: labels, ``equ`` constants and NASM's section
symbols, their values and their sections (a mixin of ``Assembler``).

``lookup`` gives a value, ``lookup_rel`` the sections it is an address of
(``expr``); in pass 1 a label is its offset in its section and a symbol not
defined above the line is ``_NotYet`` -- an error only where the value
decides the layout (``critical``).  An ``equ`` constant is evaluated when
first asked, with ``$`` the address of its line; one that depends on itself
is a circular definition (``_guard``).  A name defined twice must have the
same value both times (``_redefinitions``), as in NASM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .expr import Node, Sym, signed64, walk
from .lexer import Loc, clip
from .sections import Section, in_section, section_symbol
from .stmts import LabelDef, Stmt

if TYPE_CHECKING:
    from .assembler import Assembler


class _NotYet(Exception):
    """Pass 1 needed a symbol that is not defined above the current line."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


@dataclass
class ExprEnv:
    """What an expression sees: ``$``, ``$$``, its section and the symbols."""

    asm: Assembler
    loc: Loc
    here: int
    seg_start: int
    section: Section
    pass1: bool = False

    def lookup(self, name: str, col: int) -> int:
        return self.asm.lookup(name, col, self.loc, self.pass1)

    def lookup_rel(self, name: str, col: int) -> dict:
        return self.asm.lookup_rel(name, col, self.loc, self.pass1)


class _Guard:
    """``SymbolTable._guard``'s context."""

    __slots__ = ("resolving", "name", "col", "loc")

    def __init__(self, resolving: set, name: str, col: int, loc: Loc):
        self.resolving, self.name, self.col, self.loc = resolving, name, col, loc

    def __enter__(self) -> None:
        if self.name in self.resolving:
            raise self.loc.error(f"circular definition: '{clip(self.name)}' depends on "
                                 "itself", self.col)
        self.resolving.add(self.name)

    def __exit__(self, *exc) -> None:
        self.resolving.discard(self.name)


class SymbolTable:
    """The symbols of an ``Assembler`` (its ``label_at``, ``labels``,
    ``equs``, ``values``, ``pass1_values``, ``rels``, ``defined_at``,
    ``again``, ``resolving`` and ``sections``)."""

    def lookup(self, name: str, col: int, loc: Loc, pass1: bool) -> int:
        if pass1:
            if name in self.label_at:
                return self.label_at[name][1]
            if name in self.equs:
                return self._equ(name, col, loc, True)
            found = section_symbol(self.sections, name)
            if found is not None and in_section(found):
                return 0
            raise _NotYet(name)
        if name in self.labels:
            return self.labels[name]
        if name in self.values:
            return self.values[name]
        if name in self.equs:
            return self._equ(name, col, loc, False)
        found = section_symbol(self.sections, name)
        if found is not None:
            sec, vstart = found
            return sec.base if vstart else sec.load
        raise loc.error(f"undefined symbol '{clip(name)}'", col)

    def lookup_rel(self, name: str, col: int, loc: Loc, pass1: bool) -> dict:
        if name in self.label_at:
            return {self.label_at[name][0]: 1}
        if name in self.rels:
            return self.rels[name]
        if name in self.equs:
            stmt, section, offset = self.equs[name]
            with self._guard(name, col, loc):
                rel = stmt.expr.rel(ExprEnv(self, stmt.loc, offset, 0, section, pass1))
            self.rels[name] = rel
            return rel
        found = section_symbol(self.sections, name)
        if found is not None:
            return {found[0]: 1} if in_section(found) else {}
        if pass1:
            raise _NotYet(name)
        raise loc.error(f"undefined symbol '{clip(name)}'", col)

    def _equ(self, name: str, col: int, loc: Loc, pass1: bool) -> int:
        cache = self.pass1_values if pass1 else self.values
        if name in cache:
            return cache[name]
        stmt, section, offset = self.equs[name]
        base = 0 if pass1 else section.base
        with self._guard(name, col, loc):
            value = stmt.expr.ev(ExprEnv(self, stmt.loc, base + offset, base, section, pass1))
        cache[name] = value
        return value

    def _guard(self, name: str, col: int, loc: Loc) -> _Guard:
        """A context that resolves ``name``: entering it again inside is a
        circular definition."""
        return _Guard(self.resolving, name, col, loc)

    def _define(self, name: str, stmt: Stmt, sec: Section, off: int) -> bool:
        """Whether ``name`` is defined here for the first time (a second
        definition is checked once every value is known)."""
        if name in self.defined_at:
            self.again.append((name, stmt, sec, off))
            return False
        self.defined_at[name] = stmt.loc
        return True

    def _redefinitions(self) -> None:
        """A name defined twice must have the same value both times, in the
        same section, as NASM has it (``x:`` twice at one place is fine)."""
        for name, stmt, sec, off in self.again:
            env = ExprEnv(self, stmt.loc, sec.base + off, sec.base, sec, False)
            if isinstance(stmt, LabelDef):
                value, rel = sec.base + off, {sec: 1}
            else:
                value, rel = stmt.expr.ev(env), stmt.expr.rel(env)  # type: ignore[attr-defined]
            first = (self.labels[name], {self.label_at[name][0]: 1}) if name in self.labels \
                else (self.values[name], self.lookup_rel(name, stmt.col, stmt.loc, False))
            if (signed64(value), rel) != (signed64(first[0]), first[1]):
                at = self.defined_at[name]
                what = "label" if isinstance(stmt, LabelDef) else "symbol"
                raise stmt.loc.error(f"duplicate {what} '{clip(name)}' (first defined at "
                                     f"{at.file}:{at.line}, with another value)", stmt.col)

    def critical(self, expr: Node, what: str, loc: Loc, section: Section, offset: int) -> int:
        """A value that decides the layout: a number, known at this line."""
        env = ExprEnv(self, loc, offset, 0, section, pass1=True)
        try:
            if expr.rel(env):
                raise loc.error(f"{what} must be a number, not an address ('$ - $$' and "
                                "'label - $$' are numbers)", expr.start)
            return expr.ev(env)
        except _NotYet as e:
            col = next((n.col for n in walk(expr)
                        if isinstance(n, Sym) and n.name == e.name), expr.start)
            raise loc.error(f"{what} must be known in pass 1, but '{e.name}' is not "
                            "defined above this line", col) from None
