"""The preprocessor's text-making parts (a part of ``Preprocessor``):
NASM 2.16's preprocessor functions (``%eval(...)`` ...), ``%[...]``, the
messages of ``%error``/``%warning``, and ``[warning ...]``'s control of
``%warning``."""

from __future__ import annotations

from dataclasses import replace

from ..errors import AsmError
from .directives import one_space, substring, token_text
from .expr import signed64
from .lexer import Loc, tokenize
from .macros import quoted, scan, strip_comment
from .smacros import call_args

# NASM 2.16's preprocessor functions that are here, and those refused by name.
FUNCTIONS = frozenset(("eval", "abs", "num", "str", "strlen", "strcat", "tok", "cond", "sel",
                       "count", "is", "isn", *(f"is{n}{c}" for n in ("", "n") for c in (
                           "def", "idn", "idni", "id", "num", "str", "token", "empty",
                           "macro", "ctx", "using", "usable")),
                       "substr", "hex", "map", "chr", "depend", "pathsearch", "realpath",
                       "isenv", "isnenv"))
REFUSED_FUNCTIONS = frozenset(("hex", "map", "chr", "depend", "pathsearch",
                               "realpath", "isenv", "isnenv"))


class UserWarnings:
    """NASM's control of ``%warning`` by ``[warning ...]`` (the assembler
    reads those lines, in order with the preprocessor's): ``-user`` (or
    ``-all``) silences it, ``+user`` says it again, ``+error=user`` (or
    ``error``) makes it an error and ``-error=user`` a warning again,
    ``*user`` the default; ``push`` and ``pop`` keep and restore the state.
    Other classes are taken and change nothing: emu says no other warning."""

    def __init__(self):
        self.state = "on"               # on, off or error
        self.stack: list[str] = []

    def apply(self, spec: str) -> None:
        s = spec.lower()
        if s == "push":
            self.stack.append(self.state)
            return
        if s == "pop":
            if self.stack:
                self.state = self.stack.pop()
            return
        sign = s[0] if s[:1] in ("+", "-", "*") else ""
        s = s[len(sign):]
        error = s == "error" or s.startswith("error=")
        name = "all" if s == "error" else s.removeprefix("error=")
        if name not in ("user", "all"):
            return
        if error:
            self.state = "on" if sign == "-" else "error" if sign != "*" else "on"
        else:
            self.state = "off" if sign == "-" else "on"


class TextFunctions:
    """What ``Preprocessor`` makes of text (a mixin: it uses the
    preprocessor's ``defines``, ``_value``, ``_condition`` and ``_count``)."""

    def _functions(self, text: str, loc: Loc, col: int) -> str:
        """``text`` with each call of a preprocessor function replaced by what
        it makes (``%NAME(...)``, the name in any case, as NASM has them)."""
        out, pos = [], 0
        pieces = list(scan(text))
        for k, (start, end, kind) in enumerate(pieces[:-1]):
            if start < pos or kind != "other" or text[start] != "%":
                continue
            nstart, nend, nkind = pieces[k + 1]
            name = text[nstart:nend].lower()
            if nkind != "id" or nstart != end or name not in FUNCTIONS:
                continue
            got = call_args(text, nend)
            if got is None:
                continue
            _, after = got
            inner = text[text.index("(", nend) + 1:after - 1]
            out += [text[pos:start], self._function(name, inner, loc, col or start + 1)]
            pos = after
        if not out:
            return text
        out.append(text[pos:])
        return "".join(out)

    def _indirect(self, loc: Loc) -> Loc:
        """The line with each ``%[TEXT]`` replaced by TEXT with its
        single-line macros expanded, before the line is read (as NASM
        does: ``%define reg%[i] ...`` defines reg3 when i is 3)."""
        text, out, pos = loc.text, [], 0
        for start, _, kind in scan(text):
            if kind != "macro-ref" or text[start:start + 2] != "%[" or start < pos:
                continue
            depth, end = 0, -1
            for i in range(start + 1, len(text)):
                if text[i] == "[":
                    depth += 1
                elif text[i] == "]":
                    depth -= 1
                    if depth == 0:
                        end = i
                        break
            if end < 0:
                raise loc.error("'%[' without its ']'", start + 1)
            inner = self._indirect(replace(loc, text=text[start + 2:end])).text
            out += [text[pos:start], self.defines.expand(inner, loc).strip()]
            pos = end + 1
        out.append(text[pos:])
        expanded = "".join(out)
        self._count(loc, 0, len(expanded))
        return replace(loc, text=expanded)

    def _message(self, rest: str, loc: Loc) -> str:
        """The message of an %error, %fatal or %warning line: its text with
        single-line macros expanded -- the string alone, unquoted, when it
        is one string (as NASM prints it)."""
        text = self.defines.expand(strip_comment(rest), loc).strip()
        try:
            tokens = tokenize(replace(loc, text=text))
        except AsmError:
            return text
        if len(tokens) == 1 and tokens[0].kind == "str":
            return tokens[0].value.decode("utf-8", "replace")  # type: ignore[union-attr]
        return text

    # --- NASM's preprocessor functions -------------------------------------------
    def _function(self, name: str, inner: str, loc: Loc, col: int) -> str:
        """What ``%name(inner)`` makes, as NASM 2.16 makes it: a number, a
        string or the text of an argument (expanded further by the caller)."""
        if name in REFUSED_FUNCTIONS:
            raise loc.error(f"'%{name}()' is not supported (NASM's preprocessor functions "
                            "here are %eval, %abs, %num, %str, %strlen, %strcat, %substr, "
                            "%tok, %cond, %sel, %count and %is...; see docs/language.md)", col)
        what = f"%{name}()"
        got = call_args("(" + inner + ")", 0)
        args = got[0] if got is not None else [inner]

        def number(text: str) -> int:
            try:
                return signed64(self._value(replace(loc, text=" " + text), 2, what))
            except AsmError as e:
                raise loc.error(e.message if e.message.startswith(what) else
                                f"{what}: {e.message}", col) from None

        def string(text: str) -> bytes:
            """A string's bytes; anything else, its text (as NASM takes it)."""
            text = self.defines.expand(text, loc).strip()
            tokens = tokenize(replace(loc, text=text))
            if len(tokens) == 1 and tokens[0].kind == "str":
                return tokens[0].value      # type: ignore[return-value]
            return text.encode()

        def count(lo: int, hi: int) -> None:
            if not lo <= len(args) <= hi:
                raise loc.error(f"{what} takes {lo}" + (f" to {hi}" if hi > lo else "")
                                + f" arguments, not {len(args)}", col)

        if name == "eval":
            return ",".join(str(number(a)) for a in args)
        if name == "abs":
            count(1, 1)
            return str(abs(number(args[0])))
        if name == "num":
            count(1, 3)
            value = number(args[0]) & ((1 << 64) - 1)
            digits = number(args[1]) if len(args) > 1 else -1
            base = number(args[2]) if len(args) > 2 else 10
            if not 2 <= base <= 36:
                raise loc.error(f"invalid base {base} given to %num() (2 to 36)", col)
            text = ""                       # (0 has no digits of its own)
            while value:
                text = "0123456789abcdefghijklmnopqrstuvwxyz"[value % base] + text
                value //= base
            if digits > 0:                  # exactly so many: padded, or the last ones
                text = text.rjust(digits, "0")[-digits:]
            elif digits < 0 and not text:   # (the default: at least one)
                text = "0"
            return quoted(text.encode())
        if name == "str":
            return quoted(one_space(self.defines.expand(inner, loc)).strip().encode())
        if name == "strlen":
            count(1, 1)
            return str(len(string(args[0])))
        if name == "strcat":
            return quoted(b"".join(string(a) for a in args))
        if name == "substr":                # (to the end unless a length is given)
            count(2, 3)
            length = number(args[2]) if len(args) > 2 else -1
            return quoted(substring(string(args[0]), number(args[1]), length))
        if name == "tok":
            count(1, 1)
            return token_text(string(args[0]))
        if name == "cond":
            count(2, 3)
            return args[1] if number(args[0]) else (args[2] if len(args) > 2 else "")
        if name == "sel":
            n = number(args[0])
            if not 1 <= n < len(args):
                raise loc.error(f"%sel({n}) exceeds the number of arguments "
                                f"({len(args) - 1})", col)
            return args[n]
        if name == "count":
            return str(len(args))
        kind = "if" + name[2:]              # %isdef(...) is %ifdef's test, as a number
        return str(int(self._condition(kind, kind, 1, replace(loc, text=f"%{kind} {inner}"))))
