"""NASM's structures: a layout declared with ``struc``/``endstruc``, an
instance of it written with ``istruc``/``at``/``iend``.

    struc proc                    proc equ 0 (or the offset after the name)
    .pid:    resd 1               proc.pid equ 0
    .name:   resb 12              proc.name equ 4
             alignb 4             (the next field's offset a multiple of 4)
    .state:  resd 1               proc.state equ 16
    endstruc                      proc_size equ 20

    table: istruc proc            the fields in order, each padded with zeros
        at proc.pid,  dd 1        to its offset from the start; iend pads to
        at proc.name, db "init"   proc_size
    iend

A field is a constant (an offset, not an address), local to the structure's
name as a label's local labels are to it.  The sizes inside a struc are
expressions of numbers and equ constants, defined above or below as for any
equ; only labels, ``resb``/``resw``/``resd``/``resq`` and ``alignb`` (of a
number known where it is read) may be inside one.  An ``at`` that goes
backwards -- fields out of order, or data longer than its field -- is an
error, as NASM's negative ``times`` is.
"""

from __future__ import annotations

from dataclasses import dataclass

from .directives import PreEnv
from .expr import Binary, Here, Node, Num, SegStart, Sym, Unary
from .exprparse import parse_expr
from .image import HIDDEN_OFFSET
from .lexer import Cursor, Loc, Token, clip
from .stmts import RES_WIDTH, Data, EquDef, LabelDef, Times

# Data words whose items may be left unset (``dd ?``) inside a struc.
_UNSET = {"db": 1, "dw": 2, "dd": 4, "dq": 8}

STRUCT_WORDS = ("struc", "endstruc", "istruc", "at", "iend", "absolute")


@dataclass
class Layout:
    """The struc being read (or the absolute section: no name), where it
    was opened, and the expressions of its first offset and of the next
    field's."""

    name: str | None
    loc: Loc
    col: int
    base: Node
    offset: Node
    start: Node | None = None      # its first offset's constant (what ``$$`` asks)


@dataclass
class Instance:
    """The istruc being written: its structure and its start's hidden label."""

    name: str
    loc: Loc
    col: int
    start: str


class Structures:
    """The structure directives of one assembly (``Parser`` asks)."""

    def __init__(self, parser):
        self.parser = parser
        self.layout: Layout | None = None
        self.instance: Instance | None = None
        self.closed: Layout | None = None   # the struc the line before closed
        self.made = self.steps = 0

    # --- struc ... endstruc ----------------------------------------------------------
    def layout_line(self, tokens: list[Token], cur: Cursor) -> bool:
        """Read the line if it opens a struc or an absolute section, or is
        inside one."""
        first = tokens[0]
        word = first.text.lower() if first.kind == "ident" else ""
        # (after endstruc, where NASM goes back to __?SECT?__, an absolute
        # section's '$' is the struc's end)
        before, self.closed = self.layout or self.closed, None
        if self.layout is not None and self.layout.name is None and word in (
                "section", "segment", "absolute", "struc"):
            self.layout = None                  # the absolute section ends here
        if self.layout is None:
            if word == "absolute":
                cur.pos = 1
                self._absolute(cur, first, before)
                return True
            if word != "struc":
                return False
            cur.pos = 1
            self._open(cur, first)
            return True
        if word == "endstruc" and self.layout.name is None:
            raise cur.loc.error("'endstruc' without 'struc'", first.col)
        if word == "endstruc":
            cur.pos = 1
            self._end_here(cur)
            self._close(cur, first)
            return True
        if word == "struc":
            raise cur.loc.error(f"'struc' inside struc '{clip(self.layout.name)}' "
                                "(close it with endstruc first)", first.col)
        if any(t.is_word("equ") for t in tokens[1:3]):
            return False                        # a constant: the parser's, as anywhere
        self._field(tokens, cur)
        return True

    def _absolute(self, cur: Cursor, tok: Token, before: Layout | None) -> None:
        """``absolute ADDR``: what follows, up to the next section, places
        nothing -- its labels are constants from ADDR on (NASM's way to name
        the places of a layout: a buffer at a fixed address, a table).
        ``before``: the absolute section this one follows, where ``$`` in
        ADDR is."""
        if cur.at_end():
            raise cur.error_here("expected an address after 'absolute'")
        base = parse_expr(cur)
        if before is not None:
            base = placed(base, before)
        self._end_here(cur)
        self.layout = Layout(None, cur.loc, tok.col, base, base)
        self.made += 1
        self._advance(base, cur, tok.col)
        self.layout.start = self.layout.offset

    def _open(self, cur: Cursor, tok: Token) -> None:
        name_tok = cur.peek()
        if name_tok is None or name_tok.kind != "ident":
            raise cur.error_here("expected the structure's name after 'struc'")
        cur.pos += 1
        name = self.parser._define_name(name_tok, cur)
        if name.startswith("."):
            raise cur.loc.error(f"a structure's name cannot be local ('{clip(name)}')",
                                name_tok.col)
        base: Node = Num(0, tok.col)
        if cur.at_op(","):
            cur.pos += 1
            base = parse_expr(cur)
        self._end_here(cur)
        self.layout = Layout(name, cur.loc, tok.col, base, base)
        self.parser.scope = cur.scope = name
        self._constant(name, base, cur, name_tok.col)
        self.made += 1
        self._advance(base, cur, tok.col)
        self.layout.start = self.layout.offset

    def _field(self, tokens: list[Token], cur: Cursor) -> None:
        """``[label[:]] [resX N | alignb N]`` inside a struc or an absolute
        section (a label without its colon before resX or alignb only)."""
        first = tokens[0]
        parser = self.parser
        has_label = first.kind == "ident" and len(tokens) > 1 and (
            tokens[1].is_op(":") or tokens[1].kind == "ident"
            and tokens[1].text.lower() in (*RES_WIDTH, *_UNSET, "alignb"))
        if has_label:
            name = parser._define_name(first, cur)
            cur.pos = 2 if len(tokens) > 1 and tokens[1].is_op(":") else 1
            if not name.startswith("."):
                parser.scope = cur.scope = name
            self._constant(cur.full_name(name), self.layout.offset, cur, first.col)
        if cur.at_end():
            return
        tok = cur.next()
        word = tok.text.lower() if tok.kind == "ident" else ""
        offset = self.layout.offset
        if word in RES_WIDTH:
            count = placed(parse_expr(cur), self.layout)
            self._advance(Binary("+", offset, Binary("*", Num(RES_WIDTH[word], tok.col), count,
                                                     tok.col), tok.col), cur, tok.col)
        elif word in _UNSET and self._unset(cur):
            # dd ?, ?: as many items left unset, as NASM takes it in a struc
            count = Num(self._unset(cur, take=True), tok.col)
            self._advance(Binary("+", offset, Binary("*", Num(_UNSET[word], tok.col), count,
                                                     tok.col), tok.col), cur, tok.col)
        elif word == "alignb":
            n = parse_expr(cur).ev(PreEnv(cur.loc, "an alignb in a struc",
                                          self.parser.constant))
            if n <= 0 or n & (n - 1):
                raise cur.loc.error(f"alignb {n} is not a power of two", tok.col)
            up = Binary("+", offset, Num(n - 1, tok.col), tok.col)
            self._advance(Binary("*", Binary("/", up, Num(n, tok.col), tok.col),
                                 Num(n, tok.col), tok.col), cur, tok.col)
        elif self.layout.name is None:
            raise cur.loc.error(
                f"only labels, resb ... resz and alignb can follow 'absolute', not "
                f"'{clip(tok.text)}' (it places nothing: a 'section' line goes back to "
                "code and data)", tok.col)
        else:
            raise cur.loc.error(
                f"only labels, resb ... resz and alignb can be inside struc "
                f"'{clip(self.layout.name)}', not '{clip(tok.text)}' (its fields are "
                "offsets: the bytes go in an istruc)", tok.col)
        self._end_here(cur)

    @staticmethod
    def _unset(cur: Cursor, take: bool = False) -> int:
        """How many ``?`` items, and nothing else, the rest of the line is
        (0: it is something else); ``take`` moves the cursor past them."""
        pos, n = cur.pos, 0
        while True:
            tok = cur.peek()
            if tok is None or tok.kind != "ident" or tok.text != "?":
                cur.pos = pos
                return 0
            cur.pos += 1
            n += 1
            if cur.at_end():
                break
            if not cur.at_op(","):
                cur.pos = pos
                return 0
            cur.pos += 1
        if not take:
            cur.pos = pos
        return n

    def _close(self, cur: Cursor, tok: Token) -> None:
        layout, self.layout = self.layout, None
        self.closed = layout
        self._constant(f"{layout.name}_size",
                       Binary("-", layout.offset, layout.base, tok.col), cur, tok.col)

    def _advance(self, offset: Node, cur: Cursor, col: int) -> None:
        """The next field is at ``offset``: a hidden constant of its own
        (each offset an equ of the one before, not one long expression)."""
        self.steps += 1
        name = f"{HIDDEN_OFFSET}{self.made}.{self.steps}"
        self._constant(name, offset, cur, col)
        self.layout.offset = Sym(name, col)

    def here(self, value: Node) -> Node:
        """An ``equ``'s expression as NASM reads it where the parser is:
        inside a struc or an absolute section, ``$`` is the place there."""
        return value if self.layout is None else placed(value, self.layout)

    def _constant(self, name: str, value: Node, cur: Cursor, col: int) -> None:
        stmt = EquDef(cur.loc, col, name, value)
        parser = self.parser
        parser.equs.setdefault(name, stmt)
        parser.stmts.append(stmt)

    # --- istruc ... at ... iend ----------------------------------------------------------
    def instance_statement(self, word: str, tok: Token, cur: Cursor) -> None:
        """``istruc NAME``, ``at FIELD[, STMT]`` or ``iend`` (after any label)."""
        parser = self.parser
        if word == "endstruc":
            raise cur.loc.error("'endstruc' without 'struc'", tok.col)
        if word == "absolute":
            raise cur.loc.error("'absolute' must begin its line", tok.col)
        if word == "istruc":
            if self.instance is not None:
                raise cur.loc.error(f"'istruc' inside istruc '{clip(self.instance.name)}' "
                                    "(close it with iend first)", tok.col)
            name_tok = cur.peek()
            if name_tok is None or name_tok.kind != "ident":
                raise cur.error_here("expected the structure's name after 'istruc'")
            cur.pos += 1
            self.made += 1
            start = f"..@istruc.{self.made}"       # (a ..@ label opens no scope)
            self.instance = Instance(name_tok.text, cur.loc, tok.col, start)
            parser.label_names.add(start)
            parser.stmts.append(LabelDef(cur.loc, tok.col, start))
            return
        inst = self.instance
        if inst is None:
            raise cur.loc.error(f"'{tok.text}' outside istruc", tok.col)
        if word == "at":
            field_tok = cur.peek()
            if field_tok is None:
                raise cur.error_here("expected a field after 'at'")
            target = Binary("-", parse_expr(cur), Sym(inst.name, field_tok.col), field_tok.col)
            self._pad_to(target, inst.start, cur, tok.col)
            if cur.at_op(","):
                cur.pos += 1
                if cur.at_end():
                    raise cur.error_here("expected data after ','")
                stmt = parser._statement(cur, allow_times=True)
                if stmt is not None:
                    parser.stmts.append(stmt)
            return
        self.instance = None                    # iend
        self._pad_to(Sym(f"{inst.name}_size", tok.col), inst.start, cur, tok.col)

    def _pad_to(self, offset: Node, start: str, cur: Cursor, col: int) -> None:
        """Zeros from here to ``offset`` bytes past the istruc's ``start``."""
        done = Binary("-", Here(col), Sym(start, col), col)
        count = Binary("-", offset, done, col)
        zero = Data(cur.loc, col, 1, [Num(0, col)], 1)
        self.parser.stmts.append(Times(cur.loc, col, count, zero))

    def finish(self) -> None:
        """The end of the program: nothing may be left open (but an
        absolute section, which ends there)."""
        if self.layout is not None and self.layout.name is not None:
            raise self.layout.loc.error(f"struc '{clip(self.layout.name)}' has no endstruc",
                                        self.layout.col)
        if self.instance is not None:
            raise self.instance.loc.error(f"istruc '{clip(self.instance.name)}' has no iend",
                                          self.instance.col)

    @staticmethod
    def _end_here(cur: Cursor) -> None:
        if not cur.at_end():
            raise cur.error_here("expected end of line")



def placed(node: Node, layout: Layout) -> Node:
    """``node`` read inside a struc or an absolute section, as NASM reads
    it there: ``$`` is the place in it (the next field's offset) and ``$$``
    the start of the space it counts in (``LayoutStart``)."""
    if isinstance(node, Here):
        return Sym(layout.offset.name, node.col)
    if isinstance(node, SegStart):
        return LayoutStart(layout.start, node.col)
    if isinstance(node, Unary):
        return Unary(node.op, placed(node.operand, layout), node.col)
    if isinstance(node, Binary):
        out = Binary(node.op, placed(node.left, layout), placed(node.right, layout), node.col)
        out.start = node.start
        return out
    return node


class LayoutStart(Node):
    """``$$`` inside a struc or an absolute section: 0 where it starts at a
    number (NASM's absolute space), the section's ``$$`` where it starts at
    a place in the section it is in (``absolute $``, ``absolute label``)."""

    __slots__ = ("first",)

    def __init__(self, first: Node, col: int):
        self.first = first
        self.col = self.start = col

    def _relative(self, env) -> bool:
        rel = self.first.rel(env)
        if rel and rel != {env.section: 1}:
            raise env.loc.error("'$$' inside an absolute section that starts in another "
                                "section is not supported", self.col)
        return bool(rel)

    def ev(self, env) -> int:
        return env.seg_start if self._relative(env) else 0

    def rel(self, env) -> dict:
        return {env.section: 1} if self._relative(env) else {}
