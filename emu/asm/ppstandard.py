"""NASM's standard macros, as the preprocessor honours them (a part of
``Preprocessor``): what NASM's ``section``, ``segment``, ``absolute`` and
``endstruc`` macros do with ``__?SECT?__``, and the packages of ``%use``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

from .directives import after_word
from .lexer import Loc, clip
from .macrocalls import Chain
from .macros import strip_comment

# A line NASM's standard macros read: section, segment and absolute (which
# define __?SECT?__ as the directive in brackets, its operands' spaces made
# one), endstruc (which goes back to it); a label may come first, with or
# without its colon.
SECTION_LINE = re.compile(r"\s*(?:[A-Za-z_.?$@][\w.?$@#~]*(?:\s*:\s*|\s+))?"
                          r"(section|segment|absolute|endstruc)\b(.*)", re.I | re.S)
PACKAGE_NAME = re.compile(r"([\"'`])(\w+)\1|(\w+)")
# NASM's standard macro packages (%use NAME): those here, as the source they
# are read as, and those refused (what they define cannot be honoured).
PACKAGES = {
    "ifunc": "%define __?USE_IFUNC?__\n%idefine ilog2(x) (__?ilog2e?__(x))\n" + "\n".join(
        f"%idefine ilog2{k}(x) (__?ilog2{k}?__(x))" for k in ("e", "w", "f", "c", "fw", "cw")),
}
REFUSED_PACKAGES = {"altreg": "64-bit register names", "fp": "floating-point constants",
                    "masm": "MASM's syntax",
                    "smartalign": "its align pads with long nops, 0F 1F and 66 90, which "
                                  "this machine does not have"}


class StandardMacros:
    """(a mixin: it uses the preprocessor's ``defines``, ``used`` and
    ``run``)"""

    def _section_line(self, loc: Loc, match: re.Match) -> Iterator[Loc]:
        """After a section, segment or absolute line, ``__?SECT?__`` is it,
        in brackets (a user's definition of it ends); after ``endstruc``,
        the line ``__?SECT?__`` is, as the macro is then (a user's
        definition too) -- NASM's standard macros.  ``match``: the line's
        match of ``SECTION_LINE``."""
        word, rest = match.group(1).lower(), " ".join(strip_comment(match.group(2)).split())
        if word == "endstruc":
            yield replace(loc, text=self.defines.expand("__?SECT?__", loc))
        elif rest:
            self.defines.section(f"[{word} {rest}]")

    def _using(self, kind: str, rest: str, col: int, loc: Loc, word: str) -> bool:
        """``%ifusing NAME`` (``ifusable``, ``ifnusing`` ...): a package read
        (one there is)."""
        name = package_name(rest, col, loc, word)
        known = name in (self.used if kind.endswith("using") else
                         (*PACKAGES, *REFUSED_PACKAGES))
        return known != kind.startswith("ifn")

    def _use(self, loc: Loc, col: int, chain: Chain) -> Iterator[Loc]:
        """``%use NAME``: one of NASM's standard macro packages, read (once)
        as the source NASM's is -- and, as in NASM's listing, not listed."""
        rest, rest_col = after_word(loc.text, col, "use")
        name = package_name(rest, rest_col, loc, "use")
        if name in REFUSED_PACKAGES:
            raise loc.error(f"'%use {name}' is not supported ({REFUSED_PACKAGES[name]})", col)
        if name not in PACKAGES:
            raise loc.error(f"unknown %use package '{clip(name)}' (ifunc)", col)
        if name not in self.used:
            self.used.add(name)
            rows, self.rows = self.rows, None
            try:
                yield from self.run(PACKAGES[name], f"<{name}>", chain)
            finally:
                self.rows = rows


def package_name(rest: str, col: int, loc: Loc, word: str) -> str:
    """The package a %use (%ifusing ...) line names: a word, quoted or not,
    alone (NASM warns of what follows it and passes it over)."""
    text = strip_comment(rest).strip()
    if not text:
        raise loc.error(f"%{word} needs a package name", col)
    match = PACKAGE_NAME.fullmatch(text)
    if match is None:
        raise loc.error(f"%{word} takes one package name, not '{clip(text)}'",
                        col + len(rest) - len(rest.lstrip()))
    return (match.group(2) or match.group(3)).lower()
