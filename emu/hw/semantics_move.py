"""Semantics of data movement, the stack and the flag instructions (see
``semantics`` for the conventions)."""

from __future__ import annotations

from .semantics import ALL_FLAGS, Gen, arith_flags, mask, sem

# EFLAGS as the block sees it (cf zf sf of may be bools; pf/af are lazy).
EFLAGS_EXPR = ("(2 | cf | PFB[pf & 0xFF] | ((af ^ pf) & 0x10) | (zf << 6) | (sf << 7)"
               " | (cpu.iflag << 9) | (cpu.df << 10) | (of << 11))")


# --- data movement --------------------------------------------------------
@sem("mov", "movzx")
def _mov(g: Gen) -> None:
    g.store_only(0, g.read(1))


@sem("movsx")
def _movsx(g: Gen) -> None:
    v = g.let(g.read(1))
    g.set_reg(g.args[0], f"{v} | 0xFFFFFF00 if {v} & 0x80 else {v}")


@sem("lea")
def _lea(g: Gen) -> None:
    g.set_reg(g.args[0], g.addr(g.args[1]))


@sem("xchg")
def _xchg(g: Gen) -> None:
    if g.insn.operands == ("r", "r"):
        dst = g.reg(g.args[0])
        t = g.tmp()
        g.emit(f"{t} = {dst}")
        g.set_reg(g.args[0], g.reg(g.args[1]))
        g.set_reg(g.args[1], t)
        return
    m, r = (1, 0) if g.kind(1) == "m" else (0, 1)
    at = g.addr_tmp(g.args[m])
    t = g.tmp()
    g.emit(f"{t} = {g.load(at)}")
    g.store(at, g.reg(g.args[r]))
    g.set_reg(g.args[r], t)


# --- stack ----------------------------------------------------------------
def push(g: Gen, value: str) -> None:
    sp = g.tmp()
    g.emit(f"{sp} = ({g.reg(4)} - 4) & 0xFFFFFFFF")
    g.store(sp, value)
    g.set_reg(4, sp)


@sem("push", faults=True)
def _push_gen(g: Gen) -> None:
    push(g, g.read(0))


@sem("pop", faults=True)
def _pop(g: Gen) -> None:
    t = g.tmp()
    sp = g.reg(4)
    g.emit(f"{t} = {g.load(sp)}")
    if g.args[0] == 4:      # pop esp: esp gets the popped value
        g.set_reg(4, t)
    else:
        g.set_reg(4, f"({sp} + 4) & 0xFFFFFFFF")
        g.set_reg(g.args[0], t)


@sem("pushfd", reads=ALL_FLAGS, faults=True)
def _pushfd(g: Gen) -> None:
    push(g, EFLAGS_EXPR)


@sem("pushad", faults=True)
def _pushad(g: Gen) -> None:
    sp = g.reg(4)
    for i in range(8):
        g.store(f"(({sp} - {4 * (i + 1)}) & 0xFFFFFFFF)", g.reg(i))
    g.set_reg(4, f"({sp} - 32) & 0xFFFFFFFF")


@sem("popad", faults=True)
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


@sem("leave", faults=True)
def _leave(g: Gen) -> None:
    t = g.tmp()
    bp = g.reg(5)
    g.emit(f"{t} = {g.load(bp)}")
    g.set_reg(4, f"({bp} + 4) & 0xFFFFFFFF")
    g.set_reg(5, t)


@sem("enter", faults=True)
def _enter(g: Gen) -> None:
    """push ebp; with nesting level L > 0, push the L-1 frame pointers of
    the enclosing frames (read below the old ebp) and the new frame's
    address; ebp = the new frame; esp -= size.  Every access before any
    register changes, in x86's order."""
    size, level = g.args[0] & 0xFFFF, g.args[1] % 32
    bp = g.reg(5)
    frame = g.tmp()
    g.emit(f"{frame} = ({g.reg(4)} - 4) & 0xFFFFFFFF")
    g.store(frame, bp)
    sp = frame
    if level:
        for i in range(1, level):
            v, nsp = g.tmp(), g.tmp()
            g.emit(f"{v} = {g.load(f'(({bp} - {4 * i}) & 0xFFFFFFFF)')}")
            g.emit(f"{nsp} = ({sp} - 4) & 0xFFFFFFFF")
            g.store(nsp, v)
            sp = nsp
        nsp = g.tmp()
        g.emit(f"{nsp} = ({sp} - 4) & 0xFFFFFFFF")
        g.store(nsp, frame)
        sp = nsp
    g.set_reg(5, frame)
    g.set_reg(4, f"({sp} - {size}) & 0xFFFFFFFF")


# --- flags ------------------------------------------------------------------
@sem("clc", writes={"cf"})
def _clc(g: Gen) -> None:
    g.flag("cf", "0")


@sem("stc", writes={"cf"})
def _stc(g: Gen) -> None:
    g.flag("cf", "1")


@sem("cmc", reads={"cf"}, writes={"cf"})
def _cmc(g: Gen) -> None:
    g.flag("cf", "0 if cf else 1")


@sem("lodsb", "lodsd", faults=True)
def _lods(g: Gen) -> None:
    """Load from [esi], then step esi by the size, backwards with DF (the
    load first: a fault leaves esi as it was)."""
    byte = g.insn.mnemonic == "lodsb"
    n = 1 if byte else 4
    v = g.let(g.load(g.reg(6), byte))
    if byte:
        g.set_reg8(0, v)
    else:
        g.set_reg(0, v)
    g.set_reg(6, f"({g.reg(6)} - {n} if cpu.df else {g.reg(6)} + {n}) & 0xFFFFFFFF")


@sem("scasb", "scasd", "cmpsb", "cmpsd", writes=ALL_FLAGS, faults=True)
def _scas_cmps(g: Gen) -> None:
    """The flags of cmp: al/eax (scas) or [esi] (cmps) minus [edi]; then
    step edi (and esi) by the size, backwards with DF.  The loads first,
    [esi] before [edi]: a fault changes nothing.  The repe/repne rows are
    system ones (``sysinsns``)."""
    mn = g.insn.mnemonic
    byte = mn.endswith("b")
    n, w = (1, 8) if byte else (4, 32)
    if mn.startswith("cmps"):
        a = g.let(g.load(g.reg(6), byte))
    else:
        a = g.let(g.reg8(0) if byte else g.reg(0))
    b = g.let(g.load(g.reg(7), byte))
    r = g.tmp()
    g.emit(f"{r} = ({a} - {b}) & {mask(w)}")
    g.set_flags(arith_flags(a, b, r, w, f"{a} < {b}", f"(({a} ^ {b}) & ({a} ^ {r})) >> {w - 1}"))
    for reg in ((6, 7) if mn.startswith("cmps") else (7,)):
        g.set_reg(reg, f"({g.reg(reg)} - {n} if cpu.df else {g.reg(reg)} + {n}) & 0xFFFFFFFF")


@sem("cld")
def _cld(g: Gen) -> None:
    g.emit("cpu.df = 0")


@sem("std")
def _std(g: Gen) -> None:
    g.emit("cpu.df = 1")


@sem("lahf", reads=ALL_FLAGS)
def _lahf(g: Gen) -> None:
    g.set_reg8(4, "(sf << 7) | (zf << 6) | ((af ^ pf) & 0x10) | PFB[pf & 0xFF] | 2 | cf")


@sem("sahf", writes=ALL_FLAGS - {"of"})
def _sahf(g: Gen) -> None:
    h, p = g.tmp(), g.tmp()
    g.emit(f"{h} = ({g.reg(0)} >> 8) & 0xFF")
    g.emit(f"{p} = 0 if {h} & 4 else 1")
    g.flag("cf", f"{h} & 1")
    g.flag("pf", p)
    g.flag("af", f"{p} ^ ({h} & 0x10)")
    g.flag("zf", f"({h} >> 6) & 1")
    g.flag("sf", f"{h} >> 7")


@sem("nop", "pause")
def _nop(g: Gen) -> None:
    pass
