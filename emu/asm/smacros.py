"""Single-line macros: NASM's ``%define`` (and ``%idefine``, ``%xdefine`` ...
as the preprocessor makes them) and NASM's own macros (``__LINE__`` ...).

A single-line macro is expanded wherever its name appears as an identifier
outside strings and comments; one with parameters only where ``(`` follows
its name.  Its body is scanned again for more macros, but a macro is never
expanded inside its own expansion (so ``%define x x+1`` is safe), and a
name a body brings is never expanded again by a macro it came from
(``Expander._made``).  Names are case-sensitive; ``%idefine`` makes one
that is not.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .lexer import Loc, clip
from .macros import MAX_LINE, quoted, scan

MAX_DEFINE_DEPTH = 64       # single-line macros expanding inside each other
MAX_CALLS = 100_000         # single-line macro calls made for one line


@dataclass(frozen=True)
class Define:
    """A single-line macro: ``%define name(params) body``."""

    params: tuple[str, ...] | None      # None: no parentheses
    body: str


class Expander:
    """Single-line macros: definitions and expansion."""

    def __init__(self):
        self.defines: dict[str, Define] = {}
        self.idefines: dict[str, Define] = {}     # %idefine, by lower-case name
        # NASM's preprocessor functions (%eval(...) ...): (text, loc, column)
        # -> the text with each call made (the preprocessor's: pptext.py)
        self.functions: Callable[[str, Loc, int], str] | None = None
        # __?SECT?__: the last section line, as NASM's section macro defines
        # it (the directive in brackets: NASM's primitive form)
        self.sect = FIRST_SECT
        self.removed: set[str] = set()      # NASM's own macros %undef'd
        # the sets of macros marked names came from (``_mark``), while a
        # line (``_lines`` of them, nested through functions) is expanded
        self._hides: list[frozenset] = []
        self._hide_keys: dict[frozenset, int] = {}
        self._lines = 0
        self._calls = 0                     # ... and the calls made for it

    def get(self, name: str) -> Define | None:
        d = self.defines.get(name)
        return d if d is not None else self.idefines.get(name.lower())

    def defined(self, name: str) -> bool:
        """Whether ``name`` is a single-line macro (one of NASM's own too)."""
        return self.get(name) is not None or (name in BUILTIN and name not in self.removed)

    def _forget(self, name: str) -> tuple[str, ...]:
        """No definition of ``name`` (under each of its names) is left but
        NASM's own; returns those names."""
        names = spellings(name)
        for each in names:
            self.defines.pop(each, None)
            self.idefines.pop(each.lower(), None)
            self.removed.discard(each)
        return names

    def undef(self, name: str) -> None:
        names = self._forget(name)
        if name in BUILTIN:
            self.removed.update(names)

    def define(self, name: str, body: str, params: tuple[str, ...] | None = None,
               fold: bool = False) -> None:
        """(Re)define ``name`` (``fold``: ignoring case, as %idefine does)."""
        d = Define(params, body)
        for each in self._forget(name):
            if fold:
                self.idefines[each.lower()] = d
            else:
                self.defines[each] = d

    def section(self, sect: str) -> None:
        """A section line: ``__?SECT?__`` is ``sect`` (a user's definition of
        it ends, as NASM's section macro redefines it)."""
        self.sect = sect
        self._forget("__?SECT?__")

    def _functions(self, text: str, loc: Loc, col: int) -> str:
        """``text`` with NASM's functions (``%eval(...)`` ...) made."""
        if "%" in text and self.functions is not None and "(" in text:
            return self.functions(text, loc, col)
        return text

    def expand(self, text: str, loc: Loc) -> str:
        """``text`` (a line, or what a directive expands) with its single-line
        macros expanded as NASM expands a line: one pass from left to right
        (``_pass``), each call replaced by its body made (``_made``).  NASM's
        functions (``%eval(...)`` ...) come first: their arguments are
        expanded so too."""
        self._lines += 1
        try:
            text = self._functions(text, loc, 0)
            if not self.defines and not self.idefines and "__" not in text:
                return text
            text = self._pass(text, loc, frozenset(), 0, 0)[0]
        finally:
            self._lines -= 1
            if not self._lines:
                self._calls = 0
                self._hides.clear()
                self._hide_keys.clear()
        return _unmarked(text) if MARK in text else text

    def _made(self, body: str, loc: Loc, active: frozenset, depth: int, col: int) -> str:
        """A macro's body, its arguments in place, made: passes over it until
        one changes nothing, the macros being expanded (``active``) left as
        they are.  So a call of a macro inside an argument of the same macro
        is made once its own call is done -- ``%define B A(A(1))`` is
        ``((1+1)+1)`` where the line ``A(A(1))`` is ``(A(1)+1)``, as in
        NASM -- while a body's own call of a macro that made it stays (each
        name in a body carries the macros it came from: ``_mark``)."""
        while True:
            body, changed = self._pass(body, loc, active, depth, col)
            if not changed:
                return self._functions(body, loc, col)

    def _pass(self, text: str, loc: Loc, active: frozenset, depth: int,
              col: int) -> tuple[str, bool]:
        """One pass over ``text``: each call made (``_made``) and what it made
        read again from its start, with the macro that made it left alone up
        to its end (a name it ends with may take the ``(...)`` after it).
        Returns the text and whether anything was made."""
        changed = False
        pos = 0
        made: list[tuple[str, int]] = []   # (macro, where what it made ends)
        while True:
            for start, end, kind in scan(text, pos):
                if kind != "id":
                    continue
                name = text[start:end]
                d = self.get(name)
                if d is None and name in BUILTIN and name not in self.removed:
                    d = Define(None, builtin(name, loc, self.sect))
                if d is None or name in active or any(
                        m == name and start < e for m, e in made):
                    continue
                hidden, head = frozenset(), start
                if start and text[start - 1] == MARK_END:
                    head = text.rindex(MARK, 0, start)
                    hidden = self._hides[int(text[head + 1:start - 1])]
                    if name in hidden:
                        continue                # (made by itself)
                at = col or start + 1
                if d.params is None:
                    body, after = self._mark(d.body, hidden | {name}, ()), end
                else:
                    got = call_args(text, end)
                    if got is None:
                        continue                # no "(": not a call
                    args, after = got
                    if args == [""] and not d.params:
                        args = []
                    if len(args) != len(d.params):
                        raise loc.error(f"'{clip(name)}' takes {len(d.params)} "
                                        f"arguments, not {len(args)}", at)
                    body = _substitute(self._mark(d.body, hidden | {name}, d.params),
                                       dict(zip(d.params, args, strict=True)))
                if depth >= MAX_DEFINE_DEPTH:
                    raise loc.error(f"'{clip(name)}' expands too deeply (limit "
                                    f"{MAX_DEFINE_DEPTH} macros inside each other)", at)
                self._calls += 1
                if self._calls > MAX_CALLS:
                    raise loc.error(f"more than {MAX_CALLS:,} single-line macro calls made "
                                    "for one line (the limit)", at)
                body = self._made(body, loc, active | {name}, depth + 1, at)
                text = text[:head] + body + text[after:]
                if len(text) > MAX_LINE and len(_unmarked(text)) > MAX_LINE:
                    raise loc.error(f"line too long after macro expansion (limit "
                                    f"{MAX_LINE:,} characters)", at)
                shift, stop = len(body) - (after - head), head + len(body)
                made = [(m, stop if e < after else e + shift) for m, e in made if e > head]
                made.append((name, stop))
                pos, changed = head, True
                break
            else:
                return text, changed

    def _mark(self, body: str, hidden: frozenset, params: tuple[str, ...]) -> str:
        """``body`` with each name in it that is a single-line macro marked
        with ``hidden``: the macros it came from, which it does not call
        again (the parameters are not the body's: what replaces them keeps
        its own marks)."""
        key = self._hide_keys.get(hidden)
        out: list[str] = []
        pos = 0
        for start, end, kind in scan(body):
            if kind != "id":
                continue
            name = body[start:end]
            if name in params or (self.get(name) is None and name not in BUILTIN):
                continue
            if key is None:
                key = self._hide_keys[hidden] = len(self._hides)
                self._hides.append(hidden)
            out += [body[pos:start], f"{MARK}{key}{MARK_END}"]
            pos = start
        if not out:
            return body
        out.append(body[pos:])
        return "".join(out)


# A name's marks inside an expansion (``Expander._mark``): MARK, the number
# of its set of macros, MARK_END, then the name; none leaves ``expand``.
MARK, MARK_END = "\x01", "\x02"
_MARKS = re.compile("\x01[0-9]*\x02")


def _unmarked(text: str) -> str:
    return _MARKS.sub("", text)


# NASM's own single-line macros (each also spelled __?NAME?__): the line
# being read and its file -- for a line of a macro or a %rep, where the
# line is written, as NASM 2.16 has them --, the section the last section
# line named (``Expander.sect``), the mode, the output format, the pass
# (2: the bytes are the final pass's), and the version of NASM whose
# language this is (2.16.01: what the differential tests run against).
VERSION = {"NASM_MAJOR": "2", "NASM_MINOR": "16", "NASM_SUBMINOR": "1",
           "NASM_PATCHLEVEL": "0", "NASM_VERSION_ID": "0x02100100",
           "NASM_VER": '"2.16.01"', "BITS": "32", "OUTPUT_FORMAT": "bin", "PASS": "2"}
BUILTIN = frozenset(f"__{q}{n}{q}__" for n in ("LINE", "FILE", "SECT", *VERSION)
                    for q in ("", "?"))
FIRST_SECT = "[section .text]"


def spellings(name: str) -> tuple[str, ...]:
    """The names ``name`` is: one of NASM's own macros has two, __X__ and
    __?X?__ (one macro: defining or removing one does both)."""
    if name not in BUILTIN:
        return (name,)
    key = name.strip("_?")
    return (f"__{key}__", f"__?{key}?__")


def builtin(name: str, loc: Loc, sect: str) -> str:
    """The body of NASM's macro ``name`` on the line ``loc`` (``sect``:
    what ``__?SECT?__`` is there)."""
    key = name.strip("_?")
    if key == "LINE":
        return str(loc.line)
    if key == "FILE":
        return quoted(loc.file.encode())
    if key == "SECT":
        return sect
    return VERSION[key]


def call_args(text: str, pos: int) -> tuple[list[str], int] | None:
    """The arguments of ``name(a, b)`` starting after the name, and the
    index after ``)``; None without ``(``, or when ``)`` is missing."""
    i = pos
    while i < len(text) and text[i] in " \t":
        i += 1
    if i >= len(text) or text[i] != "(":
        return None
    depth, args, cur = 0, [], i + 1
    for start, end, kind in scan(text[i + 1:]):
        ch = text[i + 1 + start]
        if kind != "other":
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                args.append(text[cur:i + 1 + start].strip())
                return args, i + 1 + end
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(text[cur:i + 1 + start].strip())
            cur = i + 1 + end
    return None


def _substitute(body: str, values: dict[str, str]) -> str:
    """``body`` with each identifier that is a key of ``values`` replaced."""
    if not values:
        return body
    return "".join(values.get(body[s:e], body[s:e]) if kind == "id" else body[s:e]
                   for s, e, kind in scan(body))
