"""The preprocessor: NASM's ``%`` directives, before anything is parsed.

Source lines go in; the lines to assemble come out (``Loc`` values, with
macros expanded).  Supported, with NASM's meaning::

    %define NAME[(a, b)] BODY   %idefine (case-insensitive)   %undef NAME
    %xdefine, %ixdefine         the same, BODY expanded now
    %assign NAME EXPR           NAME becomes the number EXPR is now
    %strlen NAME 'STRING'       NAME becomes the string's length
    %defstr NAME TEXT, %idefstr, %strcat NAME 'A', 'B' ..., %substr NAME 'S' I[, N]
                                NAME becomes a quoted string
    %macro NAME N[-M|-*][+] [defaults] .. [%exitmacro] .. %endmacro  (%imacro,
                                %rmacro, %irmacro; %endm)
    %rep COUNT .. [%exitrep] .. %endrep
    %if EXPR / %ifdef NAME / %ifidn A, B / %ifidni / %ifid / %ifnum / %ifstr /
    %iftoken / %ifempty TEXT, each with its %ifn form (%ifndef ...), their
    %elif forms, %else, %endif
    %include "FILE"             %error MESSAGE, %fatal MESSAGE, %warning MESSAGE
    %rotate N, %ifmacro, %unmacro, %push/%pop/%repl, %$name, %ifctx
                                (macrocalls.py: the macros and the context stack)
    %eval(...), %str(...) ..., %[TEXT], [warning ...]
                                (pptext.py: NASM's functions, indirect expansion,
                                %warning and its control)
    %iassign, %ifn/%elifn, %pragma (ignored where it cannot change the bytes)

Every other ``%`` directive is refused by name ("not supported"), never
passed on.  The expressions of %if, %assign and %rep are computed here, as
the lines are read: they may use numbers, single-line macros and the
``equ`` constants defined above them (made of numbers), not labels or
``$``, as in NASM.

Limits, each a one-line error: includes nested ``MAX_INCLUDE_DEPTH`` deep,
``MAX_TOTAL_SOURCE`` bytes of source with every inclusion counted, macros
and %rep blocks nested ``MAX_MACRO_DEPTH`` deep (a macro that calls itself
without end), a %rep count of at most ``MAX_REP``, ``MAX_EXPANDED`` lines
and %rep iterations made by macros and %rep in one assembly, ``MAX_TEXT``
characters of lines changed by macros; a single-line macro expands at most
``smacros.MAX_DEFINE_DEPTH`` deep, into at most ``macros.MAX_LINE`` characters,
with at most ``smacros.MAX_CALLS`` calls for one line.
A listing shows the first ``MAX_ROWS`` lines.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

from ..errors import AsmWarning
from .directives import (
    NOT_SUPPORTED,
    PreEnv,
    after_word,
    define_parts,
    directive,
    one_name,
    string_macro,
)
from .expr import signed64
from .exprparse import parse_expr
from .lexer import Cursor, Loc, clip, tokenize
from .macrocalls import (
    MACRO_WORDS,
    MAX_MACRO_DEPTH,
    Chain,
    ExitMacro,
    MacroCalls,
    context_of,
    read_body_line,
)
from .macros import Macro, pasted, scan, strip_comment
from .ppconditions import CONDITIONALS, Cond, Conditions
from .ppstandard import SECTION_LINE, StandardMacros
from .pptext import TextFunctions, UserWarnings
from .smacros import Expander
from .source import find_include, read_source

MAX_INCLUDE_DEPTH = 16
MAX_TOTAL_SOURCE = 4 << 20  # bytes of source in one assembly, includes counted each time
MAX_EXPANDED = 200_000      # lines and %rep iterations made by macros and %rep
MAX_REP = MAX_EXPANDED      # the largest %rep count
MAX_TEXT = 16 << 20         # characters of lines after macro expansion, in all
MAX_ROWS = 100_000          # lines a listing shows (the rest are assembled, not listed)
Constant = Callable[[str, Loc, int, str], int]   # name, where, column, what -> value

class _ExitRep(Exception):
    """%exitrep: leave the innermost %rep."""


@dataclass(frozen=True)
class Row:
    """One line of a listing: a source line, or a line a macro made."""

    file: str
    line: int
    text: str
    level: int          # 0: read from the file; n: made by n macros / %reps


class Preprocessor(MacroCalls, TextFunctions, StandardMacros, Conditions):
    """Turns source text into the lines to assemble; one per assembly."""

    def __init__(self, include_dirs: tuple[str, ...] = (), listing: bool = False,
                 constant: Constant | None = None):
        self.include_dirs = include_dirs
        self.constant = constant
        self.defines = Expander()
        self.defines.functions = self._functions
        self.macros: dict[str, list[Macro]] = {}
        self.imacros: dict[str, list[Macro]] = {}
        self.source_bytes = 0
        self.warnings: list[AsmWarning] = []     # %warning's, in order
        self.used: set[str] = set()              # %use's packages
        self.user = UserWarnings()               # [warning ...]: what %warning does
        self.expanded = 0
        self.text = 0           # characters of expanded lines
        self.unique = 0
        self.reps = 0           # %rep blocks being expanded (for %exitrep)
        self.expanding: list[Macro] = []   # the macros being expanded, outermost first
        self.rows: list[Row] | None = [] if listing else None
        self.contexts: list[tuple[str, int]] = []   # %push's stack: (name, its number)
        self.frame: list[int] | None = None  # %stacksize flat's next %arg and %local offsets

    def run(self, text: str, display: str, chain: Chain) -> Iterator[Loc]:
        """The lines of ``text``, the file named ``display``; ``chain`` lists
        (real path, name) of it and the files that include it, outermost first."""
        self.source_bytes += len(text)
        split = text.split("\n")
        if len(split) > 1 and split[-1] == "":
            split.pop()                         # (the end of the last line)
        yield from self._block(_joined(split, display), chain, 0)

    # --- a block of lines: a file, a macro body, a %rep body -------------------
    def _block(self, lines: Iterable[Loc], chain: Chain, depth: int) -> Iterator[Loc]:
        conds: list[Cond] = []
        it = iter(lines)
        for loc in it:
            call = loc.call
            if call is not None:                # (parameters as they are now)
                loc = read_body_line(loc)
            if self.rows is not None:
                loc = self._note(loc, depth)
            if depth:
                self._count(loc, 1, len(loc.text))
            word, col = directive(loc.text)
            if word in CONDITIONALS:
                self._conditional(word, col, loc, conds)
                continue
            if word is not None and word.startswith(("if", "elif")):
                # (one NASM knows opens or goes on a block: never passed over)
                self._directive_line(word, col, loc)
            if conds and not all(c.taking for c in conds):
                continue
            if "%$" in loc.text:                # (the context stack as it is now)
                loc = self._in_context(loc)
            if "%[" in loc.text:                # (the macros as they are now)
                loc = self._indirect(loc)
            if word is None:
                yield from self._line(loc, chain, depth)
            elif word in MACRO_WORDS:
                self._define_macro(loc, col, word, it, depth)
            elif word == "rep":
                yield from self._rep(loc, col, it, chain, depth)
            elif word == "include":
                yield from self._include(loc, chain)
            elif word == "use":
                yield from self._use(loc, col, chain)
            elif word == "rotate":
                self._rotate(loc, col, call)
            else:
                self._directive_line(word, col, loc)
        if conds:
            raise conds[-1].at.error(f"%{directive(conds[-1].at.text)[0]} without %endif")

    def _count(self, loc: Loc, lines: int = 1, chars: int = 0) -> None:
        self.expanded += lines
        if self.expanded > MAX_EXPANDED:
            raise loc.error(f"more than {MAX_EXPANDED:,} lines and %rep iterations made by "
                            "macros and %rep (the limit)")
        self.text += chars
        if self.text > MAX_TEXT:
            raise loc.error(f"more than {MAX_TEXT >> 20} MiB of text made by macros "
                            "(the limit)")

    def _note(self, loc: Loc, level: int) -> Loc:
        assert self.rows is not None
        if len(self.rows) >= MAX_ROWS:
            return loc
        self.rows.append(Row(loc.file, loc.line, loc.text, level))
        return replace(loc, row=len(self.rows) - 1)

    def _line(self, loc: Loc, chain: Chain, depth: int) -> Iterator[Loc]:
        text = self.defines.expand(loc.text, loc)
        if "%+" in text:                        # NASM's pasting, then the result read again
            text = self.defines.expand(pasted(text), loc)
        if text is not loc.text:
            loc = replace(loc, text=text)
            self._count(loc, 0, len(text))
        if "%" in text:
            for start, end, kind in scan(text):
                if kind == "macro-ref":
                    ref = text[start:end]
                    raise loc.error(f"'{clip(ref)}' can only be used inside a %macro",
                                    start + 1)
        call = self._macro_call(text)
        if call is not None:
            label, name, col, args_text = call
            macro = self._callee(loc, name, col, args_text)
            if macro is not None:
                yield from self._expand(loc, macro, name, col, args_text, chain, depth, label)
                return
        yield loc
        section = SECTION_LINE.match(text)
        if section is not None:
            yield from self._section_line(loc, section)

    # --- directives ----------------------------------------------------------
    def _directive_line(self, word: str, col: int, loc: Loc) -> None:
        rest, rest_col = after_word(loc.text, col, word)
        if word in ("define", "idefine", "xdefine", "ixdefine"):
            name, params, body = define_parts(rest, rest_col, loc, word)
            if word.endswith("xdefine"):        # the body as it expands now
                body = self.defines.expand(body, loc)
            self.defines.define(name, body, params, fold=word.startswith("i"))
        elif word in ("strlen", "defstr", "idefstr", "strcat", "substr", "deftok"):
            name, _, text = define_parts(rest, rest_col, loc, word, params=False)
            text = self.defines.expand(strip_comment(text), loc).strip()
            body = string_macro(word, name, text, loc, rest_col, self.constant)
            self.defines.define(name, body, fold=word == "idefstr")
        elif word == "undef":
            self.defines.undef(one_name(rest, rest_col, loc, word))
        elif word in ("assign", "iassign"):
            name, _, _ = define_parts(rest, rest_col, loc, word, params=False)
            after = rest_col + len(rest) - len(rest.lstrip()) + len(name)
            value = self._value(loc, after, f"%{word}")
            self.defines.define(name, str(signed64(value)), fold=word == "iassign")
        elif word in ("push", "pop", "repl"):
            self._context_line(word, rest, rest_col, loc)
        elif word in ("stacksize", "arg", "local"):
            self._frame_line(word, rest, rest_col, loc)
        elif word in ("unmacro", "unimacro"):
            self._unmacro(strip_comment(rest), rest_col, loc, word)
        elif word in ("error", "fatal"):
            raise loc.error(f"%{word}: {self._message(rest, loc)}", col)
        elif word == "pragma":
            space = strip_comment(rest).split()[:1]
            if space and space[0].lower() in ("preproc", "asm", "output", "bin"):
                raise loc.error(f"'%pragma {space[0]}' is not supported (it changes what "
                                "is assembled; see docs/language.md)", col)
            # (any other namespace: NASM's listing, limits, debug formats and
            # other output formats' -- nothing a flat binary is made of)
        elif word == "warning":
            if self.user.state == "off":
                return
            e = loc.error(f"%warning: {self._message(rest, loc)}", col)
            if self.user.state == "error":
                raise e
            self.warnings.append(AsmWarning(e.message, e.file, e.line, e.column))
        elif word == "exitrep":
            if not self.reps:
                raise loc.error("%exitrep outside %rep", col)
            raise _ExitRep
        elif word == "exitmacro":
            if not self.expanding:
                raise loc.error("%exitmacro outside a macro", col)
            raise ExitMacro
        elif word in ("endmacro", "endm", "endrep"):
            opening = "%rep" if word == "endrep" else "%macro"
            raise loc.error(f"%{word} without {opening}", col)
        elif word.startswith(("if", "elif")):
            raise loc.error(f"'%{clip(word)}' is not supported (the conditionals are %if, "
                            "%ifdef, %ifidn, %ifidni, %ifid, %ifnum, %ifstr, %iftoken, "
                            "%ifempty, %ifmacro, %ifctx, %ifusing and %ifusable, each with its "
                            "%ifn form, their %elif forms, %else and %endif)", col)
        elif word in NOT_SUPPORTED:
            raise loc.error(f"'%{word}' is not supported (see the language reference, "
                            "docs/language.md)", col)
        else:
            raise loc.error(f"unknown preprocessor directive '%{clip(word)}'", col)

    def _value(self, loc: Loc, col: int, what: str) -> int:
        """The value of the expression that starts at column ``col`` of ``loc``."""
        text = loc.text[:col - 1] + self.defines.expand(strip_comment(loc.text[col - 1:]), loc)
        line = replace(loc, text=text)
        tokens = [t for t in tokenize(line) if t.col >= col]
        cur = Cursor(tokens, line)
        if cur.at_end():
            raise line.error(f"{what} needs a value", col)
        expr = parse_expr(cur)
        if not cur.at_end():
            raise cur.error_here("expected end of line")
        return expr.ev(PreEnv(line, what, self.constant))

    def _include(self, loc: Loc, chain: Chain) -> Iterator[Loc]:
        tokens = tokenize(replace(loc, text=strip_comment(loc.text)))
        cur = Cursor(tokens, loc)
        cur.pos = 2                         # after '%' 'include'
        name_tok = cur.peek()
        if name_tok is None or name_tok.kind != "str":
            raise cur.error_here("expected a file name in quotes after include")
        cur.pos += 1
        if not cur.at_end():
            raise cur.error_here("expected end of line")
        name = name_tok.value.decode("utf-8", "replace")  # type: ignore[union-attr]
        path, searched = find_include(name, loc.file, self.include_dirs)
        if not path:
            where = ", ".join(searched) if searched else "absolute path"
            raise loc.error(f"include file '{clip(name)}' not found (searched: {where})",
                            name_tok.col)
        real = os.path.realpath(path)
        reals = [r for r, _ in chain]
        if real in reals:
            names = [d for _, d in chain[reals.index(real):]]
            raise loc.error("include loop: " + " -> ".join([*names, path]), name_tok.col)
        if len(chain) > MAX_INCLUDE_DEPTH:
            raise loc.error(f"includes nested too deeply (limit {MAX_INCLUDE_DEPTH})",
                            name_tok.col)
        text = read_source(path, path, loc, name_tok.col)
        if self.source_bytes + len(text) > MAX_TOTAL_SOURCE:
            raise loc.error(f"more than {MAX_TOTAL_SOURCE >> 20} MiB of source with this "
                            "include (every inclusion counts)", name_tok.col)
        yield from self.run(text, path, (*chain, (real, path)))

    # --- %rep ------------------------------------------------------------------
    def _rep(self, loc: Loc, col: int, it: Iterator[Loc], chain: Chain,
             depth: int) -> Iterator[Loc]:
        _, rest_col = after_word(loc.text, col, "rep")
        count = signed64(self._value(loc, rest_col, "a %rep count"))
        if count < 0:
            raise loc.error(f"%rep count {count} is negative", rest_col)
        if count > MAX_REP:
            raise loc.error(f"%rep count {count:,} too large (limit {MAX_REP:,})", rest_col)
        body = self._collect(it, loc, depth, ("rep",), ("endrep",))
        if depth >= MAX_MACRO_DEPTH:
            raise loc.error(f"macros and %rep nested too deeply (limit {MAX_MACRO_DEPTH})",
                            col)
        self.reps += 1
        try:
            for i in range(count):
                self._count(loc)
                context = context_of(f"%rep iteration {i + 1} of {count}", loc)
                try:
                    yield from self._block((replace(b, context=context) for b in body),
                                           chain, depth + 1)
                except _ExitRep:
                    break
        finally:
            self.reps -= 1

    def _collect(self, it: Iterator[Loc], start: Loc, depth: int, opening: tuple[str, ...],
                 closing: tuple[str, ...]) -> tuple[Loc, ...]:
        """The lines up to the ``%closing`` (one of its spellings) that
        matches ``start`` (nested blocks of the same kind included)."""
        body: list[Loc] = []
        nest = 0
        for loc in it:
            if self.rows is not None:
                loc = self._note(loc, depth)
            word, _ = directive(loc.text)
            if word in opening:
                nest += 1
            elif word in closing:
                if nest == 0:
                    return tuple(body)
                nest -= 1
            body.append(loc)
        first = directive(start.text)[0]
        raise start.error(f"%{first} without %{closing[0]}", directive(start.text)[1])


def _joined(split: list[str], display: str) -> Iterator[Loc]:
    """The lines of a file, a line that ends in a backslash joined to the
    next one without it (NASM's continuation: before comments are seen, so
    a comment ending in one takes the next line in too).  A joined line is
    at the line number where it begins."""
    first, parts = 0, []
    for n, line in enumerate(split, 1):
        line = line.removesuffix("\r")
        if not parts:
            first = n
        if line.endswith("\\"):
            parts.append(line[:-1])
            continue
        parts.append(line)
        yield Loc(display, first, "".join(parts))
        parts = []
    if parts:
        yield Loc(display, first, "".join(parts))
