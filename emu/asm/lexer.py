"""Lexer: one source line -> a list of tokens.

Token kinds::

    ident   a name: [A-Za-z_.?@][A-Za-z0-9_.?@$#]*   (registers, mnemonics,
            directives and symbols alike; the parser tells them apart)
    num     an integer literal: 123, 0x7f, 0b101, 0FFh (``_`` may separate
            digits); ``value`` is the int
    str     a double-quoted string "..." or a single-quoted one '...';
            ``value`` is its bytes (UTF-8, escapes applied)
    op      punctuation: + - * / % << >> & ^ | ~ ( ) [ ] , : $ $$

Escapes in both kinds of quotes: \\n \\t \\r \\0 \\\\ \\" \\' \\xHH.
A ``;`` outside quotes starts a comment that runs to the end of the line.
Columns are 1-based and count characters (a tab is one column).

``Loc`` says where a line came from and makes errors pointing into it;
``Cursor`` walks one line's tokens for the parsers.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import AsmError

MAX_LITERAL = 1 << 64          # literals must be below this
_IDENT_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_.?@")
_IDENT_CHARS = _IDENT_START | frozenset("0123456789$#")
_NUM_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_SPACE = frozenset(" \t\r\f\v")
_TWO_CHAR_OPS = ("<<", ">>", "$$")
_ONE_CHAR_OPS = frozenset("+-*/%&^|~()[],:$")
_ESCAPES = {"n": 10, "t": 9, "r": 13, "0": 0, "\\": 92, '"': 34, "'": 39}


@dataclass(frozen=True)
class Loc:
    """Where a source line came from; makes errors that point into it."""

    file: str
    line: int
    text: str

    def error(self, message: str, column: int = 1) -> AsmError:
        return AsmError(message, self.file, self.line, column, self.text)


@dataclass(frozen=True)
class Token:
    kind: str        # "ident", "num", "str" or "op"
    text: str        # the source text of the token
    col: int         # 1-based column of its first character
    value: object = None
    quote: str = ""  # for "str": the quote character used

    def is_op(self, text: str) -> bool:
        return self.kind == "op" and self.text == text

    def is_word(self, word: str) -> bool:
        """An identifier equal to ``word``, ignoring case."""
        return self.kind == "ident" and self.text.lower() == word


class Cursor:
    """A position in one line's tokens, with the helpers every parser needs."""

    def __init__(self, tokens: list[Token], loc: Loc, scope: str = ""):
        self.tokens = tokens
        self.pos = 0
        self.loc = loc
        self.scope = scope  # the non-local label that ``.name`` is under

    def peek(self, ahead: int = 0) -> Token | None:
        i = self.pos + ahead
        return self.tokens[i] if i < len(self.tokens) else None

    def next(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise self.loc.error("unexpected end of line", self.end_col())
        self.pos += 1
        return tok

    def at_end(self) -> bool:
        return self.pos >= len(self.tokens)

    def at_op(self, text: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.is_op(text)

    def expect_op(self, text: str, what: str) -> Token:
        tok = self.peek()
        if tok is None or not tok.is_op(text):
            raise self.error_here(f"expected '{text}' {what}")
        self.pos += 1
        return tok

    def end_col(self) -> int:
        """The column just after the last token (for "end of line" errors)."""
        if not self.tokens:
            return 1
        last = self.tokens[-1]
        return last.col + len(last.text)

    def error_here(self, message: str) -> AsmError:
        """An error at the current token: '<message>, found <token>'."""
        tok = self.peek()
        if tok is None:
            return self.loc.error(message + ", found end of line", self.end_col())
        return self.loc.error(f"{message}, found '{clip(tok.text)}'", tok.col)

    def full_name(self, name: str) -> str:
        """The stored name of a symbol: ``.x`` under label ``f`` is ``f.x``."""
        return self.scope + name if name.startswith(".") else name


def clip(text: str, limit: int = 40) -> str:
    """``text`` shortened for an error message."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def tokenize(loc: Loc) -> list[Token]:
    """Split ``loc.text`` into tokens; raise AsmError at the first bad one."""
    text = loc.text
    out: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _SPACE:
            i += 1
        elif c == ";":
            break
        elif c in _IDENT_START:
            j = i + 1
            while j < n and text[j] in _IDENT_CHARS:
                j += 1
            out.append(Token("ident", text[i:j], i + 1))
            i = j
        elif "0" <= c <= "9":
            j = i + 1
            while j < n and text[j] in _NUM_CHARS:
                j += 1
            word = text[i:j]
            out.append(Token("num", word, i + 1, parse_number(word, loc, i + 1)))
            i = j
        elif c in "\"'":
            tok, i = _string(loc, i)
            out.append(tok)
        elif text.startswith(_TWO_CHAR_OPS, i):
            out.append(Token("op", text[i:i + 2], i + 1))
            i += 2
        elif c in _ONE_CHAR_OPS:
            out.append(Token("op", c, i + 1))
            i += 1
        else:
            raise loc.error(f"unexpected character {c!r}", i + 1)
    return out


def parse_number(word: str, loc: Loc, col: int) -> int:
    """Value of an integer literal (see the module doc for the forms)."""
    low = word.replace("_", "").lower()
    if low.endswith("h") and _all_in(low[:-1], _HEX):
        digits, base = low[:-1], 16
    elif low.startswith("0x") and _all_in(low[2:], _HEX):
        digits, base = low[2:], 16
    elif low.startswith("0b") and _all_in(low[2:], "01"):
        digits, base = low[2:], 2
    elif _all_in(low, "0123456789"):
        digits, base = low, 10
    else:
        raise loc.error(f"bad number '{clip(word)}'", col)
    # A length check first keeps int() away from huge conversions (and from
    # CPython's limit on digits): a literal this long is over 2**64 anyway.
    digits = digits.lstrip("0") or "0"
    if len(digits) > 64 or int(digits, base) >= MAX_LITERAL:
        raise loc.error(f"number '{clip(word)}' too large (literals must be below 2**64)", col)
    return int(digits, base)


_HEX = "0123456789abcdef"


def _all_in(s: str, allowed: str) -> bool:
    return len(s) > 0 and all(ch in allowed for ch in s)


def _string(loc: Loc, start: int) -> tuple[Token, int]:
    """Lex a quoted string starting at ``start``; return it and the index after."""
    text = loc.text
    quote = text[start]
    out = bytearray()
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == quote:
            return Token("str", text[start:i + 1], start + 1, bytes(out), quote), i + 1
        if c == "\\":
            if i + 1 >= n:
                break
            e = text[i + 1]
            if e in _ESCAPES:
                out.append(_ESCAPES[e])
                i += 2
            elif e == "x":
                hexd = text[i + 2:i + 4]
                if len(hexd) != 2 or not _all_in(hexd.lower(), "0123456789abcdef"):
                    raise loc.error("bad escape: \\x needs two hex digits", i + 1)
                out.append(int(hexd, 16))
                i += 4
            else:
                raise loc.error(f"unknown escape '\\{e}'", i + 1)
        else:
            out += c.encode("utf-8", "surrogatepass")
            i += 1
    raise loc.error("unterminated string", start + 1)
