"""Parser: the preprocessed lines -> a flat list of statements.

Each line is ``[label[:]] [statement] [; comment]`` where a statement is::

    NAME equ EXPR              a constant (also "NAME: equ EXPR")
    org EXPR                   the program's origin (one value per program)
    section NAME [ATTRS]       (or segment) where what follows goes; see
                               sections.py for .text, .data, .bss and the
                               attributes start= vstart= align= follows=
                               progbits nobits
    bits 32                    (or use32) the only mode the machine has
    align N [, STMT]           pad with STMT (default nop) to a multiple of
                               N from the section's start; alignb pads with
                               reserved space (default resb 1)
    db/dw/dd/dq ITEM, ...      data: expressions and strings
    resb/resw/resd/resq N      reserve N items (zeros outside a nobits section;
                               rest, reso, resy, resz: 10, 16, 32, 64 bytes each)
    incbin "FILE" [,SKIP[,N]]  a file's bytes, as data (found as %include's)
    times N STMT               repeat an instruction, data or reservation
    global NAME, ...           accepted and ignored (a flat binary links nothing)
    cpu NAME                   instructions of a later x86 than NAME are refused
    MNEMONIC [OP, OP]          an instruction; "rep movsd" etc. are two words

``[bits 32]``, ``[section .x]`` and ``[org N]`` (NASM's primitive forms)
mean the same.  A label without a colon is allowed before a statement
(``msg db "hi"``).  Mnemonics, directives, registers and size keywords
ignore case; symbols do not.  A label starting with ``.`` is local: it is
stored as ``outer.name``, where ``outer`` is the closest non-local label
above it (equ constants and ``..@`` labels made by macros do not open a
scope), and ``.name`` in an expression means the same thing.  NASM words
outside this subset are refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import isa
from .expr import REGISTERS, Node, signed64
from .exprparse import parse_expr
from .lexer import Cursor, Loc, Token, clip, tokenize
from .operands import Operand, insn_length, parse_operand, select_form
from .parsedirs import DirectiveStatements
from .stmts import (
    RES_WIDTH,
    Align,
    Data,
    EquDef,
    Instruction,
    LabelDef,
    Org,
    Reserve,
    Stmt,
    Times,
)
from .structs import STRUCT_WORDS, Structures

DATA_WIDTH = {"db": 1, "dw": 2, "dd": 4, "dq": 8}
# Directives NASM also takes in its primitive form, in brackets ([bits 32]).
BRACKETED = frozenset(("bits", "section", "segment", "org", "use32", "global", "absolute",
                       "extern", "common", "static", "cpu", "default", "warning", "map",
                       "float", "sectalign"))
DIRECTIVES = frozenset(("org", "align", "alignb", "times", "equ", "section", "segment",
                        "bits", "use32", "global", "incbin", "cpu", "default", "sectalign",
                        *DATA_WIDTH,
                        *RES_WIDTH, *STRUCT_WORDS))
NOT_SUPPORTED = {
    "dt": "10-byte floats", "do": "16-byte data", "dy": "32-byte data", "dz": "64-byte data",
    "extern": "a flat binary links nothing",
    "common": "a flat binary links nothing", "static": "a flat binary links nothing",
    "retf": "far returns: there are no segments",
    "float": "floats", "warning": "NASM takes it in brackets: [warning -user]",
    "map": "map files",
    "use16": "16-bit code", "use64": "64-bit code", "group": "segment groups",
    "list": "listing control",
    # prefixes (rep/repe/repz and repne/repnz are read with their instruction)
    "lock": "the LOCK prefix: one CPU, no bus to lock",
    "o16": "operand-size prefixes", "o32": "operand-size prefixes",
    "a16": "address-size prefixes", "a32": "address-size prefixes",
    "xacquire": "lock elision", "xrelease": "lock elision",
    # 16-bit operands: no form here; named because cbw, cwde and cdq are here
    "cwd": "16-bit operands: it writes dx; cdq sign-extends eax into edx",
}
# The repeat prefixes: F3 (rep, repe, repz: one prefix, rep on movs and stos,
# repe on cmps and scas) and F2 (repne, repnz: cmps and scas only; on movs
# and stos x86 leaves it undefined).  Each makes one row with its instruction.
REP_WORDS = ("rep", "repe", "repz", "repne", "repnz")
F2_WORDS = ("repne", "repnz")
STRING_INSNS = (*isa.MOVE_STRINGS, *isa.COMPARE_STRINGS)
RESERVED = frozenset(REGISTERS) | {"byte", "dword", "ptr", "word", "qword", "strict", "nosplit"}
KEYWORDS = DIRECTIVES | isa.MNEMONICS | frozenset(isa.ALIASES) | set(REP_WORDS) | set(NOT_SUPPORTED)


@dataclass
class Parser(DirectiveStatements):
    """Turns preprocessed lines into statements; one instance per assembly."""

    stmts: list[Stmt] = field(default_factory=list)
    scope: str = ""
    equs: dict[str, EquDef] = field(default_factory=dict)    # so far
    label_names: set[str] = field(default_factory=set)       # so far
    include_dirs: tuple[str, ...] = ()                       # incbin looks there too
    cpu: int = 9                                             # the cpu line's level
    user_warnings: object = None                             # [warning ...] (preproc's)
    sectalign: bool = True          # align raises its section's alignment (sectalign on)

    def __post_init__(self):
        self.structs = Structures(self)

    def finish(self) -> None:
        """The program's last line was read: nothing may be left open."""
        self.structs.finish()

    def constant(self, name: str, loc: Loc, col: int, what: str) -> int:
        """The value of the equ constant ``name``, defined above, made of
        numbers and such constants alone (NASM's preprocessor may use those
        in %if, %rep and %assign)."""
        return self._known(loc, col, what).lookup(name, col)

    def known(self, expr: Node, loc: Loc, col: int, what: str) -> int:
        """The value of ``expr``, made of numbers and equ constants defined
        above (``constant``), as a 64-bit signed number."""
        return signed64(expr.ev(self._known(loc, col, what)))

    def _known(self, loc: Loc, col: int, what: str):
        """The environment ``constant`` and ``known`` evaluate in."""
        resolving: set[str] = set()
        parser = self

        class Env:
            section = None

            def __init__(self, at: Loc):
                self.loc = at

            @property
            def here(self) -> int:
                raise loc.error(f"{what} must be a number known before assembly, "
                                "not an address", col)

            seg_start = here

            def lookup(self, sym: str, at_col: int) -> int:
                if sym in parser.label_names:
                    raise loc.error(f"{what} must be a number known before assembly: "
                                    f"'{clip(sym)}' is a label (an address)", col)
                stmt = parser.equs.get(sym)
                if stmt is None:
                    raise loc.error(f"{what} must be known before assembly: '{clip(sym)}' "
                                    "is not defined above this line (%define, %assign or "
                                    "equ)", col)
                if sym in resolving:
                    raise loc.error(f"circular definition: '{clip(sym)}' depends on itself",
                                    col)
                resolving.add(sym)
                try:
                    return stmt.expr.ev(Env(stmt.loc))
                finally:
                    resolving.discard(sym)

            lookup_rel = lookup
        return Env(loc)

    def parse_line(self, loc: Loc) -> None:
        tokens = tokenize(loc)
        if not tokens:
            return
        if tokens[0].is_op("[") and tokens[-1].is_op("]") and len(tokens) > 2 and \
                tokens[1].kind == "ident" and tokens[1].text.lower() in BRACKETED:
            tokens = tokens[1:-1]               # [bits 32]: NASM's primitive form
            if tokens[0].text.lower() == "warning":
                if self.user_warnings is not None:
                    self.user_warnings.apply("".join(t.text for t in tokens[1:]))
                return
        cur = Cursor(tokens, loc, self.scope)
        if self.structs.layout_line(tokens, cur):
            return
        first = tokens[0]
        if first.kind == "ident" and len(tokens) > 1 and tokens[1].is_op(":"):
            cur.pos = 2
            name = self._define_name(first, cur)
            if cur.peek() is not None and cur.peek().is_word("equ"):
                cur.pos += 1
                self._equ(name, first.col, cur)
                return
            self._label(name, first.col, cur)
            if cur.at_end():
                return
        elif first.kind == "ident" and len(tokens) > 1 and tokens[1].is_word("equ"):
            name = self._define_name(first, cur)
            cur.pos = 2
            self._equ(name, first.col, cur)
            return
        elif (first.kind == "ident" and len(tokens) > 1 and tokens[1].kind == "ident"
              and first.text.lower() not in KEYWORDS
              and tokens[1].text.lower() in KEYWORDS):
            cur.pos = 1                           # "msg db ...": a label without ':'
            self._label(self._define_name(first, cur), first.col, cur)
        stmt = self._statement(cur, allow_times=True)
        if stmt is not None:
            self.stmts.append(stmt)
        if not cur.at_end():
            raise cur.error_here("expected end of line")

    def _label(self, name: str, col: int, cur: Cursor) -> None:
        if not name.startswith("."):
            self.scope = cur.scope = name
        self.label_names.add(cur.full_name(name))
        self.stmts.append(LabelDef(cur.loc, col, cur.full_name(name)))

    def _define_name(self, tok: Token, cur: Cursor) -> str:
        name = tok.text[1:] if tok.text.startswith("$") else tok.text
        if not tok.text.startswith("$") and tok.text.lower() in RESERVED:
            raise cur.loc.error(f"'{clip(tok.text)}' is a reserved word, not a symbol name",
                                tok.col)
        if name.startswith("..") and not name.startswith("..@"):
            raise cur.loc.error(f"'{clip(name)}' is not supported (names that start with "
                                "'..' are special symbols of other output formats)", tok.col)
        return name

    def _equ(self, name: str, col: int, cur: Cursor) -> None:
        expr = self.structs.here(parse_expr(cur))
        if not cur.at_end():
            raise cur.error_here("expected end of line")
        stmt = EquDef(cur.loc, col, cur.full_name(name), expr)
        self.equs.setdefault(stmt.name, stmt)
        self.stmts.append(stmt)

    def _statement(self, cur: Cursor, allow_times: bool) -> Stmt | None:
        tok = cur.next()
        if tok.kind != "ident":
            raise cur.loc.error(f"expected a mnemonic or directive, found '{clip(tok.text)}'",
                                tok.col)
        word = tok.text.lower()
        loc = cur.loc
        if word in DATA_WIDTH:
            return self._data(cur, tok, DATA_WIDTH[word])
        if word in RES_WIDTH:
            return Reserve(loc, tok.col, RES_WIDTH[word], parse_expr(cur))
        if word == "incbin":
            return self._incbin(cur, tok)
        if word == "times":
            if not allow_times:
                raise loc.error("times cannot repeat times", tok.col)
            count = parse_expr(cur)
            return Times(loc, tok.col, count, self._repeatable(cur, tok, "times"))
        if word in ("align", "alignb"):
            n = parse_expr(cur)
            inner = None
            if cur.at_op(","):
                cur.pos += 1
                inner = self._repeatable(cur, tok, word)
            return Align(loc, tok.col, n, inner, word == "alignb", self.sectalign)
        if word == "sectalign":
            return self._sectalign(cur, tok)
        if word == "org":
            return Org(loc, tok.col, parse_expr(cur))
        if word in ("section", "segment"):
            return self._section(cur, tok)
        if word in ("bits", "use32"):
            self._bits(cur, tok, word)
            return None
        if word == "global":
            self._names(cur, tok)
            return None
        if word == "cpu":
            self._cpu(cur, tok)
            return None
        if word == "default":
            # (rel and bnd are 64-bit mode's: in 32-bit code they change nothing)
            arg = cur.next()
            if arg.text.lower() not in ("rel", "abs", "bnd", "nobnd") or not cur.at_end():
                raise cur.loc.error("expected rel, abs, bnd or nobnd after 'default'",
                                    arg.col)
            return None
        if word in STRUCT_WORDS:
            self.structs.instance_statement(word, tok, cur)
            return None
        if word in NOT_SUPPORTED:
            raise loc.error(f"'{tok.text}' is not supported ({NOT_SUPPORTED[word]}; see "
                            "docs/language.md)", tok.col)
        if word == "include" and cur.peek() is not None and cur.peek().kind == "str":
            raise loc.error("'include' is not supported: write '%include'", tok.col)
        if word in DIRECTIVES:
            raise loc.error(f"'{clip(tok.text)}' cannot be used here", tok.col)
        return self._instruction(cur, tok, word)

    def _repeatable(self, cur: Cursor, tok: Token, what: str) -> Data | Instruction | Reserve:
        inner_tok = cur.peek()
        inner = self._statement(cur, allow_times=False) if inner_tok is not None else None
        if not isinstance(inner, (Data, Instruction, Reserve)):
            raise cur.loc.error(f"{what} can only repeat an instruction, data or resb ... "
                                "resz", inner_tok.col if inner_tok else tok.col)
        return inner

    def _prefixed(self, cur: Cursor, tok: Token, word: str) -> str:
        """The row of a repeat prefix and the string instruction after it
        (``repz cmpsb`` is ``repe cmpsb``, ``repe movsd`` is ``rep movsd``)."""
        f2 = word in F2_WORDS
        names = isa.COMPARE_STRINGS if f2 else STRING_INSNS
        nxt = cur.peek()
        insn = nxt.text.lower() if nxt is not None and nxt.kind == "ident" else None
        if f2 and insn in isa.MOVE_STRINGS:
            raise cur.loc.error(f"'{word} {insn}' is not supported (x86 leaves the F2 prefix "
                                f"undefined on movs and stos: write 'rep {insn}')", tok.col)
        if insn not in names:
            raise cur.error_here(f"expected {', '.join(names[:-1])} or {names[-1]} after "
                                 f"'{word}'")
        cur.pos += 1
        name = f"{word} {insn}"
        return isa.ALIASES.get(name, name)

    def _instruction(self, cur: Cursor, tok: Token, word: str) -> Instruction:
        mnemonic = isa.ALIASES.get(word, word)
        if word in REP_WORDS:
            mnemonic = self._prefixed(cur, tok, word)
        if mnemonic not in isa.FORMS:
            hint = ""
            nxt = cur.peek()
            if cur.pos == 1 and nxt is None:
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
        need = isa.CPU_LEVEL.get(row.mnemonic, 3) if self.cpu < 6 else 0
        if need > self.cpu:
            level = {4: "486", 5: "586", 6: "686"}[need]
            raise cur.loc.error(f"'{clip(tok.text)}' needs cpu {level} or later (no "
                                "instruction for this cpu level, as NASM says)", tok.col)
        return Instruction(cur.loc, tok.col, row, ops, insn_length(row, ops))

