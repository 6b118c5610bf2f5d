"""Lexer: one source line -> a list of tokens, in NASM's spelling.

Token kinds::

    ident   a name: [A-Za-z_.?@][A-Za-z0-9_.?@$#~]* (registers, mnemonics,
            directives and symbols alike; the parser tells them apart); a
            leading ``$`` marks a name that would otherwise be a keyword
            (``$eax`` is the symbol eax), as in NASM
    num     an integer literal (see ``parse_number``); ``value`` is the int
    str     a quoted string; ``value`` is its bytes (UTF-8): '...' and "..."
            are taken literally, `...` (backquotes) understands C escapes
    op      punctuation and operators: + - * / // % %% << >> <<< >>> & ^ |
            ~ ! && || ^^ == = != <> < <= > >= ( ) [ ] , : $ $$

A ``;`` outside quotes starts a comment that runs to the end of the line.
Columns are 1-based and count characters (a tab is one column).

``Loc`` says where a line came from and makes errors pointing into it;
``Cursor`` walks one line's tokens for the parsers.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import AsmError

MAX_LITERAL = 1 << 64          # literals must be below this
MAX_CONTEXT = 4                # macro expansions named in an error message
_IDENT_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_.?@")
_IDENT_CHARS = _IDENT_START | frozenset("0123456789$#~")
_NUM_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_$")
_SPACE = frozenset(" \t\r\f\v")
_OPS = ("<=>", "<<<", ">>>", "<<", ">>", "//", "%%", "&&", "||", "^^", "==", "!=", "<>",
        "<=", ">=", "$$", "+", "-", "*", "/", "%", "&", "^", "|", "~", "!", "=", "<",
        ">", "(", ")", "[", "]", ",", ":", "$")
_OPS_BY_CHAR: dict[str, tuple[str, ...]] = {}
for _op in _OPS:                        # longest first, as _OPS lists them
    _OPS_BY_CHAR[_op[0]] = (*_OPS_BY_CHAR.get(_op[0], ()), _op)
_RADIX = {"b": 2, "y": 2, "o": 8, "q": 8, "d": 10, "t": 10, "h": 16, "x": 16}
_DIGITS = "0123456789abcdef"
_ESCAPES = {"'": 39, '"': 34, "`": 96, "\\": 92, "?": 63, "a": 7, "b": 8, "t": 9,
            "n": 10, "v": 11, "f": 12, "r": 13, "e": 27}


@dataclass(frozen=True)
class Loc:
    """Where a source line came from; makes errors that point into it.

    ``context`` is added to every message about the line: for a line a
    macro or ``%rep`` produced, where it was expanded, innermost first
    ("macro 'm' called at f.s:3"; a long chain is cut in the middle).
    ``row`` is the line's row in a listing (-1: no listing is being made).
    ``call``: for a line of a macro's body, the call whose parameters it
    takes when it is read (its text is then as written in the body).
    """

    file: str
    line: int
    text: str
    context: tuple[str, ...] = ()
    row: int = -1
    call: object = None

    def error(self, message: str, column: int = 1) -> AsmError:
        where = [f"in {w}" for w in self.context]
        if len(where) > MAX_CONTEXT:
            where[MAX_CONTEXT - 1:-1] = [f"... {len(where) - MAX_CONTEXT} more ..."]
        suffix = f" ({', '.join(where)})" if where else ""
        return AsmError(message + suffix, self.file, self.line, column, self.text)


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
        """The stored name of a symbol: ``.x`` under label ``f`` is ``f.x``
        (``..@`` names, made by macros, belong to no label)."""
        if name.startswith(".") and not name.startswith("..@"):
            return self.scope + name
        return name


def clip(text: str, limit: int = 40) -> str:
    """``text`` shortened for an error message."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


# The tokens of each line text lexed before (tokens are immutable and depend
# on the text alone): an include file's lines, met again by every program
# that includes it, are lexed once per process.  A line that does not lex
# is never kept (its error names the Loc).
_LEXED: dict[str, tuple[Token, ...]] = {}
LEXED_LIMIT = 50_000


def tokenize(loc: Loc) -> list[Token]:
    """Split ``loc.text`` into tokens; raise AsmError at the first bad one."""
    text = loc.text
    known = _LEXED.get(text)
    if known is not None:
        return list(known)
    out = _tokenize(loc)
    if len(_LEXED) >= LEXED_LIMIT:
        _LEXED.clear()
    _LEXED[text] = tuple(out)
    return out


def _tokenize(loc: Loc) -> list[Token]:
    text = loc.text
    out: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _SPACE:
            i += 1
        elif c == ";":
            break
        elif c in _IDENT_START or (c == "$" and i + 1 < n and text[i + 1] in _IDENT_START):
            j = i + 1
            while j < n and text[j] in _IDENT_CHARS:
                j += 1
            out.append(Token("ident", text[i:j], i + 1))
            i = j
        elif "0" <= c <= "9" or (c == "$" and i + 1 < n and "0" <= text[i + 1] <= "9"):
            j = i + 1
            while j < n and text[j] in _NUM_CHARS:
                j += 1
            word = text[i:j]
            if j < n and text[j] == "." and word[0] != "$":
                raise loc.error(f"floating-point constants are not supported "
                                f"('{clip(word)}.')", i + 1)
            out.append(Token("num", word, i + 1, parse_number(word, loc, i + 1)))
            i = j
        elif c in "\"'`":
            tok, i = _string(loc, i)
            out.append(tok)
        else:
            for op in _OPS_BY_CHAR.get(c, ()):
                if text.startswith(op, i):
                    out.append(Token("op", op, i + 1))
                    i += len(op)
                    break
            else:
                what = (f"byte 0x{ord(c) - 0xDC00:02x}" if "\udc80" <= c <= "\udcff"
                        else f"character {c!r}")     # (a byte %deftok made a token of)
                raise loc.error(f"unexpected {what}", i + 1)
    return out


def parse_number(word: str, loc: Loc, col: int) -> int:
    """Value of an integer literal, spelled as NASM spells them.

    A radix comes from a prefix (``0x`` ``0h`` hex, ``0d`` ``0t`` decimal,
    ``0o`` ``0q`` octal, ``0b`` ``0y`` binary, ``$`` hex when a digit
    follows) or a suffix (``h`` ``x``, ``d`` ``t``, ``o`` ``q``, ``b`` ``y``);
    with both, the larger radix wins, and with neither it is decimal
    (``0200`` is two hundred).  ``_`` may separate digits.
    """
    low = word.lower()
    body = low
    prefix = suffix = 0
    if len(low) > 2 and low[0] == "0" and low[1] in _RADIX:
        prefix = _RADIX[low[1]]
    elif len(low) > 1 and low[0] == "$":
        prefix = 16
    if len(low) > 1 and low[-1] in _RADIX:
        suffix = _RADIX[low[-1]]
    if prefix > suffix:
        radix, body = prefix, low[1:] if low[0] == "$" else low[2:]
    elif suffix > prefix:
        radix, body = suffix, low[:-1]
    else:
        radix = 10
    digits = body.replace("_", "")
    if not digits or any(ch not in _DIGITS[:radix] for ch in digits):
        if "e" in low and radix == 10:
            raise loc.error(f"floating-point constants are not supported ('{clip(word)}')",
                            col)
        raise loc.error(f"bad number '{clip(word)}'", col)
    # A length check first keeps int() away from huge conversions (and from
    # CPython's limit on digits): a literal this long is over 2**64 anyway.
    digits = digits.lstrip("0") or "0"
    if len(digits) > 64 or int(digits, radix) >= MAX_LITERAL:
        raise loc.error(f"number '{clip(word)}' too large (literals must be below 2**64)", col)
    return int(digits, radix)


def _string(loc: Loc, start: int) -> tuple[Token, int]:
    """Lex a quoted string starting at ``start``; return it and the index after."""
    text = loc.text
    quote = text[start]
    end = text.find(quote, start + 1)
    if quote != "`":
        if end < 0:
            raise loc.error("unterminated string", start + 1)
        raw = text[start + 1:end]
        value = raw.encode("utf-8", "surrogateescape")
        return Token("str", text[start:end + 1], start + 1, value, quote), end + 1
    out = bytearray()
    i, n = start + 1, len(text)
    while i < n:
        c = text[i]
        if c == "`":
            return Token("str", text[start:i + 1], start + 1, bytes(out), quote), i + 1
        if c != "\\":
            out += c.encode("utf-8", "surrogateescape")
            i += 1
            continue
        i = _escape(loc, text, i, out)
    raise loc.error("unterminated string", start + 1)


def string_token(text: str) -> bytes:
    """The value of a whole string token's text (its quotes included)."""
    return _string(Loc("<string>", 0, text), 0)[0].value


def _escape(loc: Loc, text: str, i: int, out: bytearray) -> int:
    """Append the value of the escape at ``text[i]`` (a backslash) to ``out``;
    return the index after it."""
    if i + 1 >= len(text):
        raise loc.error("unterminated string", i + 1)
    e = text[i + 1]
    if e in _ESCAPES:
        out.append(_ESCAPES[e])
        return i + 2
    if "0" <= e <= "7":
        j = i + 1
        while j < min(i + 4, len(text)) and "0" <= text[j] <= "7":
            j += 1
        out.append(int(text[i + 1:j], 8) & 0xFF)
        return j
    if e in "xuU":
        width = {"x": 2, "u": 4, "U": 8}[e]
        j = i + 2
        while j < min(i + 2 + width, len(text)) and text[j].lower() in _DIGITS:
            j += 1
        if j == i + 2 or (e != "x" and j != i + 2 + width):
            raise loc.error(f"bad escape: \\{e} needs {'hex digits' if e == 'x' else width}"
                            f"{'' if e == 'x' else ' hex digits'}", i + 1)
        value = int(text[i + 2:j], 16)
        if e == "x":
            out.append(value)
        elif value > 0x10FFFF:
            raise loc.error(f"bad escape: \\{e}{text[i + 2:j]} is not a character", i + 1)
        else:
            out += chr(value).encode("utf-8", "surrogatepass")
        return j
    raise loc.error(f"unknown escape '\\{e}'", i + 1)
