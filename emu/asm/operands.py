"""Instruction operands: parsing, choosing the ISA row, encoding.

Operand syntax::

    register     eax .. edi, al .. bh, cr0 cr2 cr3 cr4, dx (port number only)
    immediate    any expression (also a branch target for jmp/jcc/call/loop);
                 ``dword`` may precede it and changes nothing
    memory       [ terms ] with an optional size: byte [..], dword [..],
                 byte ptr [..], dword ptr [..]

The terms of a memory operand are added or subtracted in any order: at most
one base register, at most one index register times a scale (1, 2, 4 or 8,
any expression), and any number of register-free expressions that sum to the
displacement.  Two unscaled registers make base + index*1.  As in NASM, the
terms of one register add up and a factor of 3, 5 or 9 makes the register
base and index at once ([eax*5] is [eax + eax*4]).

Which row of ``isa.FORMS`` an instruction uses depends only on the operands'
syntax, never on a value, so every instruction's length is known in pass 1.
A memory operand is ``mb`` when written ``byte [..]``, ``m`` when written
``dword [..]``.  An unsized one takes the size of the forms that fit (a byte
register beside it fits only byte forms), and must be sized when forms of
both sizes fit (``mov [eax], 5``, ``shl [eax], cl``), as in NASM.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import isa
from .expr import REGISTERS, Binary, Env, Node, Reg, Unary, signed64, walk
from .exprparse import parse_expr
from .lexer import Cursor

# NASM's bounds, beyond which it warns (here: an error).  An 8-bit or
# 16-bit immediate it stores as data takes -2**N .. 2**N - 1 (``mov al,
# -200`` is 0x38); a count, a bit number, a vector or a nesting level
# (``COUNTED``'s rows) is unsigned.
I8_RANGE = (-256, 255)
COUNT8_RANGE = (0, 255)
COUNTED = frozenset(("shl", "shr", "sar", "rol", "ror", "rcl", "rcr", "bt", "bts", "btr",
                     "btc", "int", "enter", "shld", "shrd"))
SIGNED8_RANGE = (-128, 127)
I16_RANGE = (-65536, 65535)
PORT_RANGE = (0, 255)           # in/out's immediate port (NASM warns outside it)
# As NASM: any value a 32-bit register can hold, signed or not, so that
# ``and eax, ~CR0_PG`` (a negative number) assembles.
I32_RANGE = (-(1 << 32) + 1, (1 << 32) - 1)
ADDR_RANGE = (0, (1 << 32) - 1)


@dataclass(frozen=True)
class RegOp:
    kind: str        # "r", "b", "c" or "dx"
    num: int
    name: str
    col: int


@dataclass(frozen=True)
class ImmOp:
    expr: Node
    col: int
    size: str | None = None         # "byte 3" (NASM's imm8, sign-extended), "dword 3",
                                    # "short x" / "near x" (a branch target)


@dataclass(frozen=True)
class MemOp:
    size: str | None                  # "byte", "dword" or None (unsized)
    regs: tuple[tuple[int, Node | None, int, int], ...]  # (register, factor or None, sign, col)
    disp: tuple[tuple[Node, int], ...]  # (term, +1 or -1)
    col: int
    text: str = ""                    # the source text, "[" to "]"
    disp_hint: str | None = None      # [byte ...] / [dword ...]: NASM's displacement size

    @property
    def has_index(self) -> bool:
        """Whether the address has an index register: a register written
        twice or with a factor (known from the syntax, so in pass 1)."""
        return len(self.regs) > 1 or any(f is not None or sign < 0
                                         for _, f, sign, _ in self.regs)


Operand = RegOp | ImmOp | MemOp


def parse_operand(cur: Cursor) -> Operand:
    """Parse one operand at the cursor."""
    tok = cur.next()
    size = None
    low = tok.text.lower() if tok.kind == "ident" else ""
    if low == "strict" and cur.peek() is not None:
        # NASM's "keep this size, do not optimise": what follows is the
        # operand (every encoding here is the one its form says)
        tok = cur.next()
        low = tok.text.lower() if tok.kind == "ident" else ""
    if low in ("byte", "dword"):
        size = low
        nxt = cur.peek()
        if nxt is not None and nxt.is_word("ptr"):
            cur.pos += 1
        if not cur.at_op("["):
            reg = _sized_register(cur, size)
            if reg is not None:
                return reg              # "push dword eax": the register's own size
            imm = _immediate(cur)       # "push dword 5", "push byte 5"
            return ImmOp(imm.expr, imm.col, size)
        tok = cur.next()
    elif low in ("short", "near") and not cur.at_op("[") and cur.peek() is not None:
        # "jmp short .next": a branch's reach, for NASM's encodings; every
        # branch here reaches everywhere (rel32): only a branch takes it
        imm = _immediate(cur)
        return ImmOp(imm.expr, imm.col, low)
    elif low in ("word", "qword", "short", "near", "far"):
        raise cur.loc.error(f"'{tok.text}' is not supported (sizes are byte and dword)",
                            tok.col)
    if tok.is_op("["):
        return _memory(cur, size, tok.col)
    nxt = cur.peek()
    if low in REGISTERS and (nxt is None or nxt.is_op(",")):
        kind, num = REGISTERS[low]
        return RegOp(kind, num, low, tok.col)
    cur.pos -= 1
    return _immediate(cur)


def _sized_register(cur: Cursor, size: str) -> RegOp | None:
    """A register after a size (NASM allows the one it already has)."""
    tok = cur.peek()
    if tok is None or tok.kind != "ident" or tok.text.lower() not in REGISTERS:
        return None
    after = cur.peek(1)
    if after is not None and not after.is_op(","):
        return None
    low = tok.text.lower()
    kind, num = REGISTERS[low]
    if (size, kind) not in (("dword", "r"), ("byte", "b")):
        raise cur.loc.error(f"'{size}' does not fit register '{tok.text}'", tok.col)
    cur.pos += 1
    return RegOp(kind, num, low, tok.col)


def _immediate(cur: Cursor) -> ImmOp:
    first = cur.peek()
    col = first.col if first is not None else cur.end_col()
    expr = parse_expr(cur)
    for n in walk(expr):
        if isinstance(n, Reg):
            raise cur.loc.error(
                f"register '{n.name}' cannot be used in an expression", n.col)
    return ImmOp(expr, col)


_BAD = "bad memory operand: "


def _memory(cur: Cursor, size: str | None, col: int) -> MemOp:
    hint = None
    while True:     # NASM's hints: the displacement's size, and nosplit
        tok = cur.peek()
        if tok is None or tok.kind != "ident":
            break
        word = tok.text.lower()
        if word not in ("byte", "dword", "nosplit") or cur.peek(1) is None \
                or cur.peek(1).is_op("]"):
            break
        cur.pos += 1
        if word != "nosplit":
            # (the encoding here always holds 32 bits; a byte one must fit)
            hint = word
    expr = parse_expr(cur)
    close = cur.expect_op("]", "to close the memory operand")
    text = cur.loc.text[col - 1:close.col]
    regs: list[tuple[int, Node | None, int]] = []
    disp: list[tuple[Node, int]] = []
    for term, sign in _terms(expr):
        reg, factor = _register_term(term)
        if reg is None:
            for n in walk(term):
                if isinstance(n, Reg):
                    raise cur.loc.error(_BAD + "registers can only be added, or "
                                        "multiplied by a scale", n.col)
            disp.append((term, sign))
            continue
        if reg.kind != "r":
            raise cur.loc.error(_BAD + f"'{reg.name}' is not a 32-bit register",
                                reg.col)
        regs.append((reg.num, factor, sign, reg.col))
    return MemOp(size, tuple(regs), tuple(disp), col, text, hint)


_SCALES = (1, 2, 4, 8)


def _registers(op: MemOp, env: Env) -> tuple[int | None, int | None, int]:
    """(base, index, scale) of a memory operand's registers.  As in NASM,
    a register's terms add up ([eax + eax*2] is eax*3, [eax*4 - eax] too)
    and a factor of 3, 5 or 9 is the register as base and index at once
    ([eax*5] is [eax + eax*4]); a register and a register times 1, 2, 4
    or 8 are base and index."""
    regs = []
    for num, factor, sign, col in op.regs:
        k = None if factor is None else factor.ev(env)
        regs.append((num, k, sign, col, col if factor is None else factor.start))
    if not regs:
        return None, None, 1
    if all(sign > 0 and (k is None or k in _SCALES) for _, k, sign, _, _ in regs) and (
            len(regs) == 1 or len(regs) == 2 and None in (regs[0][1], regs[1][1])):
        # base, base + index, base + index*k, index*k: as written
        (r1, k1, _, _, _), (r2, k2, _, _, _) = (regs * 2)[:2]
        if len(regs) == 1:
            return (r1, None, 1) if k1 is None else (None, r1, k1)
        return (r1, r2, k2 or 1) if k1 is None else (r2, r1, k1)
    # NASM's algebra: each register's factors added up.
    total: dict[int, int] = {}
    reg_at: dict[int, int] = {}         # (where each register is written last)
    where: dict[int, int] = {}          # (... and its factor, if it has one)
    for num, k, sign, col, at in regs:
        total[num] = total.get(num, 0) + sign * (1 if k is None else k)
        reg_at[num], where[num] = col, at
    for num, k in total.items():
        if k < 0:
            raise env.loc.error(_BAD + "a register cannot be subtracted", reg_at[num])
    total = {num: k for num, k in total.items() if k}
    if len(total) > 2:
        raise env.loc.error(_BAD + "at most two registers", reg_at[list(total)[2]])
    if not total:
        raise env.loc.error(_BAD + "its registers cancel out (write the number alone)",
                            regs[0][3])
    if len(total) == 1:
        (num, k), = total.items()
        if k in _SCALES:
            return None, num, k                      # (an index: what its length counts)
        if k - 1 in _SCALES:
            return num, num, k - 1                   # [r*5]: [r + r*4]
        raise env.loc.error(f"scale must be 1, 2, 4 or 8 (or 3, 5 or 9: [r + r*2], "
                            f"[r + r*4], [r + r*8]), not {_show(k)}", where[num])
    (r1, k1), (r2, k2) = total.items()
    if k1 == 1 and k2 in _SCALES:
        return r1, r2, k2
    if k2 == 1 and k1 in _SCALES:
        return r2, r1, k1
    if k1 != 1 and k2 != 1:
        raise env.loc.error(_BAD + "only one register can be scaled", reg_at[r2])
    k, at = (k2, where[r2]) if k1 == 1 else (k1, where[r1])
    raise env.loc.error(f"scale must be 1, 2, 4 or 8, not {_show(k)}", at)


def _terms(expr: Node) -> list[tuple[Node, int]]:
    """Flatten the top-level sum of ``expr`` into (term, sign) pairs."""
    out: list[tuple[Node, int]] = []
    stack = [(expr, 1)]
    while stack:
        node, sign = stack.pop()
        if isinstance(node, Binary) and node.op in ("+", "-"):
            stack.append((node.right, sign if node.op == "+" else -sign))
            stack.append((node.left, sign))
        elif isinstance(node, Unary) and node.op in ("+", "-"):
            stack.append((node.operand, sign if node.op == "+" else -sign))
        else:
            out.append((node, sign))
    return out


def _register_term(term: Node) -> tuple[Reg | None, Node | None]:
    """(register, scale) when ``term`` is reg, reg*scale or scale*reg."""
    if isinstance(term, Reg):
        return term, None
    if isinstance(term, Binary) and term.op == "*":
        if isinstance(term.left, Reg) and not _has_reg(term.right):
            return term.left, term.right
        if isinstance(term.right, Reg) and not _has_reg(term.left):
            return term.right, term.left
    return None, None


def _has_reg(node: Node) -> bool:
    return any(isinstance(n, Reg) for n in walk(node))


# --- choosing the row ------------------------------------------------------

def _kinds(op: Operand) -> tuple[str, ...]:
    """The operand kinds of the ISA table that ``op`` can stand for."""
    if isinstance(op, RegOp):
        if op.kind == "b" and op.num == isa.ECX:
            return ("b", "cl")
        if op.kind == "b" and op.num == isa.EAX:
            return ("b", "al")
        if op.kind == "dx":
            return ("dx", "w")
        return (op.kind,)
    if isinstance(op, ImmOp):
        if op.size in ("short", "near"):
            return ("rel",)
        return ("i", "i8") if op.size == "byte" else ("i", "i8", "i16", "rel")
    if op.size is not None:
        return ("mb",) if op.size == "byte" else ("m",)
    return ("m", "mb")      # unsized: the forms that fit decide (select_form)


# The rows that fit each (mnemonic, operand kinds) met so far: few, and
# the ISA table never changes.
_FITTING: dict = {}


def _fits(row: isa.Insn, kinds: tuple[tuple[str, ...], ...]) -> bool:
    return len(row.operands) == len(kinds) and all(
        k in ok for k, ok in zip(row.operands, kinds, strict=True))


def select_form(mnemonic: str, ops: list[Operand], cur: Cursor, col: int) -> isa.Insn:
    """The first row of ``isa.FORMS[mnemonic]`` whose kinds fit ``ops``.

    An unsized memory operand (``[eax]``) takes the size of the only form
    that fits it; when forms of both sizes fit, the size must be written,
    as NASM requires: ``operation size not specified; write `dword [eax]```.
    A mismatch lists the forms in NASM's notation (``add r/m32, imm32``)."""
    kinds = tuple(_kinds(op) for op in ops)
    rows = _FITTING.get((mnemonic, kinds))
    if rows is None:
        rows = _FITTING[mnemonic, kinds] = tuple(
            row for row in isa.FORMS[mnemonic] if _fits(row, kinds))
    for i, op in enumerate(ops):
        if isinstance(op, MemOp) and op.size is None:
            sizes = {row.operands[i] for row in rows}
            told = [o.size for o in ops if isinstance(o, ImmOp) and o.size]
            if len(sizes) > 1 and told:
                # NASM: a sized immediate sizes the memory ("mov [eax], byte 5")
                want = "mb" if told[0] == "byte" else "m"
                rows = tuple(row for row in rows if row.operands[i] == want)
                sizes = {want}
            if len(sizes) > 1:
                raise cur.loc.error("operation size not specified; write "
                                    f"`dword {op.text}`", op.col)
    if rows:
        return rows[0]
    have = ", ".join(_describe(op) for op in ops)
    forms = " | ".join(f"{mnemonic} {f}".rstrip()
                       for f in isa.nasm_forms(isa.FORMS[mnemonic]))
    raise cur.loc.error(f"no form of '{mnemonic}' takes ({have}); forms: {forms}", col)


def _describe(op: Operand) -> str:
    """What an operand is, in NASM's notation."""
    if isinstance(op, RegOp):
        return {"r": "r32", "b": "r8", "c": "cr", "w": "r16", "dx": "dx"}[op.kind]
    if isinstance(op, ImmOp):
        return f"{op.size} imm" if op.size in ("short", "near") else "imm"
    return {"byte": "m8", "dword": "m32", None: "m"}[op.size]


def insn_length(row: isa.Insn, ops: list[Operand]) -> int:
    return isa.length_of(row, tuple(op.has_index for op in ops
                                    if isinstance(op, MemOp)))


# --- encoding (pass 2) -----------------------------------------------------

def check_range(value: int, lo_hi: tuple[int, int], what: str, env: Env, col: int) -> int:
    """``value``, or an error naming the range it should be in."""
    lo, hi = lo_hi
    if not lo <= value <= hi:
        shown = f"{lo:#x}..{hi:#x}" if lo_hi == ADDR_RANGE else f"{lo}..{hi}"
        raise env.loc.error(f"value {_show(value)} out of range for {what} ({shown})",
                            col)
    return value


def _show(v: int) -> str:
    return str(v) if -10000 < v < 10000 else (f"-{-v:#x}" if v < 0 else f"{v:#x}")


def encode_insn(row: isa.Insn, ops: list[Operand], env: Env, next_eip: int) -> bytes:
    """Bytes of one instruction; ``env.here`` is its address."""
    args: list = []
    for kind, op in zip(row.operands, ops, strict=True):
        if isinstance(op, RegOp):
            args.append(op.num)
        elif isinstance(op, MemOp):
            args.append(_mem_value(op, kind == "mb", env))
        elif kind == "rel":
            args.append(_branch(op, env, next_eip))
        else:
            args.append(_immediate_value(row, kind, op, env))
    return isa.encode(row, tuple(args))


def _immediate_value(row: isa.Insn, kind: str, op: ImmOp, env: Env) -> int:
    """An immediate's value, read as 64 bits (as NASM's: 2**64 - 1 is -1),
    within the bounds of its kind, as the row stores it."""
    v = signed64(op.expr.ev(env))
    if kind == "i8" and row.mnemonic in ("in", "out"):
        if not PORT_RANGE[0] <= v <= PORT_RANGE[1]:
            raise env.loc.error(f"port {_show(v)} out of range for {row.mnemonic}'s "
                                "immediate port (0..255): put a higher port in dx", op.col)
        return v
    if kind == "i8" and row.mnemonic in COUNTED:
        return check_range(v, COUNT8_RANGE, f"{row.mnemonic}'s 8-bit immediate", env, op.col)
    if kind == "i8":
        return check_range(v, I8_RANGE, "an 8-bit immediate", env, op.col) & 0xFF
    if kind == "i16":
        return check_range(v, I16_RANGE, "a 16-bit immediate", env, op.col) & 0xFFFF
    if op.size == "byte":
        # NASM's sign-extended imm8 ("push byte -1", "add eax, byte 5")
        return check_range(v, SIGNED8_RANGE, "a sign-extended 8-bit immediate", env,
                           op.col) & 0xFFFFFFFF
    return check_range(v, I32_RANGE, "a 32-bit immediate", env, op.col) & 0xFFFFFFFF


def _branch(op: ImmOp, env: Env, next_eip: int) -> int:
    """A branch target, relative to the next instruction."""
    v = check_range(op.expr.ev(env), ADDR_RANGE, "a branch target", env, op.col)
    if op.size == "short" and not -128 <= v - next_eip <= 127:
        # (every branch here reaches everywhere, but a short one says
        # it is near: NASM refuses it too)
        raise env.loc.error(f"short jump is out of range: the target is "
                            f"{v - next_eip} bytes from the next instruction "
                            "(a short branch reaches -128..127)", op.col)
    return (v - next_eip) & 0xFFFFFFFF


def _mem_value(op: MemOp, byte: bool, env: Env) -> isa.Mem:
    disp = 0
    for term, sign in op.disp:
        disp += sign * signed64(term.ev(env))
    disp = check_range(disp, I32_RANGE, "a displacement", env, op.col)
    disp = (disp + (1 << 31)) % (1 << 32) - (1 << 31)   # as a signed 32-bit value
    if op.disp_hint == "byte":
        check_range(disp, (-128, 127), "a byte displacement", env, op.col)
    base, index, scale = _registers(op, env)
    if index == isa.ESP:
        # x86 cannot index with esp: unscaled, it is the base ([eax+esp] is
        # [esp+eax], as NASM assembles it); scaled or twice, NASM refuses it.
        if scale != 1 or base == isa.ESP:
            raise env.loc.error(_BAD + "esp cannot be an index register (scaled, or "
                                "added to itself): x86 has no such address", op.col)
        if base is not None:
            base, index = isa.ESP, base
        # (esp alone, written with a factor -- [esp*1] --, stays an index
        # times 1: the same address, in the length pass 1 gave it)
    return isa.Mem(base, index, scale, disp, byte)
