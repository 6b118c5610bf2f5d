"""The instruction set, defined once.

The assembler, the disassembler and the CPU all read ``TABLE``.  Every row is
one (mnemonic, operand form) pair; its opcode is its position in the table.
The encoding and decoding are in ``isacode`` (re-exported here).

Opcodes come in two pages.  Page 1 is one byte: rows 0x01-0x8c, the
instruction set as it first shipped, never renumbered (recorded outputs,
traces and memory hashes depend on those bytes).  Page 2 is the escape byte
``0xFE`` followed by the row's number in that page (0x01-0xff).  Opcode bytes
0x00 and 0xFF are never assigned in either page, so executing zeroed memory
or all-ones raises #UD.

Operand kinds:

    r    32-bit register          eax ecx edx ebx esp ebp esi edi
    b    8-bit register           al cl dl bl ah ch dh bh
    c    control register         cr0 cr2 cr3 cr4
    w    16-bit register          ax cx dx bx sp bp si di (low half; ltr only)
    i    32-bit immediate
    i16  16-bit immediate         (enter's frame size)
    i8   8-bit immediate (unsigned)
    m    dword memory operand     [base + index*scale + disp], [abs]
    mb   byte memory operand      byte [...]
    rel  branch target            label or address
    cl   the register cl          (shift counts)
    dx   the register dx          (port numbers)
    al   the register al          (byte I/O)

Each row also says which flags it sets, which the Intel SDM leaves
undefined, and -- for the few system instructions whose effect is the
project's own by design -- why a real x86 would not do the same
(``differs``); ``emu isa`` prints it all.  There are no 16-bit operand forms
(but ``ltr``'s selector): the machine is a 32-bit one (docs/DECISIONS.md).
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
PF = 1 << 2   # parity of the low byte of the result (1: even)
AF = 1 << 4   # carry out of bit 3 (BCD arithmetic)
ZF = 1 << 6   # zero
SF = 1 << 7   # sign
IF = 1 << 9   # interrupt enable
DF = 1 << 10  # direction: string instructions count down
OF = 1 << 11  # overflow
EFLAGS_FIXED = 1 << 1  # bit 1 always reads as 1
ARITH_FLAGS = CF | PF | AF | ZF | SF | OF
FLAG_BITS = {"CF": CF, "PF": PF, "AF": AF, "ZF": ZF, "SF": SF, "DF": DF, "IF": IF, "OF": OF}
FLAG_ORDER = ("CF", "PF", "AF", "ZF", "SF", "OF", "DF", "IF")

# Classes of instruction, for the CPU's translator.
PLAIN = "plain"        # runs inside a translated block
BRANCH = "branch"      # ends a block; sets the next eip
SYSTEM = "system"      # ends a block; executed by the CPU's system path
PRIV = "priv"          # like SYSTEM, but #GP(0) at CPL 3

ESCAPE = 0xFE          # first byte of a page-2 opcode
PAGE1_ROWS = 0x8C      # rows of page 1 (frozen)

ALU2 = ("add", "adc", "sub", "sbb", "and", "or", "xor", "cmp", "test")
_ALU2_DOC = {"add": "dst += src", "adc": "dst += src + CF", "sub": "dst -= src",
             "sbb": "dst -= src + CF", "and": "dst &= src", "or": "dst |= src",
             "xor": "dst ^= src", "cmp": "the flags of dst - src", "test": "the flags of dst & src"}
ALU2_FORMS = (("r", "r"), ("r", "i"), ("r", "m"), ("m", "r"), ("m", "i"))
ALU2_BYTE_FORMS = (("b", "b"), ("b", "i8"), ("b", "mb"), ("mb", "b"), ("mb", "i8"))
SHIFTS = ("shl", "shr", "sar", "rol", "ror")
# The instructions with a count (imm8 or cl, their last operand) masked to 5
# bits, which change no flag when it is 0.
COUNTED = (*SHIFTS, "rcl", "rcr", "shld", "shrd")
# The x86 condition codes, in encoding order (o no b ae e ne be a s ns p np l ge le g).
CONDITIONS = ("o", "no", "b", "ae", "e", "ne", "be", "a",
              "s", "ns", "p", "np", "l", "ge", "le", "g")
CONDITION_ALIASES = {"c": "b", "nae": "b", "nb": "ae", "nc": "ae", "z": "e", "nz": "ne",
                     "na": "be", "nbe": "a", "pe": "p", "po": "np", "nge": "l", "nl": "ge",
                     "ng": "le", "nle": "g"}
JCC = tuple("j" + c for c in CONDITIONS if c not in ("p", "np"))   # page 1's fourteen
JCC_ALIASES = {"j" + a: "j" + c for a, c in CONDITION_ALIASES.items()}
# Other spellings NASM accepts for a row: condition aliases of setcc/cmovcc/jcc,
# and the 32-bit code's names of the 32-bit forms.
ALIASES = {**JCC_ALIASES,
           **{"set" + a: "set" + c for a, c in CONDITION_ALIASES.items()},
           **{"cmov" + a: "cmov" + c for a, c in CONDITION_ALIASES.items()},
           "sal": "shl", "pusha": "pushad", "popa": "popad",
           "pushf": "pushfd", "popf": "popfd", "iretd": "iret",
           "loopz": "loope", "loopnz": "loopne", "retn": "ret"}
# The first x86 generation with each instruction that came after the 386
# (NASM's ``cpu`` levels, checked against NASM in tests/test_nasm.py): 4 is
# the 486, 5 the Pentium, 6 the Pentium Pro.  Every other row is a 386's.
CPU_LEVEL = {"xadd": 4, "bswap": 4, "invlpg": 4, "cmpxchg": 5,
             **{"cmov" + c: 6 for c in CONDITIONS}}
# The string instructions and their prefixed rows.  F3 is one prefix with
# three names: rep on movs and stos, repe on cmps and scas (which stop when
# ZF says the elements differ); F2 (repne) exists on cmps and scas only.
MOVE_STRINGS = ("movsd", "stosd", "movsb", "stosb")
COMPARE_STRINGS = ("scasb", "scasd", "cmpsb", "cmpsd")
ALIASES.update({f"{p} {s}": f"rep {s}" for p in ("repe", "repz") for s in MOVE_STRINGS})
ALIASES.update({f"{p} {s}": f"repe {s}" for p in ("rep", "repz") for s in COMPARE_STRINGS})
ALIASES.update({f"repnz {s}": f"repne {s}" for s in COMPARE_STRINGS})

# --- flags: what each mnemonic does to them (Intel SDM vol. 2) ----------------
_ARITH = "CF PF AF ZF SF OF"
# mnemonic -> (flags it sets to a defined value, flags x86 leaves undefined)
_FLAGS = {
    **{mn: (_ARITH, "") for mn in ("add", "adc", "sub", "sbb", "cmp", "neg", "xadd",
                                    "cmpxchg")},
    **{mn: ("CF PF ZF SF OF", "AF") for mn in ("and", "or", "xor", "test")},
    **{mn: ("PF AF ZF SF OF", "") for mn in ("inc", "dec")},
    **{mn: ("CF PF ZF SF OF", "AF") for mn in ("shl", "shr", "sar")},
    **{mn: ("CF OF", "") for mn in ("rol", "ror", "rcl", "rcr")},
    **{mn: ("CF PF ZF SF OF", "AF") for mn in ("shld", "shrd")},
    **{mn: ("ZF", "CF PF AF SF OF") for mn in ("bsf", "bsr")},
    **{mn: ("CF OF", "PF AF ZF SF") for mn in ("mul", "imul")},
    **{mn: ("", _ARITH) for mn in ("div", "idiv")},
    **{mn: ("CF", "PF AF SF OF") for mn in ("bt", "bts", "btr", "btc")},
    "popfd": ("CF PF AF ZF SF OF DF IF", ""), "iret": ("CF PF AF ZF SF OF DF IF", ""),
    "sahf": ("CF PF AF ZF SF", ""), "clc": ("CF", ""), "stc": ("CF", ""),
    "cmc": ("CF", ""), "cld": ("DF", ""), "std": ("DF", ""), "cli": ("IF", ""),
    "sti": ("IF", ""), "int": ("IF", ""), "int3": ("IF", ""),
    **{mn: (_ARITH, "") for s in COMPARE_STRINGS for mn in (s, "repe " + s, "repne " + s)},
}
# Flags undefined only for some operand values: (flag, condition), the
# condition one of COUNT_NOT_1 or COUNT_GE_WIDTH (of the masked count).
COUNT_NOT_1 = "count != 1"
COUNT_GE_WIDTH = "count >= width"
_FLAGS_WHEN = {
    **{mn: (("OF", COUNT_NOT_1),) for mn in ("sar", "rol", "ror", "rcl", "rcr", "shld",
                                             "shrd")},
    **{mn: (("OF", COUNT_NOT_1), ("CF", COUNT_GE_WIDTH)) for mn in ("shl", "shr")},
}
# Rows whose effect differs from a real x86's by design (see cpu.py's doc and
# docs/DECISIONS.md): not comparable with an x86 model; tested on their own.
_DIFFERS = {
    **{mn: "delivers through the project's IDT gates (dd handler, attr), fixed selectors"
       for mn in ("int", "int3")},
    "iret": "pops the project's frames (fixed selectors, no segment checks)",
    "hlt": "waits for the project's timer device",
    "lidt": "loads an IDT of the project's gate format (dd handler, attr)",
    "lgdt": "only the TSS descriptor of the GDT is ever read (segments are not modelled)",
    "ltr": "sets the TSS base for ring switches; no segment state",
    "invlpg": "acts on the project's TLB (checked against the paging model instead)",
    "in": ("reads the project's devices (console, timer, power-off), not a PC's; into "
           "any 32-bit register (x86: eax only)"),
    "out": ("writes the project's devices (console, timer, power-off), not a PC's; from "
            "any 32-bit register (x86: eax only)"),
    "mov cr": "paging state; checked against the paging conformance vectors instead",
}


@dataclass(frozen=True)
class Insn:
    """One row of the ISA table."""

    opcode: int        # page 1: the byte; page 2: ESCAPE << 8 | the second byte
    mnemonic: str
    operands: tuple[str, ...]
    kind: str          # PLAIN, BRANCH, SYSTEM or PRIV
    cycles: int        # base cost in the cost model (memory refs extra)
    doc: str
    sets: tuple[str, ...] = ()        # flags given a defined value
    undefined: tuple[str, ...] = ()   # flags the SDM leaves undefined
    undefined_when: tuple[tuple[str, str], ...] = ()  # (flag, condition)
    differs: str | None = None        # why an x86 would not do the same, if so

    @property
    def form(self) -> str:
        return ",".join(self.operands)

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        return (self.mnemonic, self.operands)

    @property
    def code(self) -> bytes:
        """The opcode bytes."""
        return bytes([self.opcode]) if self.opcode < 0x100 else self.opcode.to_bytes(2, "big")


_ROWS: list[tuple[str, tuple[str, ...], str, int, str]] = []


def _row(mn: str, ops: tuple[str, ...], kind: str = PLAIN, cycles: int = 1,
         doc: str = "") -> None:
    _ROWS.append((mn, ops, kind, cycles, doc))


# ============================ page 1 (frozen) ==================================
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
        _row(_mn, _f, doc=_ALU2_DOC[_mn])
_UNARY_DOC = {"inc": "add 1 (CF kept)", "dec": "subtract 1 (CF kept)",
              "neg": "two's complement", "not": "one's complement"}
for _mn in ("inc", "dec", "neg", "not"):
    for _f in (("r",), ("m",)):
        _row(_mn, _f, doc=_UNARY_DOC[_mn])
_SHIFT_DOC = {"shl": "shift left", "shr": "shift right, zeros in", "sar": "shift right, "
              "sign bits in", "rol": "rotate left", "ror": "rotate right"}
for _mn in SHIFTS:
    for _f in (("r", "i8"), ("r", "cl")):
        _row(_mn, _f, doc=_SHIFT_DOC[_mn] + " by a count masked to 5 bits")
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
for _mn in MOVE_STRINGS:
    _row(_mn, (), SYSTEM, 1, "string move/store (DF: forward or backward)")
    _row("rep " + _mn, (), SYSTEM, 1, "repeat ecx times (interruptible)")
_row("ud2", (), SYSTEM, 1, "raise #UD")
assert len(_ROWS) == PAGE1_ROWS, "page 1 is frozen"

# ============================ page 2 ==========================================
for _mn in ALU2:
    for _f in ALU2_BYTE_FORMS:
        _row(_mn, _f, doc=_ALU2_DOC[_mn])
for _mn in ("inc", "dec", "neg", "not"):
    for _f in (("b",), ("mb",)):
        _row(_mn, _f, doc=_UNARY_DOC[_mn])
for _mn in SHIFTS:
    for _f in (("m", "i8"), ("m", "cl"), ("b", "i8"), ("b", "cl"), ("mb", "i8"),
               ("mb", "cl")):
        _row(_mn, _f, doc=_SHIFT_DOC[_mn] + " by a count masked to 5 bits")
_row("movsx", ("r", "b"), doc="sign-extend a byte register")
_row("movsx", ("r", "mb"), doc="sign-extend a byte of memory")
_row("imul", ("r", "m"), cycles=3, doc="dst = dst * src (signed, truncated)")
_row("imul", ("r", "r", "i"), cycles=3, doc="dst = src * imm (signed, truncated)")
_row("imul", ("r", "m", "i"), cycles=3, doc="dst = src * imm (signed, truncated)")
_row("imul", ("r",), cycles=3, doc="edx:eax = eax * src (signed)")
_row("imul", ("m",), cycles=3, doc="edx:eax = eax * src (signed)")
_row("idiv", ("m",), cycles=20, doc="signed division of edx:eax; #DE on 0")
_row("xchg", ("m", "r"), doc="swap memory with a register")
for _mn, _doc in (("xadd", "dst, src = dst + src, dst"),
                  ("cmpxchg", "if eax == dst: dst = src, else eax = dst")):
    _row(_mn, ("r", "r"), doc=_doc)
    _row(_mn, ("m", "r"), cycles=2, doc=_doc + " (always writes dst)")
for _mn, _doc in (("bt", "CF = the bit"), ("bts", "CF = the bit; set it"),
                  ("btr", "CF = the bit; clear it"), ("btc", "CF = the bit; flip it")):
    for _f in (("r", "r"), ("m", "r"), ("r", "i8"), ("m", "i8")):
        _row(_mn, _f, doc=_doc + (" (a bit string: any offset)" if _f == ("m", "r") else ""))
_row("bswap", ("r",), doc="reverse the byte order")
for _c in CONDITIONS:
    _row("set" + _c, ("b",), doc="1 if the condition holds, else 0")
    _row("set" + _c, ("mb",), doc="1 if the condition holds, else 0")
for _c in CONDITIONS:
    _row("cmov" + _c, ("r", "r"), doc="move if the condition holds")
    _row("cmov" + _c, ("r", "m"), doc="move if the condition holds (memory read always)")
_row("jp", ("rel",), BRANCH, doc="jump if the condition holds")
_row("jnp", ("rel",), BRANCH, doc="jump if the condition holds")
_row("jecxz", ("rel",), BRANCH, doc="jump if ecx == 0")
_row("call", ("m",), BRANCH, 2, "call the address in memory")
_row("leave", (), doc="esp = ebp; pop ebp")
_row("enter", ("i16", "i8"), cycles=3, doc="push ebp, copy nesting level frame pointers, "
     "ebp = frame, esp -= size")
for _mn, _doc in (("clc", "CF = 0"), ("stc", "CF = 1"), ("cmc", "CF = !CF"),
                  ("cld", "DF = 0: strings go forward"), ("std", "DF = 1: strings go backward"),
                  ("sahf", "SF ZF AF PF CF = ah"), ("lahf", "ah = SF ZF 0 AF 0 PF 1 CF")):
    _row(_mn, (), doc=_doc)
_row("in", ("al", "i8"), PRIV, 10, "read a byte from an I/O port")
_row("in", ("al", "dx"), PRIV, 10, "read a byte from the I/O port in dx")
_row("out", ("i8", "al"), PRIV, 10, "write a byte to an I/O port")
_row("out", ("dx", "al"), PRIV, 10, "write a byte to the I/O port in dx")
_row("ret", ("i16",), BRANCH, 2, "pop eip; esp += imm (the callee pops its arguments)")
_row("lodsb", (), doc="al = [esi]; esi += 1 (DF=1: esi -= 1)")
_row("lodsd", (), doc="eax = [esi]; esi += 4 (DF=1: esi -= 4)")
_row("scasb", (), doc="the flags of al - [edi]; edi += 1 (DF=1: edi -= 1)")
_row("scasd", (), doc="the flags of eax - [edi]; edi += 4 (DF=1: edi -= 4)")
_row("cmpsb", (), doc="the flags of [esi] - [edi]; esi, edi += 1 (DF=1: -= 1)")
_row("cmpsd", (), doc="the flags of [esi] - [edi]; esi, edi += 4 (DF=1: -= 4)")
for _mn in COMPARE_STRINGS:
    _row("repe " + _mn, (), SYSTEM, 1, "while ecx != 0: compare, ecx -= 1, stop if they "
         "differ (ZF=0); interruptible")
    _row("repne " + _mn, (), SYSTEM, 1, "while ecx != 0: compare, ecx -= 1, stop if they "
         "are equal (ZF=1); interruptible")
_row("loope", ("rel",), BRANCH, doc="ecx -= 1; jump if ecx != 0 and ZF=1")
_row("loopne", ("rel",), BRANCH, doc="ecx -= 1; jump if ecx != 0 and ZF=0")
for _mn, _doc in (("bsf", "dst = the number of the lowest set bit of src; src = 0: ZF=1, "
                          "dst kept"),
                  ("bsr", "dst = the number of the highest set bit of src; src = 0: ZF=1, "
                          "dst kept")):
    _row(_mn, ("r", "r"), doc=_doc)
    _row(_mn, ("r", "m"), doc=_doc)
_row("cbw", (), doc="ax = al sign-extended (the upper half of eax kept)")
_row("cwde", (), doc="eax = ax sign-extended")
for _mn, _doc in (("shld", "shift dst left, bits in from the top of src"),
                  ("shrd", "shift dst right, bits in from the bottom of src")):
    for _f in (("r", "r", "i8"), ("r", "r", "cl"), ("m", "r", "i8"), ("m", "r", "cl")):
        _row(_mn, _f, doc=_doc + " (src kept), by a count masked to 5 bits")
for _mn, _doc in (("rcl", "rotate left through CF"), ("rcr", "rotate right through CF")):
    for _f in (("r", "i8"), ("r", "cl"), ("m", "i8"), ("m", "cl"), ("b", "i8"), ("b", "cl"),
               ("mb", "i8"), ("mb", "cl")):
        _row(_mn, _f, doc=_doc + " by a count masked to 5 bits (a byte: then mod 9)")
_row("int3", (), SYSTEM, 10, "software interrupt 3 (the breakpoint) through the IDT, as "
     "int 3")
_row("pause", (), doc="do nothing (on x86 a hint in a spin loop)")


def _opcode(position: int) -> int:
    if position <= PAGE1_ROWS:
        return position
    n = position - PAGE1_ROWS
    assert n < 0xFF, "page 2 is full (0xff is never assigned: all-ones memory is #UD)"
    return ESCAPE << 8 | n


def _insn(position: int, mn: str, ops: tuple[str, ...], kind: str, cyc: int, doc: str) -> Insn:
    sets, undefined = _FLAGS.get(mn, ("", ""))
    differs = _DIFFERS.get("mov cr" if mn == "mov" and "c" in ops else mn)
    return Insn(_opcode(position), mn, ops, kind, cyc, doc, tuple(sets.split()),
                tuple(undefined.split()), _FLAGS_WHEN.get(mn, ()), differs)


TABLE: tuple[Insn, ...] = tuple(_insn(i + 1, *row) for i, row in enumerate(_ROWS))
BY_OPCODE: dict[int, Insn] = {row.opcode: row for row in TABLE}
BY_KEY: dict[tuple[str, tuple[str, ...]], Insn] = {row.key: row for row in TABLE}
MNEMONICS: frozenset[str] = frozenset(row.mnemonic for row in TABLE)
FORMS: dict[str, list[Insn]] = {}
for _r in TABLE:
    FORMS.setdefault(_r.mnemonic, []).append(_r)
assert not {ESCAPE, 0xFF} & set(BY_OPCODE) and 0xFE00 not in BY_OPCODE

MEM_KINDS = ("m", "mb")
REG_KINDS = ("r", "b", "c", "w")
IMPLICIT_KINDS = ("cl", "dx", "al")   # named by the form, nothing encoded

# --- NASM notation (emu isa, the assembler's messages) --------------------
NOTATION = {"r": "r32", "b": "r8", "w": "r16", "c": "cr", "i": "imm32", "i16": "imm16",
            "i8": "imm8", "m": "m32", "mb": "m8", "rel": "rel32", "cl": "cl", "dx": "dx",
            "al": "al"}
UNSIZED_MEMORY = frozenset({"lea", "lidt", "lgdt", "invlpg"})   # "m": an address only


# Encoding, decoding, formatting and NASM's names of the forms (they read the
# table above).
from .isacode import (  # noqa: E402
    SIZE_SHOWN,
    Decoded,
    DecodeError,
    Mem,
    decode,
    encode,
    encode_mem,
    format_insn,
    format_operand,
    length_of,
    nasm_form_rows,
    nasm_forms,
    notation,
    operand_size,
)

__all__ = ["TABLE", "BY_OPCODE", "BY_KEY", "FORMS", "MNEMONICS", "Insn", "Mem",
           "Decoded", "DecodeError", "decode", "encode", "encode_mem", "format_insn",
           "format_operand", "length_of", "operand_size", "nasm_forms", "nasm_form_rows",
           "notation", "SIZE_SHOWN"]
