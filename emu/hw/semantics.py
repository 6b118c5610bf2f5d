"""What each instruction does, as Python source for the block translator.

One generator per mnemonic, registered with ``@sem(...)``, declaring the
flags it reads and writes.  A generator receives a ``Gen`` (operand access
and code emission for one instruction) and emits straight-line Python that
works on locals: registers are ``eax`` .. ``edi``, flags ``cf zf sf of pf
af`` (see below).  Memory goes through ``rd32/wr32/rd8/wr8``, which may raise
a ``GuestFault``; every generator does its memory accesses before it changes
any register or flag, so a faulting instruction changes nothing and can be
restarted.  A generator whose row is a branch ends with a ``return`` of the
next eip.  The generators live by family in ``semantics_alu`` (arithmetic,
logic, bits), ``semantics_shift`` (shifts and rotates), ``semantics_move``
(data movement, stack, flags) and ``semantics_flow`` (branches), imported
at the bottom of this module.

Flags in generated code: ``cf zf sf of`` are 0/1 (or bool).  PF and AF are
lazy, so that the common case pays one assignment each: ``pf`` holds the
result whose low byte's parity is PF, and ``af`` a value such that AF is bit
4 of ``af ^ pf`` (for an addition ``a + b`` that is ``a ^ b``: the carry into
bit 4 is bit 4 of ``a ^ b ^ result``).  Every instruction that writes one of
them writes both.  ``PFB[pf & 0xFF]`` is PF's EFLAGS bit (4 or 0).  DF and IF
are not block locals: ``cpu.df`` and ``cpu.iflag``.

Operand widths: kinds ``b``, ``mb`` and ``al`` are 8 bits, the others 32;
``Gen.width(i)`` says which, and the arithmetic helpers take it.

System instructions (``isa.SYSTEM`` / ``isa.PRIV`` rows) are not here: the
CPU executes them itself (``sysinsns.py``).  An import-time check in ``cpu.py``
makes sure every row of the ISA table has semantics in one place or the other.
"""

from __future__ import annotations

from ..isa import REGS32, Mem

M = 0xFFFFFFFF
ALL_FLAGS = frozenset({"cf", "zf", "sf", "of", "pf", "af"})
# PFB[byte]: EFLAGS.PF (bit 2) for a result whose low byte is ``byte``.
PFB = tuple(0 if bin(b).count("1") & 1 else 4 for b in range(256))
BYTE_KINDS = ("b", "mb", "al")


class Sem:
    __slots__ = ("gen", "reads", "writes", "faults")

    def __init__(self, gen, reads, writes, faults):
        self.gen = gen
        self.reads = frozenset(reads)
        self.writes = frozenset(writes)
        self.faults = faults


SEMANTICS: dict[str, Sem] = {}


def sem(*mnemonics: str, reads=(), writes=(), faults: bool = False):
    """Register a generator for ``mnemonics``; ``faults`` marks generators
    that can raise other than through a memory operand (div, the stack)."""
    def deco(fn):
        for mn in mnemonics:
            SEMANTICS[mn] = Sem(fn, reads, writes, faults)
        return fn
    return deco


class Gen:
    """Emission context for one instruction of a block."""

    def __init__(self, insn, args, pos: int, next_pos: int, live: frozenset):
        self.insn = insn
        self.args = args
        # Where the instruction is and where the next one begins: offsets
        # from the block's first eip, ``E`` in the code (``at``).
        self.pos = pos
        self.next_pos = next_pos
        self.live = live             # flags live after this instruction
        self.lines: list[str] = []
        self.regs_read: set[int] = set()
        self.regs_written: set[int] = set()
        self.mem_refs = 0
        self.stores = 0              # memory writes (``translate``'s code check)
        self.indent = 0
        self._tmp = 0

    # --- emission ------------------------------------------------------
    @staticmethod
    def at(offset: int) -> str:
        """The address ``offset`` bytes from the block's first eip."""
        if offset == 0:
            return "E"
        return f"(E {'-' if offset < 0 else '+'} {abs(offset)}) & 0xFFFFFFFF"

    def emit(self, line: str) -> None:
        self.lines.append("    " * self.indent + line)

    def tmp(self) -> str:
        self._tmp += 1
        return f"t{self._tmp}"

    def let(self, expr: str) -> str:
        """``expr`` in a fresh local (or itself when it is one already)."""
        if expr.isidentifier() or expr.isdigit():
            return expr
        t = self.tmp()
        self.emit(f"{t} = {expr}")
        return t

    def flag(self, name: str, expr: str) -> None:
        """Set a flag, only if somebody will read it."""
        if name in self.live:
            self.emit(f"{name} = {expr}")

    # --- registers -----------------------------------------------------
    def reg(self, n: int) -> str:
        self.regs_read.add(n)
        return REGS32[n]

    def set_reg(self, n: int, expr: str) -> None:
        self.regs_written.add(n)
        self.regs_read.add(n)   # loaded at block entry so write-back is exact
        self.emit(f"{REGS32[n]} = {expr}")

    def reg8(self, n: int) -> str:
        base = self.reg(n & 3)
        return f"({base} & 0xFF)" if n < 4 else f"(({base} >> 8) & 0xFF)"

    def set_reg8(self, n: int, expr: str) -> None:
        r = n & 3
        name = self.reg(r)
        if n < 4:
            self.set_reg(r, f"({name} & 0xFFFFFF00) | ({expr})")
        else:
            self.set_reg(r, f"({name} & 0xFFFF00FF) | (({expr}) << 8)")

    # --- memory ----------------------------------------------------------
    def addr(self, m: Mem) -> str:
        """An expression for the operand's va (32-bit wrapped)."""
        terms = []
        if m.base is not None:
            terms.append(self.reg(m.base))
        if m.index is not None:
            idx = self.reg(m.index)
            terms.append(idx if m.scale == 1 else f"{idx} * {m.scale}")
        if m.disp:
            terms.append(str(m.disp & M))
        if not terms:
            return "0"
        if len(terms) == 1 and m.disp == 0 and m.index is None:
            return terms[0]
        if len(terms) == 1 and m.base is None and m.index is None:
            return terms[0]
        return f"(({' + '.join(terms)}) & 0xFFFFFFFF)"

    def addr_tmp(self, m: Mem) -> str:
        return self.let(self.addr(m))

    def load(self, a: str, byte: bool = False) -> str:
        self.mem_refs += 1
        return f"rd8({a})" if byte else f"rd32({a})"

    def store(self, a: str, expr: str, byte: bool = False) -> None:
        self.mem_refs += 1
        self.stores += 1
        self.emit(f"wr8({a}, {expr})" if byte else f"wr32({a}, {expr})")

    # --- generic operands (by operand index) -------------------------------
    def kind(self, i: int) -> str:
        return self.insn.operands[i]

    def width(self, i: int = 0) -> int:
        """Bits of operand ``i``: 8 or 32."""
        return 8 if self.insn.operands[i] in BYTE_KINDS else 32

    def read(self, i: int) -> str:
        """Emit what is needed and return an expression (a local or a
        literal) holding the value of operand ``i``."""
        k, a = self.insn.operands[i], self.args[i]
        if k == "r":
            return self.reg(a)
        if k in ("b", "al"):
            return self.reg8(a)
        if k in ("i", "i8", "i16"):
            return str(a & M)
        if k in ("m", "mb"):
            t = self.tmp()
            self.emit(f"{t} = {self.load(self.addr(a), k == 'mb')}")
            return t
        if k == "cl":
            return f"({self.reg(1)} & 0xFF)"
        raise AssertionError(f"operand kind {k} not readable here")

    def dest(self, i: int):
        """Prepare operand ``i`` as a destination; returns (value_expr,
        commit) where ``commit(result, flags)`` stores the result and sets the
        flags (a dict name -> expr) in a restartable order: a memory store
        (which may fault) before any flag; a register after the flags (which
        may read its old value).  For memory the address is computed once."""
        k, a = self.insn.operands[i], self.args[i]
        if k in ("m", "mb"):
            byte = k == "mb"
            at = self.addr_tmp(a)
            t = self.tmp()
            self.emit(f"{t} = {self.load(at, byte)}")

            def commit_mem(result, flags=None):
                self.store(at, result, byte)
                self.set_flags(flags)
            return t, commit_mem
        if k not in ("r", "b"):
            raise AssertionError(f"operand kind {k} not writable")

        def commit_reg(result, flags=None):
            self.set_flags(flags)
            self.store_only(i, result)
        return (self.reg(a) if k == "r" else self.let(self.reg8(a))), commit_reg

    def set_flags(self, flags) -> None:
        for name, expr in (flags or {}).items():
            self.flag(name, expr)

    def store_only(self, i: int, expr: str) -> None:
        """Write operand ``i`` without reading it first."""
        k, a = self.insn.operands[i], self.args[i]
        if k == "r":
            self.set_reg(a, expr)
        elif k in ("b", "al"):
            self.set_reg8(a, expr)
        else:
            self.store(self.addr(a), expr, k == "mb")


def result_flags(r: str, width: int = 32) -> dict:
    """ZF, SF and PF of a result; AF 0 (where x86 leaves it undefined)."""
    return {"zf": f"{r} == 0", "sf": f"{r} >> {width - 1}", "pf": r, "af": r}


def af_of(a: str, b: str) -> str:
    """The lazy AF of ``a + b`` or ``a - b`` (see the module doc)."""
    if b.isdigit():
        return a if not int(b) & 0x10 else f"{a} ^ 16"
    return f"{a} ^ {b}"


def arith_flags(a: str, b: str, r: str, width: int, cf: str, of: str) -> dict:
    """Every arithmetic flag of ``r = a op b`` (add and subtract alike)."""
    return {"cf": cf, "of": of, "zf": f"{r} == 0", "sf": f"{r} >> {width - 1}",
            "pf": r, "af": af_of(a, b)}


def signed(x: str, width: int = 32) -> str:
    if width == 8:
        return f"({x} - 0x100 if {x} & 0x80 else {x})"
    return f"({x} - 0x100000000 if {x} & 0x80000000 else {x})"


def mask(width: int) -> str:
    return "0xFF" if width == 8 else "0xFFFFFFFF"


# The families register themselves on import.
from . import semantics_alu, semantics_flow, semantics_move, semantics_shift  # noqa: E402,F401
