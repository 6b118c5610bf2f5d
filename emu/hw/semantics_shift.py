"""Semantics of the shifts and rotates: shl shr sar rol ror, rcl rcr
(through CF) and shld shrd (two registers' bits); see ``semantics`` for
the conventions.

The count is the last operand, imm8 or cl, masked to 5 bits.  Where x86
leaves a flag undefined the choices are (docs/DECISIONS.md): the shifts
clear AF; OF is computed for every count by the formula the SDM gives for
a count of 1, over this result (rol/rcl: the top bit of the result xor
CF; ror/rcr: the top two bits of the result xored; shld/shrd: the top bit
changed); a byte shl/shr by 8 or more sets CF to the last bit shifted out.
"""

from __future__ import annotations

from .semantics import ALL_FLAGS, Gen, mask, result_flags, sem, signed


# A count of 0 changes no flag.  With an immediate count that is known here;
# with cl the generated code tests it, so cl forms read and write every flag
# they may leave alone.  A memory operand is written back whatever the count.
def _shift(g: Gen, body) -> None:
    w = g.width(0)
    a, store = g.dest(0)
    memory = g.kind(0) in ("m", "mb")
    last = len(g.insn.operands) - 1          # the count
    if g.kind(last) == "i8":
        count = g.args[last] & 31
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


# --- rotate through CF ---------------------------------------------------------------
# CF is one more bit of the operand: a dword rotates through 33 bits (the
# masked count needs no more reducing), a byte through 9 (the masked count
# is taken mod 9; 9, 18 and 27 leave the byte and CF as they were).
def _carry_rotation(g, c, w) -> str:
    if w == 32:
        return c
    if c.isdigit():
        return str(int(c) % 9)
    e = g.tmp()
    g.emit(f"{e} = {c} % 9")
    return e


def _rcl_body(g, a, c, w):
    e = _carry_rotation(g, c, w)
    v, t, r = g.tmp(), g.tmp(), g.tmp()
    g.emit(f"{v} = {a} | (cf << {w})")
    g.emit(f"{t} = (({v} << {e}) | ({v} >> ({w + 1} - {e}))) & {(2 << w) - 1:#x}")
    g.emit(f"{r} = {t} & {mask(w)}")
    # (the flags from t and r, never from the local cf, which the first may set)
    return r, {"cf": f"{t} >> {w}", "of": f"({r} >> {w - 1}) ^ ({t} >> {w})"}


def _rcr_body(g, a, c, w):
    e = _carry_rotation(g, c, w)
    v, t, r = g.tmp(), g.tmp(), g.tmp()
    g.emit(f"{v} = {a} | (cf << {w})")
    g.emit(f"{t} = (({v} >> {e}) | ({v} << ({w + 1} - {e}))) & {(2 << w) - 1:#x}")
    g.emit(f"{r} = {t} & {mask(w)}")
    return r, {"cf": f"{t} >> {w}", "of": f"(({r} >> {w - 1}) ^ ({r} >> {w - 2})) & 1"}


for _mn, _body in (("rcl", _rcl_body), ("rcr", _rcr_body)):
    def _gen_rc(g: Gen, _body=_body) -> None:
        _shift(g, _body)
    sem(_mn, reads={"cf", "of"}, writes={"cf", "of"})(_gen_rc)


# --- double-precision shifts: dst's bits out, src's bits in ---------------------------
def _shld_body(g, a, c, w):
    b = g.reg(g.args[1])
    r = g.tmp()
    g.emit(f"{r} = (({a} << {c}) | ({b} >> (32 - {c}))) & 0xFFFFFFFF")
    return r, {"cf": f"({a} >> (32 - {c})) & 1", "of": f"({r} ^ {a}) >> 31",
               **result_flags(r)}


def _shrd_body(g, a, c, w):
    b = g.reg(g.args[1])
    r = g.tmp()
    g.emit(f"{r} = (({a} >> {c}) | ({b} << (32 - {c}))) & 0xFFFFFFFF")
    return r, {"cf": f"({a} >> ({c} - 1)) & 1", "of": f"({r} ^ {a}) >> 31",
               **result_flags(r)}


for _mn, _body in (("shld", _shld_body), ("shrd", _shrd_body)):
    def _gen_d(g: Gen, _body=_body) -> None:
        _shift(g, _body)
    sem(_mn, reads=ALL_FLAGS, writes=ALL_FLAGS)(_gen_d)
