"""The instruction set, defined once.

The assembler, the disassembler and the CPU all read ``TABLE``.  Every row is
one (mnemonic, operand form) pair; its opcode is its position in the table
(opcode 0x00 is never assigned, so executing zeroed memory raises #UD).

Encoding (little-endian, variable length)::

    opcode                         1 byte: the row's index
    register byte                  when the form has registers / control regs:
                                   first operand's number << 4 | second's
    memory operand                 when the form has one:
        M   1 byte  bit 7 has base, bits 6-4 base, bit 3 has index, 2-0 index
        S   1 byte  log2(scale), only when M has an index
        disp32      4 bytes, signed
    immediate                      imm32: 4 bytes, imm8: 1 byte
    rel32                          4 bytes, signed, relative to the next insn

Operand kinds:

    r    32-bit register          eax ecx edx ebx esp ebp esi edi
    b    8-bit register           al cl dl bl ah ch dh bh
    c    control register         cr0 cr2 cr3 cr4
    w    16-bit register          ax cx dx bx sp bp si di (low half; ltr only)
    i    32-bit immediate
    i8   8-bit immediate (unsigned)
    m    dword memory operand     [base + index*scale + disp], [abs]
    mb   byte memory operand      byte [...]
    rel  branch target            label or address
    cl   the register cl          (shift counts)
    dx   the register dx          (port numbers)
"""

from __future__ import annotations

from dataclasses import dataclass

REGS32 = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
REGS8 = ("al", "cl", "dl", "bl", "ah", "ch", "dh", "bh")
REGS16 = ("ax", "cx", "dx", "bx", "sp", "bp", "si", "di")
CREGS = {"cr0": 0, "cr2": 2, "cr3": 3, "cr4": 4}
CREG_NAMES = {v: k for k, v in CREGS.items()}
EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI = range(8)

# EFLAGS bits (x86 positions)
CF = 1 << 0   # carry
ZF = 1 << 6   # zero
SF = 1 << 7   # sign
IF = 1 << 9   # interrupt enable
OF = 1 << 11  # overflow
EFLAGS_FIXED = 1 << 1  # bit 1 always reads as 1
ARITH_FLAGS = CF | ZF | SF | OF

# Classes of instruction, for the CPU's translator.
PLAIN = "plain"        # runs inside a translated block
BRANCH = "branch"      # ends a block; sets the next eip
SYSTEM = "system"      # ends a block; executed by the CPU's system path
PRIV = "priv"          # like SYSTEM, but #GP(0) at CPL 3

ALU2 = ("add", "adc", "sub", "sbb", "and", "or", "xor", "cmp", "test")
ALU2_FORMS = (("r", "r"), ("r", "i"), ("r", "m"), ("m", "r"), ("m", "i"))
JCC = ("jo", "jno", "jb", "jae", "je", "jne", "jbe", "ja",
       "js", "jns", "jl", "jge", "jle", "jg")
JCC_ALIASES = {"jc": "jb", "jnae": "jb", "jnb": "jae", "jnc": "jae",
               "jz": "je", "jnz": "jne", "jna": "jbe", "jnbe": "ja",
               "jnge": "jl", "jnl": "jge", "jng": "jle", "jnle": "jg"}


@dataclass(frozen=True)
class Insn:
    """One row of the ISA table."""

    opcode: int
    mnemonic: str
    operands: tuple[str, ...]
    kind: str          # PLAIN, BRANCH, SYSTEM or PRIV
    cycles: int        # base cost in the cost model (memory refs extra)
    doc: str

    @property
    def form(self) -> str:
        return ",".join(self.operands)

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        return (self.mnemonic, self.operands)


_ROWS: list[tuple[str, tuple[str, ...], str, int, str]] = []


def _row(mn: str, ops: tuple[str, ...], kind: str = PLAIN, cycles: int = 1,
         doc: str = "") -> None:
    _ROWS.append((mn, ops, kind, cycles, doc))


# --- data movement -------------------------------------------------------
for _f in (("r", "r"), ("r", "i"), ("r", "m"), ("m", "r"), ("m", "i"),
           ("b", "b"), ("b", "i8"), ("b", "mb"), ("mb", "b"), ("mb", "i8")):
    _row("mov", _f, doc="copy the source into the destination")
_row("mov", ("r", "c"), PRIV, 2, "read a control register")
_row("mov", ("c", "r"), PRIV, 4, "write a control register")
_row("movzx", ("r", "b"), doc="zero-extend a byte register")
_row("movzx", ("r", "mb"), doc="zero-extend a byte of memory")
_row("lea", ("r", "m"), doc="load the effective address")
_row("xchg", ("r", "r"), doc="swap two registers")
_row("xchg", ("r", "m"), doc="swap a register with memory")

# --- arithmetic and logic ------------------------------------------------
for _mn in ALU2:
    for _f in ALU2_FORMS:
        _row(_mn, _f, doc=f"{_mn} (flags: CF ZF SF OF)")
for _mn in ("inc", "dec", "neg", "not"):
    for _f in (("r",), ("m",)):
        _row(_mn, _f, doc=f"{_mn} (inc/dec keep CF; not changes no flag)")
for _mn in ("shl", "shr", "sar", "rol", "ror"):
    for _f in (("r", "i8"), ("r", "cl")):
        _row(_mn, _f, doc=f"{_mn} by a count masked to 5 bits")
_row("mul", ("r",), cycles=3, doc="edx:eax = eax * src (unsigned)")
_row("mul", ("m",), cycles=3, doc="edx:eax = eax * src (unsigned)")
_row("imul", ("r", "r"), cycles=3, doc="dst = dst * src (signed, truncated)")
_row("imul", ("r", "i"), cycles=3, doc="dst = dst * imm (signed, truncated)")
_row("div", ("r",), cycles=20, doc="eax, edx = edx:eax / src, % src; #DE on 0")
_row("div", ("m",), cycles=20, doc="eax, edx = edx:eax / src, % src; #DE on 0")
_row("idiv", ("r",), cycles=20, doc="signed division of edx:eax; #DE on 0")
_row("cdq", (), doc="sign-extend eax into edx")

# --- stack ---------------------------------------------------------------
_row("push", ("r",), doc="esp -= 4; [esp] = src")
_row("push", ("i",), doc="esp -= 4; [esp] = imm")
_row("push", ("m",), doc="esp -= 4; [esp] = [mem]")
_row("pop", ("r",), doc="dst = [esp]; esp += 4")
_row("pushfd", (), doc="push eflags")
_row("popfd", (), SYSTEM, doc="pop eflags (IF kept at CPL 3)")
_row("pushad", (), cycles=8, doc="push eax ecx edx ebx esp ebp esi edi")
_row("popad", (), cycles=8, doc="pop edi esi ebp (skip) ebx edx ecx eax")

# --- control flow --------------------------------------------------------
_row("jmp", ("rel",), BRANCH, doc="jump")
_row("jmp", ("r",), BRANCH, doc="jump to the address in a register")
_row("jmp", ("m",), BRANCH, doc="jump to the address in memory")
for _mn in JCC:
    _row(_mn, ("rel",), BRANCH, doc="jump if the condition holds")
_row("call", ("rel",), BRANCH, 2, "push the return address; jump")
_row("call", ("r",), BRANCH, 2, "call the address in a register")
_row("ret", (), BRANCH, 2, "pop eip")
_row("loop", ("rel",), BRANCH, doc="ecx -= 1; jump if ecx != 0")

# --- system --------------------------------------------------------------
_row("nop", (), doc="do nothing")
_row("int", ("i8",), SYSTEM, 10, "software interrupt through the IDT")
_row("iret", (), SYSTEM, 10, "return from an interrupt")
_row("hlt", (), PRIV, 1, "wait for an interrupt")
_row("cli", (), PRIV, 1, "clear IF")
_row("sti", (), PRIV, 1, "set IF")
_row("lidt", ("m",), PRIV, 4, "load the IDT register from 6 bytes")
_row("lgdt", ("m",), PRIV, 4, "load the GDT register from 6 bytes")
_row("ltr", ("w",), PRIV, 4, "load the task register: the GDT selector of a TSS")
_row("invlpg", ("m",), PRIV, 4, "drop the TLB entry of a page")
_row("in", ("r", "i8"), PRIV, 10, "read an I/O port")
_row("in", ("r", "dx"), PRIV, 10, "read the I/O port in dx")
_row("out", ("i8", "r"), PRIV, 10, "write an I/O port")
_row("out", ("dx", "r"), PRIV, 10, "write the I/O port in dx")
for _mn in ("movsd", "stosd", "movsb", "stosb"):
    _row(_mn, (), SYSTEM, 1, "string move/store (forward)")
    _row("rep " + _mn, (), SYSTEM, 1, "repeat ecx times (interruptible)")
_row("ud2", (), SYSTEM, 1, "raise #UD")

TABLE: tuple[Insn, ...] = tuple(
    Insn(i + 1, mn, ops, kind, cyc, doc)
    for i, (mn, ops, kind, cyc, doc) in enumerate(_ROWS))
assert len(TABLE) < 256, "opcodes are one byte"
BY_OPCODE: dict[int, Insn] = {row.opcode: row for row in TABLE}
BY_KEY: dict[tuple[str, tuple[str, ...]], Insn] = {row.key: row for row in TABLE}
MNEMONICS: frozenset[str] = frozenset(row.mnemonic for row in TABLE)
FORMS: dict[str, list[Insn]] = {}
for _r in TABLE:
    FORMS.setdefault(_r.mnemonic, []).append(_r)

MEM_KINDS = ("m", "mb")
REG_KINDS = ("r", "b", "c", "w")


def operand_size(kind: str) -> int:
    """Encoded size of an operand kind, memory operands excluded."""
    return {"i": 4, "i8": 1, "rel": 4}.get(kind, 0)


@dataclass(frozen=True)
class Mem:
    """A decoded memory operand: base + index*scale + disp."""

    base: int | None
    index: int | None
    scale: int
    disp: int
    byte: bool = False


@dataclass(frozen=True)
class Decoded:
    """One decoded instruction: its row, its operand values and its length."""

    insn: Insn
    args: tuple  # per operand: int (register number / immediate) or Mem
    length: int


class DecodeError(Exception):
    """The bytes are not an instruction (the CPU raises #UD)."""


def encode(insn: Insn, args: tuple) -> bytes:
    """Encode ``insn`` with operand values ``args`` (see the module doc).

    ``rel`` operands are given already relative to the next instruction.
    """
    out = bytearray([insn.opcode])
    regs = [a for k, a in zip(insn.operands, args) if k in REG_KINDS]
    if regs:
        hi = regs[0]
        lo = regs[1] if len(regs) > 1 else 0
        out.append((hi << 4) | lo)
    for k, a in zip(insn.operands, args):
        if k in MEM_KINDS:
            out += encode_mem(a)
    for k, a in zip(insn.operands, args):
        if k == "i" or k == "rel":
            out += (a & 0xFFFFFFFF).to_bytes(4, "little")
        elif k == "i8":
            out.append(a & 0xFF)
    return bytes(out)


def encode_mem(m: Mem) -> bytes:
    b = 0
    if m.base is not None:
        b |= 0x80 | (m.base << 4)
    out = bytearray()
    if m.index is not None:
        b |= 0x08 | m.index
        out.append(b)
        out.append({1: 0, 2: 1, 4: 2, 8: 3}[m.scale])
    else:
        out.append(b)
    out += (m.disp & 0xFFFFFFFF).to_bytes(4, "little")
    return bytes(out)


def length_of(insn: Insn, index_flags: tuple[bool, ...] = ()) -> int:
    """Length of an encoding of ``insn``; ``index_flags`` says, per memory
    operand, whether it has an index register."""
    n = 1
    if any(k in REG_KINDS for k in insn.operands):
        n += 1
    mi = 0
    for k in insn.operands:
        if k in MEM_KINDS:
            has_index = index_flags[mi] if mi < len(index_flags) else False
            n += 6 if has_index else 5
            mi += 1
        n += operand_size(k)
    return n


def decode(fetch, eip: int) -> Decoded:
    """Decode the instruction at ``eip``; ``fetch(addr)`` returns one byte."""
    opcode = fetch(eip)
    insn = BY_OPCODE.get(opcode)
    if insn is None:
        raise DecodeError(f"invalid opcode {opcode:#04x}")
    pos = eip + 1
    reg_vals: list[int] = []
    if any(k in REG_KINDS for k in insn.operands):
        rb = fetch(pos)
        pos += 1
        reg_vals = [rb >> 4, rb & 0xF]
    args: list = []
    ri = 0
    for k in insn.operands:
        if k in REG_KINDS:
            v = reg_vals[ri]
            ri += 1
            if (k == "c" and v not in CREG_NAMES) or (k != "c" and v > 7):
                raise DecodeError(f"bad register number {v}")
            args.append(v)
        elif k in MEM_KINDS:
            mb = fetch(pos)
            pos += 1
            if mb & 0x80 == 0 and mb & 0x70:
                raise DecodeError("bad memory operand")
            base = (mb >> 4) & 7 if mb & 0x80 else None
            index = None
            scale = 1
            if mb & 0x08:
                index = mb & 7
                sb = fetch(pos)
                pos += 1
                if sb > 3:
                    raise DecodeError("bad scale")
                scale = 1 << sb
            elif mb & 0x07:
                raise DecodeError("bad memory operand")
            disp = _imm32(fetch, pos)
            pos += 4
            if disp & 0x80000000:
                disp -= 1 << 32
            args.append(Mem(base, index, scale, disp, k == "mb"))
        else:
            args.append(None)  # filled below, in encoding order
    for i, k in enumerate(insn.operands):
        if k == "i":
            args[i] = _imm32(fetch, pos)
            pos += 4
        elif k == "rel":
            rel = _imm32(fetch, pos)
            pos += 4
            args[i] = rel - (1 << 32) if rel & 0x80000000 else rel
        elif k == "i8":
            args[i] = fetch(pos)
            pos += 1
        elif k == "cl":
            args[i] = ECX
        elif k == "dx":
            args[i] = EDX
    return Decoded(insn, tuple(args), pos - eip)


def _imm32(fetch, pos: int) -> int:
    return (fetch(pos) | fetch(pos + 1) << 8 | fetch(pos + 2) << 16
            | fetch(pos + 3) << 24)


def format_operand(kind: str, value, symbol_of=None, next_eip: int = 0) -> str:
    """Intel-syntax text of one operand; ``symbol_of(addr)`` names addresses."""
    if kind == "r":
        return REGS32[value]
    if kind == "b":
        return REGS8[value]
    if kind == "w":
        return REGS16[value]
    if kind == "c":
        return CREG_NAMES[value]
    if kind in ("cl", "dx"):
        return kind
    if kind == "rel":
        target = (next_eip + value) & 0xFFFFFFFF
        name = symbol_of(target) if symbol_of else None
        return name if name else f"{target:#x}"
    if kind in ("i", "i8"):
        # Only addresses-looking immediates are named: 0 or 1 rarely mean a label.
        name = symbol_of(value) if symbol_of and kind == "i" and value >= 0x100 else None
        return name if name else (f"{value:#x}" if value > 9 else str(value))
    m: Mem = value
    parts = []
    if m.base is not None:
        parts.append(REGS32[m.base])
    if m.index is not None:
        parts.append(REGS32[m.index] + (f"*{m.scale}" if m.scale != 1 else ""))
    if m.disp or not parts:
        if parts:
            parts.append(f"- {-m.disp:#x}" if m.disp < 0 else f"+ {m.disp:#x}")
            text = " ".join([" + ".join(parts[:-1]), parts[-1]])
        else:
            d = m.disp & 0xFFFFFFFF
            name = symbol_of(d) if symbol_of else None
            text = name if name else f"{d:#x}"
    else:
        text = " + ".join(parts)
    return ("byte " if m.byte else "") + f"[{text}]"


def format_insn(d: Decoded, eip: int, symbol_of=None) -> str:
    ops = ", ".join(format_operand(k, a, symbol_of, eip + d.length)
                    for k, a in zip(d.insn.operands, d.args))
    return f"{d.insn.mnemonic} {ops}".rstrip()
