"""Semantics of arithmetic, logic and bit instructions (see ``semantics``
for the conventions; the shifts and rotates are in ``semantics_shift``).

Where x86 leaves a flag undefined the choices are (docs/DECISIONS.md):
logic ops clear AF; mul and imul leave ZF SF PF AF alone, div and idiv
every flag; bt* leave OF SF PF AF alone; bsf and bsr leave CF OF SF AF PF
alone (and the destination, when the source is 0).
"""

from __future__ import annotations

from .semantics import (
    ALL_FLAGS,
    Gen,
    arith_flags,
    mask,
    result_flags,
    sem,
    signed,
)


# --- add, subtract, logic ---------------------------------------------------
def _add_like(g: Gen, carry: bool) -> None:
    w = g.width(0)
    a, store = g.dest(0)
    b = g.read(1)
    t, r = g.tmp(), g.tmp()
    g.emit(f"{t} = {a} + {b}" + (" + cf" if carry else ""))
    g.emit(f"{r} = {t} & {mask(w)}")
    store(r, arith_flags(a, b, r, w, f"{t} >> {w}", f"(({a} ^ {r}) & ({b} ^ {r})) >> {w - 1}"))


@sem("add", writes=ALL_FLAGS)
def _add(g: Gen) -> None:
    _add_like(g, False)


@sem("adc", reads={"cf"}, writes=ALL_FLAGS)
def _adc(g: Gen) -> None:
    _add_like(g, True)


def _sub_like(g: Gen, borrow: bool, keep: bool) -> None:
    w = g.width(0)
    a, store = g.dest(0) if keep else (g.read(0), None)
    b = g.read(1)
    r = g.tmp()
    sub = f"({b} + cf)" if borrow else b   # parenthesized: a - (b + cf)
    g.emit(f"{r} = ({a} - {sub}) & {mask(w)}")
    flags = arith_flags(a, b, r, w, f"{a} < {sub}", f"(({a} ^ {b}) & ({a} ^ {r})) >> {w - 1}")
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
    w = g.width(0)
    a, store = g.dest(0) if keep else (g.read(0), None)
    b = g.read(1)
    r = g.tmp()
    g.emit(f"{r} = {a} {op} {b}")
    flags = {"cf": "0", "of": "0", **result_flags(r, w)}
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


_INC_DEC = ALL_FLAGS - {"cf"}


def _inc_dec(g: Gen, op: str, wrap: int) -> None:
    w = g.width(0)
    a, store = g.dest(0)
    r = g.tmp()
    g.emit(f"{r} = ({a} {op} 1) & {mask(w)}")
    # AF: bit 4 of a ^ 1 ^ r, and 1 has no bit 4.
    store(r, {"of": f"{r} == {wrap >> (32 - w):#x}", "zf": f"{r} == 0",
              "sf": f"{r} >> {w - 1}", "pf": r, "af": a})


@sem("inc", writes=_INC_DEC)
def _inc(g: Gen) -> None:
    _inc_dec(g, "+", 0x80000000)


@sem("dec", writes=_INC_DEC)
def _dec(g: Gen) -> None:
    _inc_dec(g, "-", 0x7FFFFFFF)


@sem("neg", writes=ALL_FLAGS)
def _neg(g: Gen) -> None:
    w = g.width(0)
    a, store = g.dest(0)
    r = g.tmp()
    g.emit(f"{r} = (-{a}) & {mask(w)}")
    store(r, arith_flags("0", a, r, w, f"{a} != 0", f"{r} == {0x80 << (w - 8):#x}"))


@sem("not")
def _not(g: Gen) -> None:
    a, store = g.dest(0)
    store(f"{a} ^ {mask(g.width(0))}")


# --- exchange-and-operate ----------------------------------------------------
@sem("xadd", writes=ALL_FLAGS)
def _xadd(g: Gen) -> None:
    # dst, src = dst + src, dst; with one register as both, it ends with the sum.
    a, store = g.dest(0)
    if g.kind(0) == "r":
        a = g.let(a)
    b = g.let(g.read(1))
    t, r = g.tmp(), g.tmp()
    g.emit(f"{t} = {a} + {b}")
    g.emit(f"{r} = {t} & 0xFFFFFFFF")
    flags = arith_flags(a, b, r, 32, f"{t} >> 32", f"(({a} ^ {r}) & ({b} ^ {r})) >> 31")
    if g.kind(0) == "r":
        g.set_flags(flags)
        g.set_reg(g.args[1], a)
        g.set_reg(g.args[0], r)
    else:
        store(r, flags)
        g.set_reg(g.args[1], a)


@sem("cmpxchg", writes=ALL_FLAGS)
def _cmpxchg(g: Gen) -> None:
    # Compare eax with dst: equal -> dst = src; else eax = dst.  The memory
    # form writes dst either way (the old value back), as x86 does.
    k = g.kind(0)
    if k == "m":
        at = g.addr_tmp(g.args[0])
        a = g.tmp()
        g.emit(f"{a} = {g.load(at)}")
    else:
        a = g.let(g.reg(g.args[0]))
    src = g.read(1)
    acc = g.reg(0)
    r = g.tmp()
    g.emit(f"{r} = ({acc} - {a}) & 0xFFFFFFFF")
    flags = arith_flags(acc, a, r, 32, f"{acc} < {a}",
                        f"(({acc} ^ {a}) & ({acc} ^ {r})) >> 31")
    if k == "m":
        g.store(at, f"{src} if {r} == 0 else {a}")
    g.set_flags(flags)
    if k == "r":
        g.emit(f"if {r} == 0:")
        g.indent += 1
        g.set_reg(g.args[0], src)
        g.indent -= 1
        g.emit("else:")
    else:
        g.emit(f"if {r} != 0:")
    g.indent += 1
    g.set_reg(0, a)
    g.indent -= 1


# --- multiply and divide -------------------------------------------------------
@sem("mul", writes={"cf", "of"})
def _mul(g: Gen) -> None:
    b = g.read(0)
    t = g.tmp()
    g.emit(f"{t} = {g.reg(0)} * {b}")
    g.set_reg(0, f"{t} & 0xFFFFFFFF")
    g.set_reg(2, f"{t} >> 32")
    g.flag("cf", f"{t} > 0xFFFFFFFF")
    g.flag("of", f"{t} > 0xFFFFFFFF")


@sem("imul", writes={"cf", "of"})
def _imul(g: Gen) -> None:
    t, r = g.tmp(), g.tmp()
    ops = g.insn.operands
    if len(ops) == 1:               # edx:eax = eax * src
        b = g.read(0)
        g.emit(f"{t} = {signed(g.reg(0))} * {signed(b)}")
        g.emit(f"{r} = {t} & 0xFFFFFFFF")
        g.set_reg(0, r)
        g.set_reg(2, f"({t} >> 32) & 0xFFFFFFFF")
    else:                           # dst = dst * src, or dst = src * imm
        a = g.read(1) if len(ops) == 3 else g.reg(g.args[0])
        b = g.read(2) if len(ops) == 3 else g.read(1)
        g.emit(f"{t} = {signed(a)} * {signed(b)}")
        g.emit(f"{r} = {t} & 0xFFFFFFFF")
        g.set_reg(g.args[0], r)
    g.flag("cf", f"{t} != {signed(r)}")
    g.flag("of", f"{t} != {signed(r)}")


@sem("div", faults=True)
def _div(g: Gen) -> None:
    # The quotient and remainder are both computed before either register
    # is written: the divisor may be eax or edx itself.
    b = g.read(0)
    n, q, rem = g.tmp(), g.tmp(), g.tmp()
    g.emit(f"{n} = ({g.reg(2)} << 32) | {g.reg(0)}")
    g.emit(f"if {b} == 0: raise GuestFault(0)")
    g.emit(f"{q}, {rem} = divmod({n}, {b})")
    g.emit(f"if {q} > 0xFFFFFFFF: raise GuestFault(0)")
    g.set_reg(0, q)
    g.set_reg(2, rem)


@sem("idiv", faults=True)
def _idiv(g: Gen) -> None:
    b = g.read(0)
    n, d, q, rem = g.tmp(), g.tmp(), g.tmp(), g.tmp()
    g.emit(f"{n} = ({g.reg(2)} << 32) | {g.reg(0)}")
    g.emit(f"{n} = {n} - (1 << 64) if {n} >> 63 else {n}")
    g.emit(f"{d} = {signed(b)}")
    g.emit(f"if {d} == 0: raise GuestFault(0)")
    g.emit(f"{q} = abs({n}) // abs({d}) * (1 if ({n} < 0) == ({d} < 0) else -1)")
    g.emit(f"if not -0x80000000 <= {q} <= 0x7FFFFFFF: raise GuestFault(0)")
    g.emit(f"{rem} = ({n} - {q} * {d}) & 0xFFFFFFFF")
    g.set_reg(0, f"{q} & 0xFFFFFFFF")
    g.set_reg(2, rem)


@sem("cdq")
def _cdq(g: Gen) -> None:
    g.set_reg(2, f"0xFFFFFFFF if {g.reg(0)} & 0x80000000 else 0")


@sem("cbw")
def _cbw(g: Gen) -> None:
    # ax = al sign-extended: the upper half of eax stays
    a = g.reg(0)
    g.set_reg(0, f"({a} & 0xFFFF007F) | 0xFF80 if {a} & 0x80 else {a} & 0xFFFF007F")


@sem("cwde")
def _cwde(g: Gen) -> None:
    a = g.reg(0)
    g.set_reg(0, f"({a} & 0x7FFF) | 0xFFFF8000 if {a} & 0x8000 else {a} & 0x7FFF")


# --- bits ----------------------------------------------------------------------
_BIT_OPS = {"bt": None, "bts": "{v} | {m}", "btr": "{v} & ~{m} & 0xFFFFFFFF",
            "btc": "{v} ^ {m}"}


def _bit(g: Gen, op: str | None) -> None:
    """CF = the selected bit; bts/btr/btc then set, clear or flip it.  A
    register offset into memory selects from a bit string: the dword at
    ea + 4 * (offset >> 5) (signed), bit offset & 31."""
    k0, k1 = g.kind(0), g.kind(1)
    if k1 == "i8":
        bit = str(g.args[1] & 31)
    else:
        off = g.let(g.read(1))
        bit = g.tmp()
        g.emit(f"{bit} = {off} & 31")
    if k0 == "m":
        at = g.addr(g.args[0])
        if k1 == "r":
            at = f"(({at} + ({signed(off)} >> 5) * 4) & 0xFFFFFFFF)"
        at = g.let(at)
        v = g.tmp()
        g.emit(f"{v} = {g.load(at)}")
    else:
        v = g.let(g.reg(g.args[0]))
    if op is not None:
        new = op.format(v=v, m=f"(1 << {bit})")
        if k0 == "m":
            g.store(at, new)
    g.flag("cf", f"({v} >> {bit}) & 1")
    if op is not None and k0 == "r":
        g.set_reg(g.args[0], new)


for _mn, _op in _BIT_OPS.items():
    def _gen_bit(g: Gen, _op=_op) -> None:
        _bit(g, _op)
    sem(_mn, writes={"cf"})(_gen_bit)


@sem("bsf", "bsr", writes={"zf"})
def _bit_scan(g: Gen) -> None:
    """dst = the number of the lowest (bsf) or highest (bsr) set bit of src,
    ZF=0; src = 0: ZF=1 and dst kept (as Intel and AMD CPUs do; the SDM
    leaves dst undefined)."""
    v = g.let(g.read(1))
    dst = g.reg(g.args[0])
    g.flag("zf", f"{v} == 0")
    index = (f"({v} & -{v}).bit_length() - 1" if g.insn.mnemonic == "bsf"
             else f"{v}.bit_length() - 1")
    g.set_reg(g.args[0], f"{index} if {v} else {dst}")


@sem("bswap")
def _bswap(g: Gen) -> None:
    v = g.reg(g.args[0])
    g.set_reg(g.args[0], f"int.from_bytes({v}.to_bytes(4, 'little'), 'big')")

