"""Differential testing of the ISA against a real x86 model.

Every form of ``isa.TABLE`` (but the system rows whose effect is the
project's own, ``Insn.differs``) runs one instruction at a time on the
project's CPU and on Unicorn (QEMU's x86, 32-bit protected mode, flat),
from the same random registers, flags, data page and stack page.  The x86
bytes come from keystone (NASM syntax) assembling the same instruction
text; the project's bytes from ``isa.encode``.  Compared afterwards:
the eight registers, eip (taken / not taken / the same target), the flags
the machine models (CF PF AF ZF SF OF DF IF) less those the SDM leaves
undefined for that row and those operand values, the data and stack
bytes, and the exception raised if any.

    python tests/x86diff.py [--cases N] [--seed S] [FORM ...]

runs the long profile (the test suite runs ``CASES_DEFAULT`` per form).
A form is ``mnemonic:kinds``, e.g. ``add:m,i``.
"""

from __future__ import annotations

import ctypes
import os
import random
import sys

from keystone import KS_ARCH_X86, KS_MODE_32, KS_OPT_SYNTAX_NASM, Ks
from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_32, Uc, UcError
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uclib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emu import isa  # noqa: E402
from emu.cost import CostModel  # noqa: E402
from emu.hw.cpu import Cpu, Stop  # noqa: E402
from emu.hw.exceptions import DE, UD  # noqa: E402
from emu.hw.memory import PhysMem  # noqa: E402
from emu.hw.mmu import Mmu  # noqa: E402
from emu.hw.tlb import Tlb  # noqa: E402

CASES_DEFAULT = 300
ENCODINGS = 50               # distinct encodings per form; the cases share them
M = 0xFFFFFFFF
CODE_OURS = 0x1000           # encoding k at CODE_OURS + 16*k (project bytes)
CODE_X86 = 0x100000          # form n's encoding k at x86_base(n) + 16*k (x86 bytes)
CODE_X86_SIZE = 0x100000
DATA, DATA_SIZE = 0x20000, 0x2000
STACK, STACK_SIZE = 0x30000, 0x1000
MODELLED = isa.CF | isa.PF | isa.AF | isa.ZF | isa.SF | isa.OF | isa.DF | isa.IF
COUNTED = isa.COUNTED          # a count (the last operand) masked to 5 bits
STRING_X86 = {"movsd": b"\xa5", "movsb": b"\xa4", "stosd": b"\xab", "stosb": b"\xaa",
              "lodsd": b"\xad", "lodsb": b"\xac", "scasd": b"\xaf", "scasb": b"\xae",
              "cmpsd": b"\xa7", "cmpsb": b"\xa6"}
# The repeat prefixes of the rows "rep movsd", "repe cmpsb", "repne scasd" ...
PREFIX_X86 = {"rep": b"\xf3", "repe": b"\xf3", "repne": b"\xf2"}
COUNTING = ("loop", "loope", "loopne", "jecxz")
# Unicorn register ids in the project's order (eax .. edi), then EFLAGS.
_UC_REGS = (X.UC_X86_REG_EAX, X.UC_X86_REG_ECX, X.UC_X86_REG_EDX, X.UC_X86_REG_EBX,
            X.UC_X86_REG_ESP, X.UC_X86_REG_EBP, X.UC_X86_REG_ESI, X.UC_X86_REG_EDI,
            X.UC_X86_REG_EFLAGS, X.UC_X86_REG_EIP)


def split_prefix(mnemonic: str) -> tuple[str | None, str]:
    """("repe", "cmpsb") for "repe cmpsb"; (None, mnemonic) without a prefix."""
    prefix, _, name = mnemonic.rpartition(" ")
    return prefix or None, name


def forms() -> list[isa.Insn]:
    """The rows compared with x86."""
    return [row for row in isa.TABLE if row.differs is None]


# --- the two machines ---------------------------------------------------------
class _ProbeCpu(Cpu):
    """The project's CPU, recording an exception instead of delivering it."""

    fault: int | None = None

    def _exception(self, f, eip):
        self.fault = f.vector
        return Stop("fault")


class Ours:
    """The project's CPU on a small physical memory, paging off, CPL 0."""

    def __init__(self):
        self.mem = PhysMem(0x40000)
        costs = CostModel()
        self.mmu = Mmu(self.mem, Tlb(name="itlb"), Tlb(name="dtlb"), costs)
        self.cpu = _ProbeCpu(self.mmu, costs)

    def load_code(self, blobs: list[bytes]) -> None:
        for k, blob in enumerate(blobs):
            self.mem.write(CODE_OURS + 16 * k, blob.ljust(16, b"\0"))
        for pn in range(CODE_OURS >> 12, (CODE_OURS + 16 * len(blobs) + 4095) >> 12):
            self.mmu.code_written(pn)

    def run(self, addr: int, regs: list[int], eflags: int, data: bytes, stack: bytes):
        cpu, mem = self.cpu, self.mem
        mem.write(DATA, data)
        mem.write(STACK, stack)
        cpu.r[:] = regs
        cpu.set_eflags(eflags)
        cpu.eip = addr
        cpu.fault = None
        cpu.run(1, 1 << 40)
        return (list(cpu.r), cpu.eflags, cpu.eip, cpu.fault,
                mem.read(DATA, DATA_SIZE), mem.read(STACK, STACK_SIZE))


class X86:
    """Unicorn, with its registers reached through the C batch calls (the
    Python wrappers cost ~8 us a register)."""

    def __init__(self):
        self.uc = Uc(UC_ARCH_X86, UC_MODE_32)
        for base, size in ((CODE_X86, CODE_X86_SIZE), (DATA, DATA_SIZE), (STACK, STACK_SIZE)):
            self.uc.mem_map(base, size)
        self.intno: int | None = None
        self.uc.hook_add(UC_HOOK_INTR, self._intr)
        # An exception the hook takes is never delivered, so QEMU would take
        # the next one as raised during its delivery (a double fault): the
        # CPU state is restored after each exception.
        self.clean = self.uc.context_save()
        n = len(_UC_REGS)
        self._ids = (ctypes.c_int32 * n)(*_UC_REGS)
        self._vals = (ctypes.c_uint64 * n)()
        self._ptrs = (ctypes.c_void_p * n)(*[ctypes.addressof(self._vals) + 8 * i
                                            for i in range(n)])

    def _intr(self, uc, intno, user_data):
        if self.intno is None:        # the first: delivering it may raise more
            self.intno = intno
        uc.emu_stop()

    def load_code(self, base: int, blobs: list[bytes]) -> None:
        code = b"".join(b.ljust(16, b"\x90") for b in blobs)
        self.uc.mem_write(base, code)
        self.uc.ctl_remove_cache(base, base + len(code))   # no stale translations

    def run(self, addr: int, length: int, regs: list[int], eflags: int, data: bytes,
            stack: bytes, rep: bool = False):
        uc, vals = self.uc, self._vals
        uc.mem_write(DATA, data)
        uc.mem_write(STACK, stack)
        for i, v in enumerate(regs):
            vals[i] = v
        vals[8] = eflags
        uclib.uc_reg_write_batch(uc._uch, self._ids, self._ptrs, 9)
        self.intno = None
        try:
            # QEMU counts each iteration of a rep as an instruction: a rep
            # runs until it leaves (ecx is small), anything else one step.
            uc.emu_start(addr, addr + length, count=0 if rep else 1)
            fault = self.intno
        except UcError as e:
            # #UD; anything else (an unmapped access) is reported as a difference
            fault = UD if "Invalid instruction" in str(e) else f"unicorn: {e}"
        uclib.uc_reg_read_batch(uc._uch, self._ids, self._ptrs, len(_UC_REGS))
        if fault is not None:
            uc.context_restore(self.clean)
        return ([vals[i] for i in range(8)], vals[8], vals[9], fault,
                bytes(uc.mem_read(DATA, DATA_SIZE)), bytes(uc.mem_read(STACK, STACK_SIZE)))


_machines: dict = {}
_slot = 0


def machines():
    if not _machines:
        ks = Ks(KS_ARCH_X86, KS_MODE_32)
        ks.syntax = KS_OPT_SYNTAX_NASM
        _machines.update(ours=Ours(), x86=X86(), ks=ks)
    return _machines["ours"], _machines["x86"], _machines["ks"]


# --- encodings ------------------------------------------------------------------
GPR = (0, 1, 2, 3, 5, 6, 7)     # any but esp as a base or index


class Encoding:
    """One instruction (row and operand values) in both encodings."""

    def __init__(self, row: isa.Insn, args: tuple, text: str, ours: bytes, x86: bytes,
                 k: int, x86_addr: int, target: int | None):
        self.row, self.args, self.text = row, args, text
        self.ours, self.x86, self.target = ours, x86, target
        self.ours_addr = CODE_OURS + 16 * k
        self.x86_addr = x86_addr

    @property
    def mem(self) -> isa.Mem | None:
        return next((a for kind, a in zip(self.row.operands, self.args)
                     if kind in isa.MEM_KINDS), None)


def _imm32(rng) -> int:
    return rng.choice((0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFFFFFF, 0x80000000, M, M - 1,
                       rng.getrandbits(8), rng.getrandbits(16), rng.getrandbits(32),
                       rng.getrandbits(32)))


def _imm8(row, rng) -> int:
    if row.mnemonic in COUNTED or row.mnemonic.startswith("bt"):
        return rng.choice((0, 1, 1, 2, 7, 8, 9, 15, 16, 31, 32, 33, rng.randrange(256),
                           rng.randrange(40)))
    return rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256), rng.randrange(256)))


def _memory(rng) -> isa.Mem:
    base = rng.choice((None,) + GPR + GPR)
    index = rng.choice((None, None) + GPR)
    if base is None and index is None:
        return isa.Mem(None, None, 1, rng.randrange(DATA + 0x200, DATA + DATA_SIZE - 0x200))
    disp = rng.choice((0, 0, rng.randint(-128, 127), rng.randint(-0x10000, 0x10000)))
    return isa.Mem(base, index, rng.choice((1, 2, 4, 8)), disp)


def _mem_text(m: isa.Mem) -> str:
    return isa.format_operand("m", isa.Mem(m.base, m.index, m.scale, m.disp))


def _text(row: isa.Insn, args: tuple, target: int | None) -> str:
    ops = []
    for kind, a in zip(row.operands, args):
        if kind in ("m", "mb"):
            size = "" if row.mnemonic in isa.UNSIZED_MEMORY else (
                "byte " if kind == "mb" else "dword ")
            ops.append(size + _mem_text(a))
        elif kind == "rel":
            ops.append(f"{target:#x}")
        elif kind == "i8" and row.mnemonic.startswith("bt"):
            ops.append(f"{a & 0x7F:#x}")   # keystone refuses more; make_encoding patches it
        else:
            ops.append(isa.format_operand(kind, a))
    return f"{row.mnemonic} {', '.join(ops)}".rstrip()


def make_encoding(row: isa.Insn, k: int, rng, ks, x86_base: int) -> Encoding:
    args: list = []
    mem = None
    for kind in row.operands:
        if kind in ("m", "mb"):
            mem = _memory(rng)
            args.append(isa.Mem(mem.base, mem.index, mem.scale, mem.disp, kind == "mb"))
        elif kind in ("r", "b"):
            # not esp as a jump target: it must point into the stack page
            args.append(rng.choice((0, 1, 2, 3, 5, 6, 7)) if row.mnemonic in ("jmp", "call")
                        else rng.randrange(8))
        elif kind == "i":
            args.append(_imm32(rng))
        elif kind == "i8":
            args.append(_imm8(row, rng))
        elif kind == "i16" and row.mnemonic == "ret":
            # The count of bytes ret pops: the SDM adds it unsigned; Unicorn
            # (QEMU) sign-extends it -- they agree below 0x8000 (DECISIONS.md)
            args.append(rng.choice((0, 4, 16, rng.randrange(0x8000))))
        elif kind == "i16":
            args.append(rng.choice((0, 4, 16, rng.randrange(0x10000))))
        elif kind == "rel":
            args.append(0)
        else:   # cl, dx, al: implicit
            args.append({"cl": isa.ECX, "dx": isa.EDX, "al": isa.EAX}[kind])
    if row.mnemonic == "enter":
        args[1] = rng.choice((0, 1, 2, 3, rng.randrange(32), rng.randrange(256)))
    if mem is not None and row.operands[1:2] == ("r",) and row.mnemonic.startswith("bt"):
        # a bit string offset: not the register that addresses it
        args[1] = rng.choice([r for r in range(8) if r not in (mem.base, mem.index, 4)])
    target = None
    x86_addr = x86_base + 16 * k
    if "rel" in row.operands:
        # near (loop and jecxz reach 127 bytes), never the instruction itself or the next
        target = x86_addr + rng.choice((-1, 1)) * rng.randint(24, 100)
        nxt = CODE_OURS + 16 * k + isa.length_of(row)
        args[row.operands.index("rel")] = (target - nxt) & M
    ours = isa.encode(row, tuple(args))
    text = _text(row, tuple(args), target)
    prefix, name = split_prefix(row.mnemonic)
    if name in STRING_X86:
        x86 = PREFIX_X86.get(prefix, b"") + STRING_X86[name]
    else:
        try:
            enc, _ = ks.asm(text, x86_addr)
        except Exception as e:
            raise AssertionError(f"keystone cannot assemble {text!r}: {e}") from None
        if not enc:
            raise AssertionError(f"keystone cannot assemble {text!r}")
        x86 = bytes(enc)
        if row.mnemonic.startswith("bt") and row.operands[1] == "i8":
            x86 = x86[:-1] + bytes([args[1]])      # the imm8 is the last byte
            text = text.rsplit(",", 1)[0] + f", {args[1]:#x}"
    return Encoding(row, tuple(args), text, ours, x86, k, x86_addr, target)


# --- states ---------------------------------------------------------------------------
def _place(enc: Encoding, regs: list[int], rng) -> None:
    """Set the base/index registers so the memory operand lands in the data page."""
    m = enc.mem
    if m is None or (m.base is None and m.index is None):
        return
    ea = rng.randrange(DATA + 0x200, DATA + DATA_SIZE - 0x200)
    if m.index is None:
        regs[m.base] = (ea - m.disp) & M
    elif m.base is None:
        regs[m.index] = ((ea - m.disp) // m.scale) & M
    elif m.base == m.index:
        regs[m.base] = ((ea - m.disp) // (1 + m.scale)) & M
    else:
        regs[m.index] = rng.randrange(64)
        regs[m.base] = (ea - m.disp - regs[m.index] * m.scale) & M


def _ea(m: isa.Mem, regs: list[int]) -> int:
    a = m.disp
    if m.base is not None:
        a += regs[m.base]
    if m.index is not None:
        a += regs[m.index] * m.scale
    return a & M


def make_state(enc: Encoding, rng):
    row, mn = enc.row, enc.row.mnemonic
    regs = [rng.choice((0, 1, M, 0x80000000, rng.getrandbits(8), rng.getrandbits(32),
                        rng.getrandbits(32))) for _ in range(8)]
    regs[4] = STACK + 0x800 - 4 * rng.randrange(64)
    flags = 2 | sum(bit for bit in (isa.CF, isa.PF, isa.AF, isa.ZF, isa.SF, isa.OF,
                                    isa.DF, isa.IF) if rng.random() < 0.5)
    data = bytearray(rng.randbytes(DATA_SIZE))
    stack = bytearray(rng.randbytes(STACK_SIZE))
    if mn in ("enter", "leave"):
        regs[5] = STACK + 0x600 + 4 * rng.randrange(64)
    if mn in ("div", "idiv") and rng.random() < 0.6:
        regs[2] = rng.randrange(4) if mn == "div" else (M if regs[0] >> 31 else 0)
    prefix, name = split_prefix(mn)
    if mn in COUNTING or prefix:
        regs[1] = rng.choice((0, 1, 2, rng.randrange(12)))
    if name in STRING_X86:
        regs[6] = rng.randrange(DATA + 0x100, DATA + DATA_SIZE - 0x100)
        regs[7] = rng.choice((rng.randrange(DATA + 0x100, DATA + DATA_SIZE - 0x100),
                              regs[6] + rng.randint(-8, 8)))
    if name in isa.COMPARE_STRINGS:
        _equal_elements(name, regs, flags, data, rng)
    if mn in COUNTED and row.operands[-1] == "cl" and rng.random() < 0.7:
        regs[1] = (regs[1] & ~0xFF) | rng.choice((0, 1, 2, 7, 8, 9, 10, 17, 18, 27, 31, 32,
                                                  33))
    _place(enc, regs, rng)
    m = enc.mem
    if mn in ("bsf", "bsr") and rng.random() < 0.4:
        # a source of 0 (dst kept, ZF=1) or of few bits
        value = rng.choice((0, 0, 1 << rng.randrange(32), rng.getrandbits(32) & 0x80000F00))
        if m is None:
            if enc.args[1] != 4:
                regs[enc.args[1]] = value
        else:
            off = _ea(m, regs) - DATA
            data[off:off + 4] = value.to_bytes(4, "little")
    if mn.startswith("bt") and m is not None and row.operands[1] == "r":
        regs[enc.args[1]] = rng.randint(-2048, 2047) & M
    if mn == "cmpxchg" and rng.random() < 0.5 and (m is None or 0 not in (m.base, m.index)):
        if m is None:
            regs[0] = regs[enc.args[0]]
        else:
            off = _ea(m, regs) - DATA
            regs[0] = int.from_bytes(data[off:off + 4], "little")
    if mn in ("jmp", "call", "ret") and "rel" not in row.operands:
        # an indirect target inside the mapped code (Unicorn fetches there)
        to = enc.x86_addr       # not this instruction nor the next (eip would say "at")
        while abs(to - enc.x86_addr) < 32:
            to = CODE_X86 + rng.randrange(CODE_X86_SIZE - 0x1000)   # QEMU reads ahead
        if mn == "ret":
            off = regs[4] - STACK
            stack[off:off + 4] = to.to_bytes(4, "little")
        elif row.operands == ("r",):
            regs[enc.args[0]] = to
        else:
            off = _ea(m, regs) - DATA
            data[off:off + 4] = to.to_bytes(4, "little")
    if mn in ("popfd", "iret"):
        off = regs[4] - STACK
        value = 2 | (rng.getrandbits(32) & MODELLED)
        stack[off:off + 4] = value.to_bytes(4, "little")
    return regs, flags, bytes(data), bytes(stack)


def _equal_elements(name: str, regs: list[int], flags: int, data: bytearray, rng) -> None:
    """Make some of the first elements a cmps/scas meets equal (al/eax or
    [esi] and [edi] alike), so that repe and repne stop at any iteration:
    none, all, or some at random."""
    size = 1 if name.endswith("b") else 4
    step = -size if flags & isa.DF else size
    p = rng.choice((0, 1, 0.3, 0.7, 0.9))
    for j in range(12):
        if rng.random() >= p:
            continue
        d = regs[7] + j * step - DATA
        if name.startswith("scas"):
            data[d:d + size] = (regs[0] & ((1 << 8 * size) - 1)).to_bytes(size, "little")
        else:
            a = regs[6] + j * step - DATA
            data[d:d + size] = data[a:a + size]


# --- comparing --------------------------------------------------------------------------
def undefined_flags(row: isa.Insn, args: tuple, regs: list[int]) -> int:
    """EFLAGS bits x86 leaves undefined for this instruction with these operands."""
    names = set(row.undefined)
    if row.mnemonic in COUNTED:
        count = (args[-1] if row.operands[-1] == "i8" else regs[1]) & 31
        if count == 0:
            return 0       # a count of 0 changes no flag: all of them are defined
        width = 8 if row.operands[0] in ("b", "mb") else 32
        for flag, cond in row.undefined_when:
            if (cond == isa.COUNT_NOT_1 and count != 1) or (
                    cond == isa.COUNT_GE_WIDTH and count >= width):
                names.add(flag)
    return sum(isa.FLAG_BITS[n] for n in names)


def _eip(eip: int, start: int, length: int, target: int | None):
    """eip as the same fact in both machines: at the instruction, after it,
    the branch target, or an address the instruction computed."""
    if eip == start:
        return "at"
    if eip == (start + length) & M:
        return "next"
    if target is not None and eip == target:
        return "target"
    return eip


def compare(enc: Encoding, state, ours, x86) -> str | None:
    """None when both machines agree; else what differs."""
    regs, flags, _, _ = state
    o_regs, o_flags, o_eip, o_fault, o_data, o_stack = ours
    x_regs, x_flags, x_eip, x_fault, x_data, x_stack = x86
    row = enc.row
    problems = []
    if o_fault != x_fault:
        problems.append(f"exception {o_fault} vs {x_fault}")
    oe = _eip(o_eip, enc.ours_addr, len(enc.ours), enc.target)
    xe = _eip(x_eip, enc.x86_addr, len(enc.x86), enc.target)
    if oe != xe:
        problems.append(f"eip {oe} vs {xe}")
    if row.mnemonic == "call" and o_fault is None and x_fault is None:
        # the return address pushed is each machine's own next instruction
        off = o_regs[4] - STACK
        o_ret = int.from_bytes(o_stack[off:off + 4], "little")
        x_ret = int.from_bytes(x_stack[off:off + 4], "little")
        if (o_ret, x_ret) != (enc.ours_addr + len(enc.ours), enc.x86_addr + len(enc.x86)):
            problems.append(f"return address {o_ret:#x} vs {x_ret:#x}")
        o_stack = o_stack[:off] + bytes(4) + o_stack[off + 4:]
        x_stack = x_stack[:off] + bytes(4) + x_stack[off + 4:]
    for i, (a, b) in enumerate(zip(o_regs, x_regs)):
        if a != b:
            problems.append(f"{isa.REGS32[i]} {a:#x} vs {b:#x}")
    mask = MODELLED & ~undefined_flags(row, enc.args, regs)
    if (o_flags ^ x_flags) & mask:
        diff = [n for n, bit in isa.FLAG_BITS.items() if (o_flags ^ x_flags) & mask & bit]
        problems.append(f"eflags {o_flags & mask:#x} vs {x_flags & mask:#x} ({' '.join(diff)})")
    for name, a, b, base in (("data", o_data, x_data, DATA), ("stack", o_stack, x_stack, STACK)):
        if a != b:
            i = next(j for j in range(len(a)) if a[j] != b[j])
            problems.append(f"{name} byte at {base + i:#x}: {a[i]:#04x} vs {b[i]:#04x}")
    if not problems:
        return None
    reg_text = " ".join(f"{isa.REGS32[i]}={v:#x}" for i, v in enumerate(regs))
    return (f"{enc.text!r} (ours {enc.ours.hex()}, x86 {enc.x86.hex()}) from {reg_text} "
            f"eflags={flags:#x}: " + "; ".join(problems))


def _idiv_min_by_minus_1(enc: Encoding, regs: list[int], data: bytes) -> bool:
    if enc.row.mnemonic != "idiv" or (regs[2], regs[0]) != (0x80000000, 0):
        return False
    if enc.row.operands == ("r",):
        return regs[enc.args[0]] == M
    off = _ea(enc.mem, regs) - DATA
    return data[off:off + 4] == b"\xff" * 4


def run_form(row: isa.Insn, cases: int, seed: int = 0) -> tuple[int, list[str]]:
    """Run ``cases`` random cases of ``row`` on both machines: (cases run,
    the disagreements)."""
    ours, x86, ks = machines()
    rng = random.Random(f"{seed}:{row.mnemonic}:{row.form}")
    n_enc = min(ENCODINGS, cases)
    # each form's x86 code at its own place: Unicorn keeps translations
    global _slot
    _slot = (_slot + 1) % ((CODE_X86_SIZE - 0x200) // (16 * ENCODINGS))
    base = CODE_X86 + 0x100 + _slot * 16 * ENCODINGS
    encodings = [make_encoding(row, k, rng, ks, base) for k in range(n_enc)]
    ours.load_code([e.ours for e in encodings])
    x86.load_code(base, [e.x86 for e in encodings])
    failures = []
    for i in range(cases):
        enc = encodings[i % n_enc]
        state = make_state(enc, rng)
        regs, flags, data, stack = state
        o = ours.run(enc.ours_addr, list(regs), flags, data, stack)
        if _idiv_min_by_minus_1(enc, regs, data):
            # QEMU divides on the host and dies of SIGFPE here; x86 raises #DE
            # (the quotient 2^63 does not fit), leaving everything as it was.
            x = (list(regs), flags, enc.x86_addr, DE, data, stack)
        else:
            x = x86.run(enc.x86_addr, len(enc.x86), list(regs), flags, data, stack,
                        split_prefix(row.mnemonic)[0] is not None)
        problem = compare(enc, state, o, x)
        if problem:
            failures.append(problem)
    return cases, failures


def main(argv=None) -> int:
    import argparse
    import time
    ap = argparse.ArgumentParser(description="the ISA against Unicorn, form by form")
    ap.add_argument("--cases", type=int, default=5000, help="cases per form (5000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("forms", nargs="*", help="mnemonic:kinds, e.g. add:m,i (all)")
    args = ap.parse_args(argv)
    rows = forms()
    if args.forms:
        wanted = {tuple(f.split(":")) for f in args.forms}
        rows = [r for r in rows if (r.mnemonic, r.form) in wanted]
    t0 = time.perf_counter()
    bad = total = 0
    for row in rows:
        n, failures = run_form(row, args.cases, args.seed)
        total += n
        if failures:
            bad += 1
            print(f"{row.mnemonic} {row.form}: {len(failures)} of {n} differ; first: "
                  f"{failures[0]}")
    print(f"{len(rows)} forms, {args.cases} cases each ({total:,} in all), "
          f"{bad} forms differ, {time.perf_counter() - t0:.1f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
