"""Parser: source lines -> a flat list of statements (includes expanded).

Each line is ``[label:] [statement] [; comment]`` where a statement is one of::

    NAME equ EXPR            a constant (also "NAME: equ EXPR")
    org EXPR                 following output goes to address EXPR
    align N [, FILL]         pad to a multiple of N (a power of two)
    db/dw/dd ITEM, ...       data; db also takes strings "..." and '...'
    times N STATEMENT        repeat an instruction or db/dw/dd N times
    %include "file"          (or: include "file") the lines of another file
    MNEMONIC [OP, OP]        an instruction; "rep movsd" etc. are two words

Mnemonics, directives, registers and size keywords ignore case; symbols do
not.  A label starting with ``.`` is local: it is stored as ``outer.name``,
where ``outer`` is the closest non-local label above it (equ constants do
not open a scope), and ``.name`` in an expression means the same thing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .. import isa
from .expr import REGISTERS, Node, parse_expr, uses_here
from .lexer import Cursor, Loc, Token, clip, tokenize
from .operands import (
    ImmOp,
    MemOp,
    Operand,
    encode_insn,
    insn_length,
    parse_operand,
    select_form,
)
from .source import find_include, read_source

MAX_INCLUDE_DEPTH = 16
MAX_TOTAL_SOURCE = 4 << 20  # bytes of source in one assembly, includes counted each time
DATA_WIDTH = {"db": 1, "dw": 2, "dd": 4}
DIRECTIVES = frozenset(("org", "align", "db", "dw", "dd", "times", "equ", "include"))
STRING_INSNS = ("movsd", "stosd", "movsb", "stosb")
RESERVED = frozenset(REGISTERS) | {"byte", "dword", "ptr", "word", "qword"}
Chain = tuple[tuple[str, str], ...]


@dataclass
class Stmt:
    loc: Loc
    col: int              # column of the keyword / name, for errors


@dataclass
class LabelDef(Stmt):
    name: str


@dataclass
class EquDef(Stmt):
    name: str
    expr: Node


@dataclass
class Org(Stmt):
    expr: Node


@dataclass
class Align(Stmt):
    n: Node
    fill: Node | None


@dataclass
class Data(Stmt):
    width: int                             # 1, 2 or 4 bytes per value
    items: list[Node | bytes]              # expressions and (db) strings
    size: int = 0
    uses_here: bool = False

    def encode(self, env) -> bytes:
        out = bytearray()
        bits = self.width * 8
        lo, hi = -(1 << (bits - 1)), (1 << bits) - 1
        name = {1: "db", 2: "dw", 4: "dd"}[self.width]
        for item in self.items:
            if isinstance(item, bytes):
                out += item
                continue
            v = item.ev(env)
            if not lo <= v <= hi:
                raise env.loc.error(f"value {v} out of range for {name} ({lo}..{hi})",
                                    item.start)
            out += (v & hi).to_bytes(self.width, "little")
        return bytes(out)


@dataclass
class Instruction(Stmt):
    row: isa.Insn
    ops: list[Operand]
    size: int = 0
    uses_here: bool = False

    def encode(self, env) -> bytes:
        return encode_insn(self.row, self.ops, env, env.here + self.size)


@dataclass
class Times(Stmt):
    count: Node
    inner: Data | Instruction


@dataclass
class Parser:
    """Turns source text into statements; one instance per assembly."""

    include_dirs: tuple[str, ...] = ()
    stmts: list[Stmt] = field(default_factory=list)
    scope: str = ""
    source_bytes: int = 0

    def parse_file_text(self, text: str, display: str, chain: Chain) -> None:
        """Parse ``text``, the file named ``display``; ``chain`` lists
        (real path, name) of it and of the files that include it, outermost
        first."""
        self.source_bytes += len(text)
        for n, line in enumerate(text.split("\n"), 1):
            line = line.removesuffix("\r")
            self.parse_line(Loc(display, n, line), chain)

    def parse_line(self, loc: Loc, chain: Chain) -> None:
        tokens = tokenize(loc)
        if not tokens:
            return
        cur = Cursor(tokens, loc, self.scope)
        first = tokens[0]
        if first.is_op("%") or (first.is_word("include") and len(tokens) > 1
                                and tokens[1].kind == "str"):
            self._include(cur, chain)
            return
        if first.kind == "ident" and len(tokens) > 1 and tokens[1].is_op(":"):
            cur.pos = 2
            name = self._define_name(first, cur)
            if cur.peek() is not None and cur.peek().is_word("equ"):
                cur.pos += 1
                self._equ(name, first.col, cur)
                return
            if not name.startswith("."):
                self.scope = cur.scope = name
            self.stmts.append(LabelDef(loc, first.col, cur.full_name(name)))
            if cur.at_end():
                return
        elif (first.kind == "ident" and len(tokens) > 1 and tokens[1].is_word("equ")):
            name = self._define_name(first, cur)
            cur.pos = 2
            self._equ(name, first.col, cur)
            return
        self.stmts.append(self._statement(cur, allow_times=True))
        if not cur.at_end():
            raise cur.error_here("expected end of line")

    def _define_name(self, tok: Token, cur: Cursor) -> str:
        if tok.text.lower() in RESERVED:
            raise cur.loc.error(f"'{clip(tok.text)}' is a reserved word, not a symbol name",
                                tok.col)
        return tok.text

    def _equ(self, name: str, col: int, cur: Cursor) -> None:
        expr = parse_expr(cur)
        if not cur.at_end():
            raise cur.error_here("expected end of line")
        self.stmts.append(EquDef(cur.loc, col, cur.full_name(name), expr))

    def _statement(self, cur: Cursor, allow_times: bool) -> Stmt:
        tok = cur.next()
        if tok.kind != "ident":
            raise cur.loc.error(f"expected a mnemonic or directive, found '{clip(tok.text)}'",
                                tok.col)
        word = tok.text.lower()
        loc = cur.loc
        if word == "org":
            return Org(loc, tok.col, parse_expr(cur))
        if word == "align":
            n = parse_expr(cur)
            fill = None
            if cur.at_op(","):
                cur.pos += 1
                fill = parse_expr(cur)
            return Align(loc, tok.col, n, fill)
        if word in DATA_WIDTH:
            return self._data(cur, tok, DATA_WIDTH[word])
        if word == "times":
            if not allow_times:
                raise loc.error("times can only repeat an instruction or db/dw/dd",
                                tok.col)
            count = parse_expr(cur)
            inner_tok = cur.peek()
            inner = self._statement(cur, allow_times=False)
            if not isinstance(inner, (Data, Instruction)):
                raise loc.error("times can only repeat an instruction or db/dw/dd",
                                inner_tok.col if inner_tok else tok.col)
            return Times(loc, tok.col, count, inner)
        if word in DIRECTIVES:
            raise loc.error(f"'{clip(tok.text)}' cannot be used here", tok.col)
        return self._instruction(cur, tok, word)

    def _data(self, cur: Cursor, tok: Token, width: int) -> Data:
        items: list[Node | bytes] = []
        if cur.at_end():
            raise cur.loc.error(f"'{clip(tok.text)}' needs at least one value", tok.col)
        while True:
            item = cur.peek()
            after = cur.peek(1)
            if (item is not None and item.kind == "str" and width == 1
                    and (after is None or after.is_op(","))):
                cur.pos += 1
                items.append(item.value)  # type: ignore[arg-type]
            else:
                items.append(parse_expr(cur))
            if not cur.at_op(","):
                break
            cur.pos += 1
        size = sum(len(it) if isinstance(it, bytes) else width for it in items)
        here = any(not isinstance(it, bytes) and uses_here(it) for it in items)
        return Data(cur.loc, tok.col, width, items, size, here)

    def _instruction(self, cur: Cursor, tok: Token, word: str) -> Instruction:
        mnemonic = isa.JCC_ALIASES.get(word, word)
        if word == "rep":
            nxt = cur.peek()
            if nxt is None or nxt.kind != "ident" or nxt.text.lower() not in STRING_INSNS:
                raise cur.error_here("expected movsd, stosd, movsb or stosb after 'rep'")
            cur.pos += 1
            mnemonic = "rep " + nxt.text.lower()
        if mnemonic not in isa.FORMS:
            hint = ""
            nxt = cur.peek()
            if nxt is not None and nxt.kind == "ident" and (
                    nxt.text.lower() in isa.MNEMONICS or nxt.text.lower() in DIRECTIVES):
                hint = " (a label needs a ':' after its name)"
            raise cur.loc.error(f"unknown mnemonic '{clip(tok.text)}'{hint}", tok.col)
        ops: list[Operand] = []
        if not cur.at_end():
            while True:
                ops.append(parse_operand(cur))
                if not cur.at_op(","):
                    break
                cur.pos += 1
        row = select_form(mnemonic, ops, cur, tok.col)
        here = "rel" in row.operands or any(_op_uses_here(op) for op in ops)
        return Instruction(cur.loc, tok.col, row, ops, insn_length(row, ops), here)

    def _include(self, cur: Cursor, chain: Chain) -> None:
        first = cur.next()
        if first.is_op("%"):
            word = cur.peek()
            if word is None or not word.is_word("include"):
                raise cur.loc.error("unknown directive '%" + (
                    word.text if word is not None else "") + "'", first.col)
            cur.pos += 1
        name_tok = cur.peek()
        if name_tok is None or name_tok.kind != "str":
            raise cur.error_here("expected a file name in quotes after include")
        cur.pos += 1
        if not cur.at_end():
            raise cur.error_here("expected end of line")
        loc = cur.loc
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
        self.parse_file_text(text, path, (*chain, (real, path)))


def _op_uses_here(op: Operand) -> bool:
    if isinstance(op, ImmOp):
        return uses_here(op.expr)
    if isinstance(op, MemOp):
        return any(uses_here(t) for t, _ in op.disp) or (
            op.scale is not None and uses_here(op.scale))
    return False

