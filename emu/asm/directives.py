"""The lines of ``%`` directives: recognising one and reading its arguments.

Helpers of ``preproc``; each reports a malformed argument at its column.
"""

from __future__ import annotations

import re
from dataclasses import replace

from ..errors import AsmError
from .exprparse import parse_expr
from .lexer import Cursor, Loc, clip, string_token, tokenize
from .macros import quoted, scan, strip_comment

NOT_SUPPORTED = frozenset((
    "defalias", "undefalias",
    "line", "clear",
    "depend", "while", "endwhile", "exitwhile",
    "pathsearch", "null", "aliases"))
# A token of %ifidn's texts: a string, a word or number, one other character
# (white space between tokens is not compared, as in NASM).
_TOKEN = re.compile(r"""'[^']*'|"[^"]*"|`(?:[^`\\]|\\.)*`|[A-Za-z0-9_.$@?#~]+|\S""")


def same_text(a: str, b: str, fold: bool, loc: Loc, col: int) -> bool:
    """%ifidn (``fold``: %ifidni): the same tokens, white space aside; a
    string is its value, whatever its quotes (NASM's: 'a' and "a" are the
    same text, 'a\\n' and `a\\n` are not), compared without case too by
    %ifidni."""
    return _compared(a, fold, loc, col) == _compared(b, fold, loc, col)


def _compared(text: str, fold: bool, loc: Loc, col: int) -> list:
    out: list = []
    for tok in _TOKEN.findall(text):
        if len(tok) > 1 and tok[0] in "'\"`" and tok[-1] == tok[0]:
            try:
                value = string_token(tok)
            except AsmError as e:
                raise loc.error(f"{e.message} (in {clip(tok)})", col) from None
            out.append((value.lower() if fold else value,))
        else:
            out.append(tok.lower() if fold else tok)
    return out


def token_test(test: str, text: str) -> bool:
    """%ifid, %ifnum, %ifstr (``test`` id, num, str): the first token of
    ``text`` is an identifier, a number (not an expression), a string;
    %iftoken: the text is one token; %ifempty: it has none."""
    tokens = _TOKEN.findall(text)
    if test in ("token", "empty"):
        return len(tokens) == (1 if test == "token" else 0)
    if test == "num":               # (a sign before the number, as NASM takes)
        while tokens and tokens[0] in "+-":
            tokens = tokens[1:]
    if not tokens:
        return False
    first = tokens[0]
    if test == "str":
        return first[0] in "'\"`"
    if test == "num":
        return first[0].isdigit() or (first[0] == "$" and len(first) > 1
                                      and first[1].isdigit())
    return first not in ("$", "$$") and (first[0].isalpha() or first[0] in "_.?@" or (
        first[0] == "$" and len(first) > 1 and not first[1].isdigit()))


def two_texts(rest: str, col: int, loc: Loc, word: str) -> tuple[str, str]:
    """The two comma-separated texts of %ifidn (a comma inside a string or
    brackets does not count)."""
    depth = 0
    inside = _in_strings(rest)
    for i, c in enumerate(rest):
        if inside[i]:
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            return rest[:i], rest[i + 1:]
    raise loc.error(f"%{word} needs two texts separated by a comma", col)


def directive(text: str) -> tuple[str | None, int]:
    """(lower-case word, column of its '%') when ``text`` is a ``%`` directive."""
    stripped = text.lstrip(" \t")
    if len(stripped) < 2 or stripped[0] != "%" or not stripped[1].isalpha():
        return None, 0
    j = 1
    while j < len(stripped) and (stripped[j].isalnum() or stripped[j] == "_"):
        j += 1
    return stripped[1:j].lower(), len(text) - len(stripped) + 1


def after_word(text: str, col: int, word: str) -> tuple[str, int]:
    """The text after ``%word`` at ``col``, and its column."""
    start = col + len(word)         # (0-based index just after the word)
    return text[start:], start + 1


def is_name(text: str) -> bool:
    return bool(text) and (text[0].isalpha() or text[0] in "_.?@$") and all(
        c.isalnum() or c in "_.?@$#~" for c in text)


def one_name(rest: str, col: int, loc: Loc, word: str) -> str:
    name = strip_comment(rest).strip()
    if not is_name(name):
        raise loc.error(f"%{word} needs one macro name", col)
    return name


def define_parts(rest: str, col: int, loc: Loc, word: str,
                  params: bool = True) -> tuple[str, tuple[str, ...] | None, str]:
    """(name, parameters or None, body) of ``%define name(a, b) body``."""
    text = strip_comment(rest)
    lead = len(text) - len(text.lstrip())
    text = text.strip()
    j = 0
    while j < len(text) and (text[j].isalnum() or text[j] in "_.?@$#~"):
        j += 1
    name = text[:j]
    if not is_name(name):
        raise loc.error(f"%{word} needs a macro name", col + lead)
    plist: tuple[str, ...] | None = None
    body = text[j:]
    if params and body.startswith("("):
        close = body.find(")")
        if close < 0:
            raise loc.error(f"%{word} {name}(: expected ')'", col + lead + j)
        plist = tuple(p.strip() for p in body[1:close].split(",")) if body[1:close].strip() \
            else ()
        if not all(is_name(p) for p in plist):
            raise loc.error(f"%{word} {name}: parameters must be names", col + lead + j)
        body = body[close + 1:]
    return name, plist, body.strip()


def param_count(spec: str, loc: Loc, col: int) -> tuple[int, int | None, bool]:
    """(lowest, highest or None for ``*``, greedy) from ``N``, ``N-M``,
    ``N-*`` with an optional ``+``, and NASM's ``.nolist`` after them (which
    keeps a macro's lines out of NASM's listing: ignored here)."""
    if spec.lower().endswith(".nolist"):
        spec = spec[:-len(".nolist")]
    greedy = spec.endswith("+")
    spec = spec.rstrip("+")
    lo_text, _, hi_text = spec.partition("-")
    try:
        lo = int(lo_text)
        hi = None if hi_text == "*" else int(hi_text) if hi_text else lo
    except ValueError:
        raise loc.error(f"bad parameter count '{clip(spec)}' (write N, N-M or N-*)",
                        col) from None
    if lo < 0 or (hi is not None and hi < lo) or lo > 1000 or (hi or 0) > 1000:
        raise loc.error(f"bad parameter count '{clip(spec)}'", col)
    return lo, hi, greedy


class PreEnv:
    """Evaluation at preprocessing time: numbers, and the equ constants
    defined above the line (``constant``); no labels, no ``$``."""

    def __init__(self, loc: Loc, what: str, constant):
        self.loc, self.what, self.constant = loc, what, constant
        self.section = None

    def lookup(self, name: str, col: int) -> int:
        if self.constant is not None:
            return self.constant(name, self.loc, col, self.what)
        raise self.loc.error(f"{self.what} must be known before assembly: '{clip(name)}' "
                             "is not defined by %define or %assign", col)

    def lookup_rel(self, name: str, col: int) -> dict:
        self.lookup(name, col)
        return {}                           # (a constant made of numbers)

    @property
    def here(self) -> int:
        raise self.loc.error(f"'$' has no value in {self.what}: the preprocessor runs "
                             "before any address is known")

    seg_start = here


# --- the string directives: %strlen, %defstr, %strcat, %substr ----------------------

def token_text(value: bytes) -> str:
    """A string's bytes as text to read as tokens (%deftok, %tok()): UTF-8
    as a source line is, any other byte kept as it is (the lexer gives a
    string's bytes back exactly)."""
    return value.decode("utf-8", "surrogateescape")


def string_macro(word: str, name: str, text: str, loc: Loc, col: int, constant) -> str:
    """The body %strlen, %defstr (%idefstr), %strcat, %substr or %deftok gives
    ``name``; ``text``: what follows it, macros expanded; ``constant``: the
    equ constants above, for %substr's numbers."""
    if word.endswith("defstr"):
        return quoted(one_space(text).encode())
    line = replace(loc, text=text)
    cur = Cursor(tokenize(line), line)
    strings = []
    while True:
        tok = cur.peek()
        if tok is None or tok.kind != "str":
            raise loc.error(f"%{word} {name} needs a quoted string, not '{clip(text)}'", col)
        cur.pos += 1
        strings.append(tok.value)
        if word != "strcat" or not cur.at_op(","):
            break
        cur.pos += 1
    if word == "deftok":
        if any(b < 32 and b != 9 for b in strings[0]):
            raise loc.error(f"%deftok {name}: the string holds a control character", col)
        value = token_text(strings[0])
    elif word == "strlen":
        value = str(len(strings[0]))
    elif word == "strcat":
        value = quoted(b"".join(strings))
    else:
        value = quoted(_substring(strings[0], cur, line, name, constant))
    if not cur.at_end():
        raise loc.error(f"%{word} {name}: expected end of line after '{clip(text)}'", col)
    return value


def _substring(string: bytes, cur: Cursor, line: Loc, name: str, constant) -> bytes:
    """%substr's START[, LENGTH] (1-based; a negative LENGTH counts back
    from the end: -1 is up to the last character)."""
    if cur.at_end():
        raise line.error(f"%substr {name} needs a start after the string")
    env = PreEnv(line, "%substr", constant)
    start = parse_expr(cur).ev(env)
    length = 1
    if cur.at_op(","):
        cur.pos += 1
        length = parse_expr(cur).ev(env)
    return substring(string, start, length)


def substring(string: bytes, start: int, length: int) -> bytes:
    """NASM's substring: from ``start`` (1-based; below 1 is 1, as NASM
    takes it), ``length`` bytes, a negative length counting back from the
    end (-1: up to the last byte)."""
    rest = string[max(start, 1) - 1:]
    if length < 0:
        length = max(len(rest) + length + 1, 0)
    return rest[:length]


def one_space(text: str) -> str:
    """``text`` with each run of white space outside strings made one space
    (its tokens, as NASM puts them back together)."""
    out, space = [], False
    inside = _in_strings(text)
    for i, c in enumerate(text):
        if not inside[i] and c in " \t":
            space = True
            continue
        if space:
            out.append(" ")
            space = False
        out.append(c)
    return "".join(out)


def _in_strings(text: str) -> list[bool]:
    """For each character of ``text`` (comment-stripped): whether it is part
    of a string, quotes included -- ``scan``'s strings (a backquoted
    string's escaped backquote does not end it)."""
    inside = [False] * len(text)
    for start, end, kind in scan(text):
        if kind == "str":
            inside[start:end] = [True] * (end - start)
    return inside
