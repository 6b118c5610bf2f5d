"""What each instruction does, as Python source for the block translator.

One generator per mnemonic, registered with ``@sem(...)``, declaring the
flags it reads and writes.  A generator receives a ``Gen`` (operand access
and code emission for one instruction) and emits straight-line Python that
works on locals: registers are ``eax`` .. ``edi``, flags ``cf zf sf of``
(0/1 or bool).  Memory goes through ``rd32/wr32/rd8/wr8``, which may raise a
``GuestFault``; every generator does its memory accesses before it changes
any register or flag, so a faulting instruction changes nothing and can be
restarted.  A generator whose row is a branch ends with a ``return`` of the
next eip.

System instructions (``isa.SYSTEM`` / ``isa.PRIV`` rows) are not here: the
CPU executes them itself (``cpu.py``).  An import-time check in ``cpu.py``
makes sure every row of the ISA table has semantics in one place or the other.
"""

from __future__ import annotations

from ..isa import REGS32, Mem

M = 0xFFFFFFFF
ALL_FLAGS = frozenset({"cf", "zf", "sf", "of"})


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
    that can raise other than through a memory operand (div)."""
    def deco(fn):
        for mn in mnemonics:
            SEMANTICS[mn] = Sem(fn, reads, writes, faults)
        return fn
    return deco


class Gen:
    """Emission context for one instruction of a block."""

    def __init__(self, insn, args, eip: int, next_eip: int, live: frozenset):
        self.insn = insn
        self.args = args
        self.eip = eip
        self.next_eip = next_eip
        self.live = live             # flags live after this instruction
        self.lines: list[str] = []
        self.regs_read: set[int] = set()
        self.regs_written: set[int] = set()
        self.mem_refs = 0
        self.indent = 0
        self._tmp = 0

    # --- emission ------------------------------------------------------
    def emit(self, line: str) -> None:
        self.lines.append("    " * self.indent + line)

    def tmp(self) -> str:
        self._tmp += 1
        return f"t{self._tmp}"

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
        a = self.addr(m)
        if a.isidentifier() or a.isdigit():
            return a
        t = self.tmp()
        self.emit(f"{t} = {a}")
        return t

    def load(self, a: str, byte: bool = False) -> str:
        self.mem_refs += 1
        return f"rd8({a})" if byte else f"rd32({a})"

    def store(self, a: str, expr: str, byte: bool = False) -> None:
        self.mem_refs += 1
        self.emit(f"wr8({a}, {expr})" if byte else f"wr32({a}, {expr})")

    # --- generic operands (by operand index) -------------------------------
    def kind(self, i: int) -> str:
        return self.insn.operands[i]

    def read(self, i: int) -> str:
        """Emit what is needed and return an expression (a local or a
        literal) holding the value of operand ``i``."""
        k, a = self.insn.operands[i], self.args[i]
        if k == "r":
            return self.reg(a)
        if k == "b":
            return self.reg8(a)
        if k in ("i", "i8"):
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
            if k == "r":
                self.set_reg(a, result)
            else:
                self.set_reg8(a, result)
        return (self.reg(a) if k == "r" else self.reg8(a)), commit_reg

    def set_flags(self, flags) -> None:
        for name, expr in (flags or {}).items():
            self.flag(name, expr)

    def store_only(self, i: int, expr: str) -> None:
        """Write operand ``i`` without reading it first."""
        k, a = self.insn.operands[i], self.args[i]
        if k == "r":
            self.set_reg(a, expr)
        elif k == "b":
            self.set_reg8(a, expr)
        else:
            self.store(self.addr(a), expr, k == "mb")

    def result_flags(self, res: str) -> None:
        self.flag("zf", f"{res} == 0")
        self.flag("sf", f"{res} >> 31")


def zs(res: str) -> dict:
    """ZF and SF of a 32-bit result."""
    return {"zf": f"{res} == 0", "sf": f"{res} >> 31"}


# --- data movement --------------------------------------------------------
@sem("mov")
def _mov(g: Gen) -> None:
    g.store_only(0, g.read(1))


@sem("movzx")
def _movzx(g: Gen) -> None:
    g.store_only(0, g.read(1))


@sem("lea")
def _lea(g: Gen) -> None:
    g.set_reg(g.args[0], g.addr(g.args[1]))


@sem("xchg")
def _xchg(g: Gen) -> None:
    dst = g.reg(g.args[0])
    if g.kind(1) == "r":
        t = g.tmp()
        g.emit(f"{t} = {dst}")
        g.set_reg(g.args[0], g.reg(g.args[1]))
        g.set_reg(g.args[1], t)
    else:
        at = g.addr_tmp(g.args[1])
        t = g.tmp()
        g.emit(f"{t} = {g.load(at)}")
        g.store(at, dst)
        g.set_reg(g.args[0], t)


# --- arithmetic and logic ---------------------------------------------------
def _add_like(g: Gen, carry: bool) -> None:
    a, store = g.dest(0)
    b = g.read(1)
    t, r = g.tmp(), g.tmp()
    g.emit(f"{t} = {a} + {b}" + (" + cf" if carry else ""))
    g.emit(f"{r} = {t} & 0xFFFFFFFF")
    store(r, {"of": f"(({a} ^ {r}) & ({b} ^ {r})) >> 31", "cf": f"{t} >> 32", **zs(r)})


@sem("add", writes=ALL_FLAGS)
def _add(g: Gen) -> None:
    _add_like(g, False)


@sem("adc", reads={"cf"}, writes=ALL_FLAGS)
def _adc(g: Gen) -> None:
    _add_like(g, True)


def _sub_like(g: Gen, borrow: bool, keep: bool) -> None:
    a, store = g.dest(0) if keep else (g.read(0), None)
    b = g.read(1)
    r = g.tmp()
    sub = f"({b} + cf)" if borrow else b   # parenthesized: a - (b + cf)
    g.emit(f"{r} = ({a} - {sub}) & 0xFFFFFFFF")
    flags = {"of": f"(({a} ^ {b}) & ({a} ^ {r})) >> 31", "cf": f"{a} < {sub}", **zs(r)}
    if store:
        store(r, flags)
    else:
        g.set_flags(flags)


@sem("sub", writes=ALL_FLAGS)
def _sub(g: Gen) -> None:
    _sub_like(g, False, True)


@sem("sbb", reads={"cf"}, writes=ALL_FLAGS)
def _sbb(g: Gen) -> None:
    _sub_like(g, True, True)


@sem("cmp", writes=ALL_FLAGS)
def _cmp(g: Gen) -> None:
    _sub_like(g, False, False)


def _logic(g: Gen, op: str, keep: bool) -> None:
    a, store = g.dest(0) if keep else (g.read(0), None)
    b = g.read(1)
    r = g.tmp()
    g.emit(f"{r} = {a} {op} {b}")
    flags = {"cf": "0", "of": "0", **zs(r)}
    if store:
        store(r, flags)
    else:
        g.set_flags(flags)


@sem("and", writes=ALL_FLAGS)
def _and(g: Gen) -> None:
    _logic(g, "&", True)


@sem("or", writes=ALL_FLAGS)
def _or(g: Gen) -> None:
    _logic(g, "|", True)


@sem("xor", writes=ALL_FLAGS)
def _xor(g: Gen) -> None:
    _logic(g, "^", True)


@sem("test", writes=ALL_FLAGS)
def _test(g: Gen) -> None:
    _logic(g, "&", False)


@sem("inc", writes={"zf", "sf", "of"})
def _inc(g: Gen) -> None:
    a, store = g.dest(0)
    r = g.tmp()
    g.emit(f"{r} = ({a} + 1) & 0xFFFFFFFF")
    store(r, {"of": f"{r} == 0x80000000", **zs(r)})


@sem("dec", writes={"zf", "sf", "of"})
def _dec(g: Gen) -> None:
    a, store = g.dest(0)
    r = g.tmp()
    g.emit(f"{r} = ({a} - 1) & 0xFFFFFFFF")
    store(r, {"of": f"{r} == 0x7FFFFFFF", **zs(r)})


@sem("neg", writes=ALL_FLAGS)
def _neg(g: Gen) -> None:
    a, store = g.dest(0)
    r = g.tmp()
    g.emit(f"{r} = (-{a}) & 0xFFFFFFFF")
    store(r, {"cf": f"{a} != 0", "of": f"{r} == 0x80000000", **zs(r)})


@sem("not")
def _not(g: Gen) -> None:
    a, store = g.dest(0)
    store(f"{a} ^ 0xFFFFFFFF")


# Shifts and rotates: a count of 0 changes no flag.  With an immediate count
# that is known here; with cl the generated code tests it, so cl forms read
# and write every flag they may leave alone (see _shift).
def _shift(g: Gen, body) -> None:
    a, store = g.dest(0)
    if g.kind(1) == "i8":
        count = g.args[1] & 31
        if count:
            body(g, a, store, str(count))
        return
    c = g.tmp()
    g.emit(f"{c} = {g.reg(1)} & 31")
    g.emit(f"if {c}:")
    live, g.live = g.live, ALL_FLAGS
    g.indent += 1
    body(g, a, store, c)
    g.indent -= 1
    g.live = live


_SHIFT_RW = dict(reads=ALL_FLAGS, writes=ALL_FLAGS)


def _shl_body(g, a, store, c):
    r = g.tmp()
    g.emit(f"{r} = ({a} << {c}) & 0xFFFFFFFF")
    cf = f"({a} >> (32 - {c})) & 1"
    _finish_shift(g, store, r, cf, f"({r} >> 31) ^ (({a} >> (32 - {c})) & 1)", True)


def _shr_body(g, a, store, c):
    r = g.tmp()
    g.emit(f"{r} = {a} >> {c}")
    _finish_shift(g, store, r, f"({a} >> ({c} - 1)) & 1", f"{a} >> 31", True)


def _sar_body(g, a, store, c):
    r, s = g.tmp(), g.tmp()
    g.emit(f"{s} = {a} - 0x100000000 if {a} & 0x80000000 else {a}")
    g.emit(f"{r} = ({s} >> {c}) & 0xFFFFFFFF")
    _finish_shift(g, store, r, f"({s} >> ({c} - 1)) & 1", "0", True)


def _rol_body(g, a, store, c):
    r = g.tmp()
    g.emit(f"{r} = (({a} << {c}) | ({a} >> (32 - {c}))) & 0xFFFFFFFF")
    _finish_shift(g, store, r, f"{r} & 1", f"({r} >> 31) ^ ({r} & 1)", False)


def _ror_body(g, a, store, c):
    r = g.tmp()
    g.emit(f"{r} = (({a} >> {c}) | ({a} << (32 - {c}))) & 0xFFFFFFFF")
    _finish_shift(g, store, r, f"{r} >> 31", f"(({r} >> 31) ^ ({r} >> 30)) & 1", False)


def _finish_shift(g, store, r, cf, of, result_flags):
    store(r, {"cf": cf, "of": of, **(zs(r) if result_flags else {})})


for _mn, _body in (("shl", _shl_body), ("shr", _shr_body), ("sar", _sar_body),
                   ("rol", _rol_body), ("ror", _ror_body)):
    def _gen(g: Gen, _body=_body) -> None:
        _shift(g, _body)
    sem(_mn, **_SHIFT_RW)(_gen)


@sem("mul", writes={"cf", "of"})
def _mul(g: Gen) -> None:
    b = g.read(0)
    t = g.tmp()
    g.emit(f"{t} = {g.reg(0)} * {b}")
    g.set_reg(0, f"{t} & 0xFFFFFFFF")
    g.set_reg(2, f"{t} >> 32")
    g.flag("cf", f"{t} > 0xFFFFFFFF")
    g.flag("of", f"{t} > 0xFFFFFFFF")


def _signed(x: str) -> str:
    return f"({x} - 0x100000000 if {x} & 0x80000000 else {x})"


@sem("imul", writes={"cf", "of"})
def _imul(g: Gen) -> None:
    a = g.reg(g.args[0])
    b = g.read(1)
    t, r = g.tmp(), g.tmp()
    g.emit(f"{t} = {_signed(a)} * {_signed(b)}")
    g.emit(f"{r} = {t} & 0xFFFFFFFF")
    g.set_reg(g.args[0], r)
    g.flag("cf", f"{t} != {_signed(r)}")
    g.flag("of", f"{t} != {_signed(r)}")


@sem("div", faults=True)
def _div(g: Gen) -> None:
    b = g.read(0)
    n = g.tmp()
    g.emit(f"{n} = ({g.reg(2)} << 32) | {g.reg(0)}")
    g.emit(f"if {b} == 0 or {n} // {b} > 0xFFFFFFFF: raise GuestFault(0)")
    g.set_reg(0, f"{n} // {b}")
    g.set_reg(2, f"{n} % {b}")


@sem("idiv", faults=True)
def _idiv(g: Gen) -> None:
    b = g.read(0)
    n, d, q = g.tmp(), g.tmp(), g.tmp()
    g.emit(f"{n} = ({g.reg(2)} << 32) | {g.reg(0)}")
    g.emit(f"{n} = {n} - (1 << 64) if {n} >> 63 else {n}")
    g.emit(f"{d} = {_signed(b)}")
    g.emit(f"if {d} == 0: raise GuestFault(0)")
    g.emit(f"{q} = abs({n}) // abs({d}) * (1 if ({n} < 0) == ({d} < 0) else -1)")
    g.emit(f"if not -0x80000000 <= {q} <= 0x7FFFFFFF: raise GuestFault(0)")
    g.set_reg(2, f"({n} - {q} * {d}) & 0xFFFFFFFF")
    g.set_reg(0, f"{q} & 0xFFFFFFFF")


@sem("cdq")
def _cdq(g: Gen) -> None:
    g.set_reg(2, f"0xFFFFFFFF if {g.reg(0)} & 0x80000000 else 0")


@sem("nop")
def _nop(g: Gen) -> None:
    pass


# --- stack ----------------------------------------------------------------
def _push(g: Gen, value: str) -> None:
    sp = g.tmp()
    g.emit(f"{sp} = ({g.reg(4)} - 4) & 0xFFFFFFFF")
    g.store(sp, value)
    g.set_reg(4, sp)


@sem("push")
def _push_gen(g: Gen) -> None:
    _push(g, g.read(0))


@sem("pop")
def _pop(g: Gen) -> None:
    t = g.tmp()
    sp = g.reg(4)
    g.emit(f"{t} = {g.load(sp)}")
    if g.args[0] == 4:      # pop esp: esp gets the popped value
        g.set_reg(4, t)
    else:
        g.set_reg(4, f"({sp} + 4) & 0xFFFFFFFF")
        g.set_reg(g.args[0], t)


@sem("pushfd", reads=ALL_FLAGS)
def _pushfd(g: Gen) -> None:
    _push(g, "(2 | cf | (zf << 6) | (sf << 7) | (cpu.iflag << 9) | (of << 11))")


@sem("pushad")
def _pushad(g: Gen) -> None:
    sp = g.reg(4)
    for i in range(8):
        g.store(f"(({sp} - {4 * (i + 1)}) & 0xFFFFFFFF)", g.reg(i))
    g.set_reg(4, f"({sp} - 32) & 0xFFFFFFFF")


@sem("popad")
def _popad(g: Gen) -> None:
    sp = g.reg(4)
    vals = []
    for i in range(8):
        t = g.tmp()
        g.emit(f"{t} = {g.load(f'(({sp} + {4 * i}) & 0xFFFFFFFF)')}")
        vals.append(t)
    order = [7, 6, 5, 4, 3, 2, 1, 0]   # edi first; esp's slot is skipped
    for t, r in zip(vals, order):
        if r != 4:
            g.set_reg(r, t)
    g.set_reg(4, f"({sp} + 32) & 0xFFFFFFFF")


# --- control flow ---------------------------------------------------------
_CONDS = {
    "jo": "of", "jno": "not of", "jb": "cf", "jae": "not cf",
    "je": "zf", "jne": "not zf", "jbe": "cf or zf", "ja": "not (cf or zf)",
    "js": "sf", "jns": "not sf", "jl": "sf != of", "jge": "sf == of",
    "jle": "zf or sf != of", "jg": "not zf and sf == of",
}
_COND_READS = {mn: {f for f in ALL_FLAGS if f in cond} for mn, cond in _CONDS.items()}


def _target(g: Gen) -> int:
    return (g.next_eip + g.args[0]) & M


for _mn, _cond in _CONDS.items():
    def _gen_jcc(g: Gen, _cond=_cond) -> None:
        g.emit(f"return {_target(g)} if ({_cond}) else {g.next_eip}")
    sem(_mn, reads=_COND_READS[_mn])(_gen_jcc)


@sem("jmp")
def _jmp(g: Gen) -> None:
    if g.kind(0) == "rel":
        g.emit(f"return {_target(g)}")
    else:
        g.emit(f"return {g.read(0)}")


@sem("call")
def _call(g: Gen) -> None:
    target = str(_target(g)) if g.kind(0) == "rel" else g.read(0)
    if not target.isdigit():
        t = g.tmp()
        g.emit(f"{t} = {target}")
        target = t
    _push(g, str(g.next_eip))
    g.emit(f"return {target}")


@sem("ret")
def _ret(g: Gen) -> None:
    t = g.tmp()
    g.emit(f"{t} = {g.load(g.reg(4))}")
    g.set_reg(4, f"({g.reg(4)} + 4) & 0xFFFFFFFF")
    g.emit(f"return {t}")


@sem("loop")
def _loop(g: Gen) -> None:
    g.set_reg(1, f"({g.reg(1)} - 1) & 0xFFFFFFFF")
    g.emit(f"return {_target(g)} if {g.reg(1)} else {g.next_eip}")
