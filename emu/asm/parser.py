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
from .expr import REGISTERS, Node, Num, parse_expr, signed64
from .lexer import Cursor, Loc, Token, clip, tokenize
from .operands import Operand, insn_length, parse_operand, select_form
from .source import find_include, read_binary
from .stmts import (
    RES_WIDTH,
    Align,
    Data,
    EquDef,
    Instruction,
    LabelDef,
    Org,
    Reserve,
    SectionDecl,
    Stmt,
    Times,
)
from .structs import STRUCT_WORDS, Structures

DATA_WIDTH = {"db": 1, "dw": 2, "dd": 4, "dq": 8}
# NASM's CPU levels (``cpu NAME``), as the generation each stands for: 3 is
# the 386 (isa.CPU_LEVEL says which rows need more); every later name takes
# every row.  The 16-bit ones are refused: the machine runs 32-bit code.
CPU_NAMES = {"386": 3, "486": 4, "586": 5, "pentium": 5,
             **dict.fromkeys(("686", "ppro", "p2", "p6", "p3", "katmai", "p4", "willamette",
                              "prescott", "x64", "x86-64", "ia64", "nehalem", "westmere",
                              "sandybridge", "ivybridge", "default", "any", "all"), 9)}
# Directives NASM also takes in its primitive form, in brackets ([bits 32]).
BRACKETED = frozenset(("bits", "section", "segment", "org", "use32", "global", "absolute",
                       "extern", "common", "static", "cpu", "default", "warning", "map",
                       "float"))
DIRECTIVES = frozenset(("org", "align", "alignb", "times", "equ", "section", "segment",
                        "bits", "use32", "global", "incbin", "cpu", "default", *DATA_WIDTH,
                        *RES_WIDTH, *STRUCT_WORDS))
NOT_SUPPORTED = {
    "dt": "10-byte floats", "do": "16-byte data", "dy": "32-byte data", "dz": "64-byte data",
    "extern": "a flat binary links nothing",
    "common": "a flat binary links nothing", "static": "a flat binary links nothing",
    "retf": "far returns: there are no segments",
    "float": "floats", "warning": "NASM takes it in brackets: [warning -user]",
    "map": "map files",
    "use16": "16-bit code", "use64": "64-bit code", "group": "segment groups",
    "sectalign": "section alignment control", "list": "listing control",
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
class Parser:
    """Turns preprocessed lines into statements; one instance per assembly."""

    stmts: list[Stmt] = field(default_factory=list)
    scope: str = ""
    equs: dict[str, EquDef] = field(default_factory=dict)    # so far
    label_names: set[str] = field(default_factory=set)       # so far
    include_dirs: tuple[str, ...] = ()                       # incbin looks there too
    cpu: int = 9                                             # the cpu line's level
    user_warnings: object = None                             # [warning ...] (preproc's)

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
            return Align(loc, tok.col, n, inner, word == "alignb")
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

    def _bits(self, cur: Cursor, tok: Token, word: str) -> None:
        if word == "bits":
            mode = cur.peek()
            if mode is None or mode.kind != "num":
                raise cur.error_here("expected 16, 32 or 64 after 'bits'")
            cur.pos += 1
            if mode.value != 32:
                raise cur.loc.error(f"'bits {mode.value}' is not supported (the machine runs "
                                    "32-bit code: write 'bits 32')", tok.col)

    def _cpu(self, cur: Cursor, tok: Token) -> None:
        """``cpu NAME``: from here, instructions of a later x86 than NAME
        are refused, as NASM refuses them."""
        words = []
        while not cur.at_end():
            words.append(cur.next().text)
        name = "".join(words).lower()
        if name in ("8086", "186", "286"):
            raise cur.loc.error(f"'cpu {name}' is not supported (the machine runs 32-bit "
                                "code: 386 or later)", tok.col)
        if name not in CPU_NAMES:
            raise cur.loc.error(f"unknown CPU level '{clip(name)}' (386, 486, 586, 686, p2, "
                                "p3, p4, x64 ...)", tok.col)
        self.cpu = CPU_NAMES[name]

    def _names(self, cur: Cursor, tok: Token) -> None:
        while True:
            name = cur.next()
            if name.kind != "ident":
                raise cur.loc.error(f"expected a symbol name after '{tok.text}'", name.col)
            if not cur.at_op(","):
                return
            cur.pos += 1

    def _section(self, cur: Cursor, tok: Token) -> SectionDecl:
        name_tok = cur.peek()
        if name_tok is None or name_tok.kind != "ident":
            raise cur.error_here(f"expected a section name after '{tok.text}'")
        cur.pos += 1
        attrs: dict[str, tuple[Node | str | bool, int]] = {}
        while not cur.at_end():
            a = cur.next()
            key = a.text.lower() if a.kind == "ident" else ""
            if key in ("progbits", "nobits"):
                attrs["nobits"] = (key == "nobits", a.col)
                continue
            if key in ("valign", "vfollows"):
                raise cur.loc.error(f"section attribute '{a.text}' is not supported "
                                    "(start=, vstart=, align=, follows=, progbits, nobits)",
                                    a.col)
            if key not in ("start", "vstart", "align", "follows") or not cur.at_op("="):
                raise cur.loc.error(f"unknown section attribute '{clip(a.text)}' (start=, "
                                    "vstart=, align=, follows=, progbits, nobits)", a.col)
            cur.pos += 1
            if key == "follows":
                target = cur.next()
                if target.kind != "ident":
                    raise cur.loc.error("expected a section name after 'follows='",
                                        target.col)
                attrs[key] = (target.text, target.col)
            else:
                value_tok = cur.peek()
                attrs[key] = (parse_expr(cur), value_tok.col if value_tok else a.col)
        return SectionDecl(cur.loc, name_tok.col, name_tok.text, attrs)

    def _incbin(self, cur: Cursor, tok: Token) -> Data:
        """``incbin "FILE" [, SKIP [, COUNT]]``: the file's bytes from SKIP,
        COUNT of them at most, as data.  FILE is looked for as ``%include``
        looks; SKIP and COUNT are numbers known before assembly."""
        loc = cur.loc
        name_tok = cur.peek()
        if name_tok is None or name_tok.kind != "str":
            raise cur.error_here("expected a file name in quotes after incbin")
        cur.pos += 1
        name = name_tok.value.decode("utf-8", "replace")  # type: ignore[union-attr]
        numbers = []
        while cur.at_op(",") and len(numbers) < 2:
            cur.pos += 1
            what = "incbin's " + ("count" if numbers else "skip")
            at = cur.peek()
            col = at.col if at is not None else tok.col
            value = self.known(parse_expr(cur), loc, col, what)
            if value < 0:
                raise loc.error(f"{what} must not be negative, not {value}", col)
            numbers.append(value)
        if not cur.at_end():
            raise cur.error_here("expected end of line (incbin takes a file name, a skip "
                                 "and a count)")
        path, searched = find_include(name, loc.file, self.include_dirs)
        if not path:
            where = ", ".join(searched) if searched else "absolute path"
            raise loc.error(f"incbin file '{clip(name)}' not found (searched: {where})",
                            name_tok.col)
        skip = numbers[0] if numbers else 0
        count = numbers[1] if len(numbers) > 1 else None
        data = read_binary(path, skip, count, path, loc, name_tok.col)
        return Data(loc, tok.col, 1, [data] if data else [], len(data))

    def _data(self, cur: Cursor, tok: Token, width: int) -> Data | Reserve:
        """``db``/``dw``/``dd``/``dq``: values and strings; ``?``, as in
        NASM, is an item left uninitialised (zeros; items all ``?`` reserve
        space, as ``resX`` does, so they may go in a nobits section)."""
        items: list[Node | bytes | None] = []
        if cur.at_end():
            raise cur.loc.error(f"'{clip(tok.text)}' needs at least one value", tok.col)
        while True:
            item = cur.peek()
            after = cur.peek(1)
            if item is not None and item.kind == "str" and (after is None or after.is_op(",")):
                cur.pos += 1
                items.append(item.value)  # type: ignore[arg-type]
            elif item is not None and item.kind == "ident" and item.text == "?" and (
                    after is None or after.is_op(",")):
                cur.pos += 1
                items.append(None)
            else:
                items.append(parse_expr(cur))
            if not cur.at_op(","):
                break
            cur.pos += 1
        if all(it is None for it in items):
            return Reserve(cur.loc, tok.col, width, Num(len(items), tok.col))
        size = sum(-(-len(it) // width) * width if isinstance(it, bytes) else width
                   for it in items)
        return Data(cur.loc, tok.col, width, items, size)

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

