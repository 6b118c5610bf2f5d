"""Semantics of branches and of the instructions that test a condition
(jcc, setcc, cmovcc); see ``semantics`` for the conventions."""

from __future__ import annotations

from ..isa import CONDITIONS
from .semantics import Gen, sem
from .semantics_move import push

# x86's conditions, as Python over the flag locals.
COND = {
    "o": "of", "no": "not of", "b": "cf", "ae": "not cf",
    "e": "zf", "ne": "not zf", "be": "cf or zf", "a": "not (cf or zf)",
    "s": "sf", "ns": "not sf", "p": "PFB[pf & 0xFF]", "np": "not PFB[pf & 0xFF]",
    "l": "sf != of", "ge": "sf == of", "le": "zf or sf != of", "g": "not zf and sf == of",
}
assert set(COND) == set(CONDITIONS)
_READS = {c: {f for f in ("cf", "zf", "sf", "of", "pf") if f in expr}
          for c, expr in COND.items()}


def _target(g: Gen) -> str:
    return g.at(g.next_pos + g.args[0])


for _c, _cond in COND.items():
    def _gen_jcc(g: Gen, _cond=_cond) -> None:
        g.emit(f"return {_target(g)} if ({_cond}) else {g.at(g.next_pos)}")

    def _gen_set(g: Gen, _cond=_cond) -> None:
        g.store_only(0, f"(1 if ({_cond}) else 0)")

    def _gen_cmov(g: Gen, _cond=_cond) -> None:
        v = g.read(1)          # a memory source is read whatever the condition
        dst = g.reg(g.args[0])
        g.set_reg(g.args[0], f"{v} if ({_cond}) else {dst}")

    sem("j" + _c, reads=_READS[_c])(_gen_jcc)
    sem("set" + _c, reads=_READS[_c])(_gen_set)
    sem("cmov" + _c, reads=_READS[_c])(_gen_cmov)


@sem("jmp")
def _jmp(g: Gen) -> None:
    if g.kind(0) == "rel":
        g.emit(f"return {_target(g)}")
    else:
        g.emit(f"return {g.read(0)}")


@sem("call", faults=True)
def _call(g: Gen) -> None:
    if g.kind(0) == "rel":
        target = _target(g)
    else:                      # a copy: "call esp" jumps to esp's old value
        target = g.tmp()
        g.emit(f"{target} = {g.read(0)}")
    push(g, g.at(g.next_pos))
    g.emit(f"return {target}")


@sem("ret", faults=True)
def _ret(g: Gen) -> None:
    t = g.tmp()
    g.emit(f"{t} = {g.load(g.reg(4))}")
    pops = 4 + (g.args[0] & 0xFFFF if g.args else 0)      # ret imm16: its arguments too
    g.set_reg(4, f"({g.reg(4)} + {pops}) & 0xFFFFFFFF")
    g.emit(f"return {t}")


# ecx -= 1, then jump while ecx != 0 (and, for loope/loopne, while ZF says so)
_LOOP_WHILE = {"loop": "", "loope": " and zf", "loopne": " and not zf"}


@sem("loop")
@sem("loope", "loopne", reads={"zf"})
def _loop(g: Gen) -> None:
    g.set_reg(1, f"({g.reg(1)} - 1) & 0xFFFFFFFF")
    also = _LOOP_WHILE[g.insn.mnemonic]
    g.emit(f"return {_target(g)} if {g.reg(1)}{also} else {g.at(g.next_pos)}")


@sem("jecxz")
def _jecxz(g: Gen) -> None:
    g.emit(f"return {_target(g)} if {g.reg(1)} == 0 else {g.at(g.next_pos)}")
