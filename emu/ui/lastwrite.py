"""last-write: who last changed a dword of memory, and when -- the guest,
the hardware walker (A/D bits), the VMM or the host -- found by replaying
the run from its snapshots (``reverse.py``), as reverse searches are."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import EmuError
from .reverse import MAX_POINTS, Throwaway, advance_held, check_interrupted, start_points


@dataclass(frozen=True)
class Write:
    """The last write found to a watched dword."""

    cycle: int
    icount: int
    eip: int
    cpl: int
    old: int
    new: int
    who: str           # guest | hardware walker | VMM (...) | CPU (...)


VMM_STEPS = {"guest_walk": "the VMM's walk of the guest's table (A/D, step 2)",
             "shadow_fill": "the VMM writing a shadow entry (step 4)",
             "emulate": "the VMM emulating the guest's write (a tracing fault)",
             "pmap_lookup": "the VMM backing the page (step 3)",
             "inject": "the VMM injecting a fault (the frame it pushes)",
             "vm_entry": "the VMM", "cow_break": "the host breaking a shared page",
             "swap_in": "the host reading the page back from swap",
             "page_shared": "the host sharing the page", "reclaim": "the host reclaiming"}
WALKS = ("walk", "nested_walk", "shadow_walk")      # the hardware's walks (A/D bits)


def last_write(session, space: str, addr: int) -> tuple[Write | None, int]:
    """The last change of the dword at ``addr`` in ``space`` (va, pa or ma)
    before now, and where it was looked at (the ma natively the pa)."""
    from .probe import Probe
    probe = Probe(session.system)
    if space == "va":
        pa = probe.va_to_pa(addr)
        if pa is None:
            raise EmuError(f"va {addr:#010x} is not mapped by the guest's tables now")
        addr, space = pa, "pa"
    if space == "pa":
        if session.system.vmm is None:
            ma = addr
        else:
            ma = probe.pa_to_ma(addr)
            if ma is None:
                raise EmuError(f"pa {addr:#010x} has no machine page now")
    else:
        ma = addr
    mem = session.system.mem
    if ma < 0 or ma + 4 > mem.size:
        raise EmuError(f"{space} {addr:#010x} is outside memory")

    def read(system) -> int:
        return struct.unpack("<I", system.mem.read(ma, 4))[0]

    cpu = session.system.cpu
    end = (cpu.icount, cpu.eip, int(session.system.env.now))
    for snap in start_points(session):
        check_interrupted(session)
        found, start = _scan_writes(session, snap, end, read)
        if found is not None:
            return found, ma
        end = start
    return None, ma


def _scan_writes(session, snap, end, read):
    """The last change of the watched dword between ``snap`` and ``end``."""
    t = Throwaway(session, snap)
    system = t.system
    cpu = system.cpu
    start = (cpu.icount, cpu.eip, int(system.env.now))
    last: list = [None]
    value = [read(system)]
    ctx = {"eip": cpu.eip, "icount": cpu.icount, "cpl": cpu.cpl, "vmm": False}

    def on_event(ev):
        if ev.kind == "vm_exit":
            ctx["vmm"] = True
        v = read(system)
        if v != value[0]:
            who = _who(ev, ctx)
            last[0] = Write(ev.cycle, ctx["icount"], ctx["eip"], ctx["cpl"], value[0], v, who)
            value[0] = v
        if ev.kind == "vm_entry":
            ctx["vmm"] = False
    system.bus.subscribe(on_event)
    try:
        for k in range(MAX_POINTS):
            if k & 1023 == 0:
                check_interrupted(session)
            ctx.update(eip=cpu.eip, icount=cpu.icount, cpl=cpu.cpl, vmm=False)
            alive = advance_held(t.step, system)
            v = read(system)
            if v != value[0]:
                who = "the VMM" if ctx["vmm"] else "the guest"
                last[0] = Write(int(system.env.now), ctx["icount"], ctx["eip"], ctx["cpl"],
                                value[0], v, who)
                value[0] = v
            now = (cpu.icount, cpu.eip, int(system.env.now))
            if not alive or now[2] > end[2] or now == end:
                break
        return last[0], start
    finally:
        t.close()


def _who(ev, ctx) -> str:
    if ev.kind in WALKS:
        return "the hardware walker (A/D bits)"
    if ev.kind in VMM_STEPS and (ctx["vmm"] or ev.kind in ("cow_break", "swap_in",
                                                           "page_shared", "reclaim")):
        return VMM_STEPS[ev.kind]
    if ev.kind == "vm_exit":
        return "the guest"
    if ctx["vmm"]:
        return f"the VMM ({ev.kind})"
    if ev.kind == "deliver":
        return "the CPU delivering an exception (the frame it pushes)"
    return "the guest"
