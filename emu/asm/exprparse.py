"""Expressions parsed into the tree of ``expr.py``, NASM's way.

Grammar (NASM's operators and precedence, loosest first; binary operators
associate left)::

    expr    := lor
    lor     := lxor { "||" lxor }            logical: 1 or 0
    lxor    := land { "^^" land }
    land    := cmp { "&&" cmp }
    cmp     := or { ("==" | "=" | "!=" | "<>" | "<" | "<=" | ">" | ">=") or }
    or      := xor { "|" xor }
    xor     := and { "^" and }
    and     := shift { "&" shift }
    shift   := sum { ("<<" | ">>" | "<<<" | ">>>") sum }
    sum     := product { ("+" | "-") product }
    product := unary { ("*" | "/" | "//" | "%" | "%%") unary }
    unary   := ("-" | "+" | "~" | "!") unary | primary
    primary := number | 'chars' | symbol | "$" | "$$" | register | "(" expr ")"

Nesting is limited (``MAX_NESTING`` parentheses/unary operators and
``MAX_DEPTH`` levels of tree) so no input can exhaust the Python stack.
"""

from __future__ import annotations

from .expr import ILOG2, REGISTERS, Binary, Cond, Here, Log2, Node, Num, Reg, SegStart, Sym, Unary
from .lexer import Cursor, Loc, Token

MAX_NESTING = 32        # parentheses and unary operators inside each other
MAX_DEPTH = 256         # depth of the expression tree (long operator chains)

_BINARY_PREC = {"||": 1, "^^": 2, "&&": 3, "==": 4, "=": 4, "!=": 4, "<>": 4, "<": 4,
                "<=": 4, ">": 4, ">=": 4, "|": 5, "^": 6, "&": 7, "<<": 8, ">>": 8,
                "<<<": 8, ">>>": 8, "+": 9, "-": 9, "*": 10, "/": 10, "//": 10,
                "%": 10, "%%": 10}
UNSUPPORTED_REGS = frozenset(("cr1", "cs", "ds", "es", "fs", "gs", "ss"))


def parse_expr(cur: Cursor) -> Node:
    """Parse one expression at the cursor (it stops at ``,``, ``]`` etc.)."""
    return _parse_cond(cur, 0)[0]


def _parse_cond(cur: Cursor, nesting: int) -> tuple[Node, int]:
    """``A ? B : C``, NASM's lowest operator (``A ? B : C ? D : E`` is
    ``A ? B : (C ? D : E)``), or an expression without one."""
    node, depth = _parse_binary(cur, 1, nesting)
    tok = cur.peek()
    if tok is None or tok.kind != "ident" or tok.text != "?":
        return node, depth
    if nesting >= MAX_NESTING:
        raise cur.loc.error(f"expression nested too deeply (limit {MAX_NESTING})", tok.col)
    cur.pos += 1
    yes, ydepth = _parse_cond(cur, nesting + 1)
    colon = cur.peek()
    if colon is None or not colon.is_op(":"):
        raise cur.error_here("expected ':' after the value of '?'")
    cur.pos += 1
    no, ndepth = _parse_cond(cur, nesting + 1)
    return Cond(node, yes, no, tok.col), max(depth, ydepth, ndepth) + 1


def _parse_binary(cur: Cursor, min_prec: int, nesting: int) -> tuple[Node, int]:
    left, depth = _parse_unary(cur, nesting)
    while True:
        tok = cur.peek()
        if tok is None or tok.kind != "op" or tok.text not in _BINARY_PREC:
            if tok is not None and tok.is_op("<=>"):
                raise cur.loc.error("'<=>' is not supported (NASM 2.16.01 computes it "
                                    "wrongly: 3 <=> 5 is not -1 there)", tok.col)
            return left, depth
        prec = _BINARY_PREC[tok.text]
        if prec < min_prec:
            return left, depth
        cur.pos += 1
        right, rdepth = _parse_binary(cur, prec + 1, nesting)
        depth = max(depth, rdepth) + 1
        if depth > MAX_DEPTH:
            raise cur.loc.error(f"expression too complex (limit {MAX_DEPTH} levels)",
                                tok.col)
        left = Binary(tok.text, left, right, tok.col)


def _parse_unary(cur: Cursor, nesting: int) -> tuple[Node, int]:
    tok = cur.peek()
    if tok is not None and tok.kind == "op" and tok.text in ("-", "~", "+", "!", "("):
        if nesting >= MAX_NESTING:
            raise cur.loc.error(
                f"expression nested too deeply (limit {MAX_NESTING})", tok.col)
        cur.pos += 1
        if tok.text == "(":
            inner, depth = _parse_cond(cur, nesting + 1)
            cur.expect_op(")", "to close '('")
            inner.start = tok.col
            return inner, depth
        operand, depth = _parse_unary(cur, nesting + 1)
        return Unary(tok.text, operand, tok.col), depth + 1
    return _parse_primary(cur), 1


def _parse_primary(cur: Cursor) -> Node:
    tok = cur.peek()
    if tok is None:
        raise cur.error_here("expected an expression")
    if tok.kind == "num":
        cur.pos += 1
        return Num(tok.value, tok.col)
    if tok.kind == "str":
        cur.pos += 1
        return Num(char_value(tok, cur.loc), tok.col)
    if tok.kind == "ident":
        cur.pos += 1
        if tok.text.startswith("$"):            # $name: always a symbol
            return Sym(cur.full_name(tok.text[1:]), tok.col)
        low = tok.text.lower()
        if low in REGISTERS:
            return Reg(low, tok.col)
        if low in UNSUPPORTED_REGS:
            what = ("the control registers are cr0 cr2 cr3 cr4" if low.startswith("cr")
                    else "segment registers are fixed")
            raise cur.loc.error(f"register '{tok.text}' is not supported ({what})",
                                tok.col)
        if low in UNSUPPORTED_WORDS:
            raise cur.loc.error(f"'{tok.text}' is not supported in expressions "
                                f"({UNSUPPORTED_WORDS[low]})", tok.col)
        if low in ILOG2 and cur.at_op("("):
            cur.pos += 1
            arg = _parse_cond(cur, 0)[0]
            cur.expect_op(")", f"to close {tok.text}(")
            return Log2(ILOG2[low], arg, tok.col)
        return Sym(cur.full_name(tok.text), tok.col)
    if tok.is_op("$"):
        cur.pos += 1
        return Here(tok.col)
    if tok.is_op("$$"):
        cur.pos += 1
        return SegStart(tok.col)
    raise cur.error_here("expected an expression")


UNSUPPORTED_WORDS = {"seg": "a flat binary has no segments",
                     "wrt": "a flat binary has no segments",
                     "?": "'?' follows a value, as in 'A ? B : C'",
                     **{f"__{q}{f}{e}{q}__": "NASM's string functions"
                        for f in ("utf16", "utf32") for e in ("", "le", "be")
                        for q in ("", "?")}}


def char_value(tok: Token, loc: Loc) -> int:
    """Value of a character constant: its bytes, little-endian (at most 8)."""
    data: bytes = tok.value  # type: ignore[assignment]
    if len(data) > 8:
        raise loc.error("a character constant holds at most 8 bytes "
                        "(longer strings only in db, dw, dd and dq)", tok.col)
    return int.from_bytes(data, "little")
