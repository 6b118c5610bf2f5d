"""Macros: NASM's multi-line macros (``%macro``), and the scanning of a line
they and the single-line macros (``smacros.py``) need.

A multi-line macro is called by its name at the start of a line (after an
optional ``label:``); its arguments are separated by commas, and braces
group one that holds commas (``{a, b}``).  In the body, ``%1`` .. ``%N``
(or ``%{N}``) are the arguments, ``%0`` their number and ``%%name`` a
label of this expansion alone (it becomes ``..@N.name``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .lexer import Loc, clip

MAX_LINE = 1 << 16          # characters in a line after expansion
_ID_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_.?@")
_ID_CHARS = _ID_START | frozenset("0123456789$#~")
_NUM_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_$")


@dataclass(frozen=True)
class Macro:
    """A multi-line macro: ``%macro name lo[-hi][+] [defaults]`` .. ``%endmacro``."""

    name: str
    lo: int
    hi: int | None                      # None: any number (``*``)
    greedy: bool                        # ``+``: the last parameter takes the rest
    defaults: tuple[str, ...]
    body: tuple[Loc, ...]               # the lines, as written
    at: Loc                             # the %macro line
    recursive: bool = False             # %rmacro: it may be called from its own lines

    @property
    def takes_label(self) -> bool:
        """Whether the body reads ``%00``, the label before a call: then the
        call passes that label and does not define it (as in NASM)."""
        return any(kind == "macro-ref" and line.text[start:end] == "%00"
                   for line in self.body if "%00" in line.text
                   for start, end, kind in scan(line.text))

    def takes(self, n: int) -> bool:
        return n >= self.lo and (self.greedy or self.hi is None or n <= self.hi)

    def shape(self) -> str:
        if self.hi == self.lo:
            return str(self.lo) + ("+" if self.greedy else "")
        return f"{self.lo}-{'*' if self.hi is None else self.hi}" + ("+" if self.greedy else "")


def scan(text: str, i: int = 0):
    """The pieces of a line (from ``i``, where a piece begins): (start, end,
    kind), kind one of "id", "str", "num", "comment" or "other" (anything
    else, one character at a time, ``%`` with what makes it a macro
    reference: ``%1``, ``%%x``, ``%{1}``)."""
    n = len(text)
    while i < n:
        c = text[i]
        if c == ";":
            yield i, n, "comment"
            return
        if c in "\"'`":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if c == "`" and text[j] == "\\" else 1
            yield i, min(j + 1, n), "str"
            i = j + 1
        elif c in _ID_START or (c == "$" and i + 1 < n and text[i + 1] in _ID_START):
            j = i + 1
            while j < n and text[j] in _ID_CHARS:
                j += 1
            yield i, j, "id"
            i = j
        elif "0" <= c <= "9":
            j = i + 1
            while j < n and text[j] in _NUM_CHARS:
                j += 1
            yield i, j, "num"
            i = j
        elif c == "%" and i + 1 < n and text[i + 1] not in " \t(":
            j = i + 1
            if text[j] == "%" and j + 1 < n and text[j + 1] in _ID_START:
                j += 1
                while j < n and text[j] in _ID_CHARS:
                    j += 1
            elif text[j] == "{":
                close = text.find("}", j)
                j = close + 1 if close > 0 else n
            elif text[j].isdigit():
                while j < n and text[j].isdigit():
                    j += 1
            elif text[j] in "+-" and j + 1 < n and text[j + 1].isdigit():
                j += 1                          # %+1, %-1: a parameter as a condition
                while j < n and text[j].isdigit():
                    j += 1
            elif text[j] == "$":                # %$name, %$$name: a context's own
                while j < n and text[j] == "$":
                    j += 1
                while j < n and text[j] in _ID_CHARS:
                    j += 1
            elif text[j] == "?":                # %?, %??: the macro's name
                j += 2 if j + 1 < n and text[j + 1] == "?" else 1
            elif text[j] in "+!-[":
                j += 1
            else:
                yield i, i + 1, "other"
                i += 1
                continue
            yield i, j, "macro-ref"
            i = j
        else:
            yield i, i + 1, "other"
            i += 1


def strip_comment(text: str) -> str:
    """``text`` without its comment."""
    if ";" not in text:
        return text
    for start, _, kind in scan(text):
        if kind == "comment":
            return text[:start]
    return text


def quoted(value: bytes) -> str:
    """``value`` as NASM quotes a string it makes: in single quotes when it
    has none, else in double quotes, else in backquotes with escapes."""
    text = value.decode("latin-1")
    plain = all(32 <= b < 127 for b in value)
    if plain and "'" not in text:
        return f"'{text}'"
    if plain and '"' not in text:
        return f'"{text}"'
    out = "".join(c if 32 <= ord(c) < 127 and c not in "`\\" else
                  "\\" + c if c in "`\\" else f"\\x{ord(c):02x}" for c in text)
    return f"`{out}`"


def split_args(text: str, maxsplit: int = -1) -> list[str]:
    """A macro call's arguments: split at commas outside braces and strings
    (at most ``maxsplit`` times when it is not -1); braces around a whole
    argument are removed."""
    text = strip_comment(text)
    if not text.strip():
        return []
    args, cur, depth = [], 0, 0
    for start, end, kind in scan(text):
        if kind != "other":
            continue
        ch = text[start]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth = max(depth - 1, 0)
        elif ch == "," and depth == 0 and len(args) != maxsplit:
            args.append(text[cur:start])
            cur = end
    args.append(text[cur:])
    out = []
    for a in args:
        a = a.strip()
        if len(a) >= 2 and a[0] == "{" and a[-1] == "}":
            a = a[1:-1]
        out.append(a)
    return out


def pasted(text: str) -> str:
    """``text`` with NASM's ``%+`` done: the tokens on either side of it
    joined, the blanks around it gone (``lab %+ el`` is ``label``)."""
    out: list[str] = []
    joining = False
    for start, end, kind in scan(text):
        piece = text[start:end]
        if kind == "macro-ref" and piece == "%+":
            while out and out[-1] in (" ", "\t"):
                out.pop()
            joining = True
            continue
        if joining and piece in (" ", "\t"):
            continue
        joining = False
        out.append(piece)
    return "".join(out)


# x86's conditions and their opposites (NASM's %-1 turns one into the other).
_OPPOSITE = {"a": "na", "ae": "nae", "b": "nb", "be": "nbe", "c": "nc", "e": "ne",
             "g": "ng", "ge": "nge", "l": "nl", "le": "nle", "o": "no", "p": "np",
             "s": "ns", "z": "nz", "pe": "po"}
_OPPOSITE.update({v: k for k, v in list(_OPPOSITE.items())})


def condition(args: list[str], n: int, opposite: bool, loc: Loc, col: int) -> str:
    """``%+N`` (``%-N``: ``opposite``): parameter N as a condition code
    (its opposite), in lower case, as NASM writes it."""
    cc = args[n - 1].strip().lower() if 0 < n <= len(args) else ""
    if cc not in _OPPOSITE:
        raise loc.error(f"'%{'-' if opposite else '+'}{n}' needs a condition code "
                        f"(e, ne, a, be ...), not '{clip(cc)}'", col)
    return _OPPOSITE[cc] if opposite else cc


_RANGE = re.compile(r"(-?\d+):(-?\d+)")


def param_range(piece: str, args: list[str], count: int, loc: Loc, col: int) -> str:
    """``%{A:B}``: parameters A to B (backwards when B < A; -1 is the last),
    joined by commas, as NASM writes them."""
    a, b = (int(x) for x in _RANGE.fullmatch(piece[2:-1]).groups())  # type: ignore[union-attr]
    a, b = (count + 1 + x if x < 0 else x for x in (a, b))
    if not (1 <= a <= count and 1 <= b <= count):
        raise loc.error(f"'{clip(piece)}': macro parameters out of range (the call has "
                        f"{count})", col)
    step = 1 if b >= a else -1
    return ",".join(args[i - 1] for i in range(a, b + step, step))


def expand_body_line(text: str, args: list[str], count: int, unique: int,
                     loc: Loc, names: tuple[str, str] = ("", ""), label: str = "") -> str:
    """One line of a macro body with ``%N``, ``%{N}``, ``%0``, ``%%name``,
    ``%+N``/``%-N``, ``%?``/``%??`` (``names``: the macro's name as called
    and as defined) and ``%00`` (``label``: the label before the call)
    replaced for the call ``unique`` with ``args``."""
    if "%" not in text:
        return text
    out = []
    for start, end, kind in scan(text):
        piece = text[start:end]
        if kind != "macro-ref":
            out.append(piece)
            continue
        if piece.startswith("%%"):
            out.append(f"..@{unique}.{piece[2:]}")
        elif piece == "%00":
            out.append(label)
        elif piece[1:].isdigit() or (piece.startswith("%{") and piece[2:-1].isdigit()):
            n = int(piece[1:] if piece[1] != "{" else piece[2:-1])
            out.append(str(count) if n == 0 else args[n - 1] if n <= len(args) else "")
        elif piece.startswith("%{") and _RANGE.fullmatch(piece[2:-1]):
            out.append(param_range(piece, args, count, loc, start + 1))
        elif piece[1] in "+-" and piece[2:].isdigit():
            out.append(condition(args, int(piece[2:]), piece[1] == "-", loc, start + 1))
        elif piece in ("%?", "%??"):
            out.append(names[len(piece) - 2])
        elif piece.startswith("%$") or piece in ("%+", "%["):
            out.append(piece)                   # (read with the line: the context stack's,
            #                                      pasting, indirect expansion)
        else:
            raise loc.error(f"'{clip(piece)}' is not supported in macros (parameters are "
                            "%1 .. %N, %{A:B}, %+N, %-N, %0, %00, %?, %?? and %%label)",
                            start + 1)
        if len(out) % 64 == 0 and sum(map(len, out)) > MAX_LINE:
            break
    result = "".join(out)
    if len(result) > MAX_LINE:
        raise loc.error(f"line too long after macro expansion (limit {MAX_LINE:,} "
                        "characters)", 1)
    return result
