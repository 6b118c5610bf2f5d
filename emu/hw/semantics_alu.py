"""Semantics of arithmetic, logic, shifts and bit instructions (see
``semantics`` for the conventions).

Where x86 leaves a flag undefined the choices are (docs/DECISIONS.md):
logic ops and shifts clear AF; mul and imul leave ZF SF PF AF alone, div
and idiv every flag; bt* leave OF SF PF AF alone; a shift sets OF as if its
count were 1; a count of 0 changes no flag.
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


# --- shifts and rotates -------------------------------------------------------
# A count of 0 changes no flag.  With an immediate count that is known here;
# with cl the generated code tests it, so cl forms read and write every flag
# they may leave alone.  A memory operand is written back whatever the count.
def _shift(g: Gen, body) -> None:
    w = g.width(0)
    a, store = g.dest(0)
    memory = g.kind(0) in ("m", "mb")
    if g.kind(1) == "i8":
        count = g.args[1] & 31
        if count:
            r, flags = body(g, a, str(count), w)
            store(r, flags)
        elif memory:
            store(a)
        return
    c = g.tmp()
    g.emit(f"{c} = {g.reg(1)} & 31")
    live, g.live = g.live, ALL_FLAGS
    g.emit(f"if {c}:")
    g.indent += 1
    r, flags = body(g, a, c, w)
    if memory:
        g.indent -= 1
        g.emit("else:")
        g.emit(f"    {r} = {a}")
        store(r)
        g.emit(f"if {c}:")
        g.indent += 1
        g.set_flags(flags)
    else:
        store(r, flags)
    g.indent -= 1
    g.live = live


def _shl_body(g, a, c, w):
    r, t = g.tmp(), g.tmp()
    g.emit(f"{t} = {a} << {c}")
    g.emit(f"{r} = {t} & {mask(w)}")
    cf = f"({t} >> {w}) & 1"
    return r, {"cf": cf, "of": f"({r} >> {w - 1}) ^ (({t} >> {w}) & 1)", **result_flags(r, w)}


def _shr_body(g, a, c, w):
    r = g.tmp()
    g.emit(f"{r} = {a} >> {c}")
    return r, {"cf": f"({a} >> ({c} - 1)) & 1", "of": f"{a} >> {w - 1}", **result_flags(r, w)}


def _sar_body(g, a, c, w):
    r, s = g.tmp(), g.tmp()
    g.emit(f"{s} = {signed(a, w)}")
    g.emit(f"{r} = ({s} >> {c}) & {mask(w)}")
    return r, {"cf": f"({s} >> ({c} - 1)) & 1", "of": "0", **result_flags(r, w)}


def _rotation(g, c, w) -> str:
    if w == 32:
        return c
    e = g.tmp()
    g.emit(f"{e} = {c} & 7")
    return e


def _rol_body(g, a, c, w):
    e = _rotation(g, c, w)
    r = g.tmp()
    g.emit(f"{r} = (({a} << {e}) | ({a} >> ({w} - {e}))) & {mask(w)}")
    return r, {"cf": f"{r} & 1", "of": f"({r} >> {w - 1}) ^ ({r} & 1)"}


def _ror_body(g, a, c, w):
    e = _rotation(g, c, w)
    r = g.tmp()
    g.emit(f"{r} = (({a} >> {e}) | ({a} << ({w} - {e}))) & {mask(w)}")
    return r, {"cf": f"{r} >> {w - 1}", "of": f"(({r} >> {w - 1}) ^ ({r} >> {w - 2})) & 1"}


for _mn, _body in (("shl", _shl_body), ("shr", _shr_body), ("sar", _sar_body),
                   ("rol", _rol_body), ("ror", _ror_body)):
    def _gen(g: Gen, _body=_body) -> None:
        _shift(g, _body)
    sem(_mn, reads=ALL_FLAGS, writes=ALL_FLAGS)(_gen)


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


@sem("bswap")
def _bswap(g: Gen) -> None:
    v = g.reg(g.args[0])
    g.set_reg(g.args[0], f"int.from_bytes({v}.to_bytes(4, 'little'), 'big')")

