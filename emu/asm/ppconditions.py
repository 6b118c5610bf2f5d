"""The preprocessor's conditionals: ``%if`` and its family, ``%elif...``,
``%else``, ``%endif`` (a mixin of ``Preprocessor``).

``_conditional`` keeps the stack of open ``%if`` blocks (``Cond``): which
branch runs, whether one ran; a condition is evaluated only where its
branch could run (an error in a branch not taken is never seen, as in
NASM, but for ``%elif``: see docs/language.md).  ``_condition`` gives the
value of each test: a number (``%if``), a macro defined, two texts the
same (``%ifidn``), a token's kind, a context, a macro with so many
parameters, a ``%use`` package.
"""

from __future__ import annotations

from dataclasses import dataclass

from .directives import after_word, is_name, same_text, token_test, two_texts
from .lexer import Loc
from .macros import strip_comment

TOKEN_TESTS = ("id", "num", "str", "token", "empty")
CONDITIONS = ("", "n", "def", "ndef", "idn", "idni", "nidn", "nidni", *TOKEN_TESTS,
              *(f"n{t}" for t in TOKEN_TESTS), "macro", "nmacro", "ctx", "nctx", "using",
              "nusing", "usable", "nusable")
CONDITIONALS = frozenset((*(f"{w}{c}" for w in ("if", "elif") for c in CONDITIONS), "else",
                          "endif"))


@dataclass
class Cond:
    """One open %if: which of its branches run."""

    taking: bool        # lines of the current branch are assembled
    taken: bool         # some branch of this %if was taken
    at: Loc
    seen_else: bool = False


class Conditions:
    """The conditionals of a ``Preprocessor`` (it has ``defines``,
    ``contexts``, ``_value``, ``_in_context``, ``_using`` and
    ``_is_macro``)."""

    def _conditional(self, word: str, col: int, loc: Loc, conds: list[Cond]) -> None:
        outer = all(c.taking for c in conds[:-1]) if word.startswith(("el", "end")) \
            else all(c.taking for c in conds)
        if word.startswith("if"):
            value = outer and self._condition(word, word, col, loc)
            conds.append(Cond(value, value or not outer, loc))
            return
        if not conds:
            raise loc.error(f"%{word} without %if", col)
        top = conds[-1]
        if word == "endif":
            conds.pop()
        elif top.seen_else:
            raise loc.error(f"%{word} after %else", col)
        elif word == "else":
            top.taking, top.taken, top.seen_else = not top.taken, True, True
        else:
            value = not top.taken and outer and self._condition(word[2:], word, col, loc)
            top.taking = value
            top.taken = top.taken or value

    def _condition(self, kind: str, word: str, col: int, loc: Loc) -> bool:
        """The value of %if/%ifdef/%ifndef (``kind``), written ``%word``."""
        if "%$" in loc.text:
            loc = self._in_context(loc)
        rest, rest_col = after_word(loc.text, col, word)
        if kind in ("if", "ifn"):
            return (self._value(loc, rest_col, f"%{word}") != 0) != (kind == "ifn")
        if kind.endswith(("idn", "idni")):
            a, b = two_texts(self.defines.expand(strip_comment(rest), loc), rest_col, loc, word)
            return same_text(a, b, kind.endswith("i"), loc, rest_col) != kind.startswith("ifn")
        if kind.endswith("ctx"):
            names = strip_comment(rest).split()
            if not names or not all(is_name(n) for n in names):
                raise loc.error(f"%{word} needs context names", rest_col)
            top = self.contexts[-1][0] if self.contexts else None
            return (top in names) != (kind == "ifnctx")
        if kind.endswith(("using", "usable")):
            return self._using(kind, rest, rest_col, loc, word)
        if kind.endswith("macro"):
            return self._is_macro(strip_comment(rest), rest_col, loc, word) != (
                kind == "ifnmacro")
        negated = kind[2:] not in TOKEN_TESTS and kind[3:] in TOKEN_TESTS
        test = kind[3:] if negated else kind[2:]
        if test in TOKEN_TESTS:
            return token_test(test, self.defines.expand(strip_comment(rest), loc)) != negated
        name = strip_comment(rest).strip()
        if not name or not is_name(name):
            raise loc.error(f"%{word} needs one macro name", rest_col)
        return self.defines.defined(name) == (kind == "ifdef")
