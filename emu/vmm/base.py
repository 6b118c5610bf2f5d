"""What every VMM monitor shares: the exit plumbing, the cost of each step,
the trace, and the exits every mode intercepts (HLT, port I/O).

A VM exit stops the vCPU's batch and hands the exit record to the monitor,
whose handlers are simpy generators run in the vCPU's process (a VMM context
per vCPU, as VMware's monitor ran one per virtual CPU): they take the steps
a real VMM takes, yield the simulated time of each (cost model), tell the
trace bus, and answer with an ``Action``.  Other vCPUs and devices keep
running in simulated time meanwhile.  While somebody watches the trace, each
step is its own simpy timeout (the stepper stops between them); otherwise
the steps of one exit are charged in one timeout of the same total, which
changes no simulated time and saves most of the event overhead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..hw import paging
from ..hw.memory import BusError
from .pmap import GuestPhys, MachineMemory, OutOfMachineMemory, PMap


@dataclass
class Action:
    """The monitor's answer to an exit."""

    kind: str                 # resume | inject | emulate | halt | io | crash | shutdown
    detail: dict = field(default_factory=dict)


class Monitor:
    """The VMM's per-vCPU context: subclasses handle ``on_<exit reason>``."""

    FAULT_EXIT = "pf"          # the exit whose handling is the six steps

    def __init__(self, system, machine: MachineMemory, pmap: PMap, guest: GuestPhys):
        self.sys = system
        self.env = system.env
        self.cpu = system.cpu
        self.mmu = system.mmu
        self.costs = system.config.costs
        self.bus = system.bus
        self.machine = machine
        self.pmap = pmap
        self.guest = guest
        self.exits: dict[str, int] = {}
        self.cycles: dict[str, int] = {}
        self.check = None          # callable() run after every exit (--check-invariants)
        self._owed = 0             # step costs not yet taken (see the module doc)
        self.restart_vpn: int | None = None   # the page whose step 6 is due

    # --- plumbing ---------------------------------------------------------------
    def exit(self, stop, owed: int = 0):
        """Answer one VM exit: a generator run in the vCPU's simpy process.
        ``owed``: cycles the vCPU's batch used and has not yet taken."""
        self._owed += owed
        try:
            action = yield from self.handle(stop)
        except (BusError, OutOfMachineMemory) as e:
            action = Action("crash", {"message": str(e), "eip": self.cpu.eip})
        if self._owed:
            owed, self._owed = self._owed, 0
            yield self.env.timeout(owed)
        if self.check is not None:
            self.check()
        return action

    def obtain(self, ppn: int, va: int, write: bool):
        """Step 3: the PMap's machine page for ``ppn`` (allocated and zeroed if
        unbacked, read back if swapped, copied if shared and written)."""
        mpn, how = yield from self.sys.host.obtain(self.pmap.name, ppn, write)
        yield from self.spend("pmap", self.costs.vmm_pmap_lookup)
        if how in ("allocated", "cow-broken"):
            yield from self.spend("alloc", self.costs.vmm_alloc + self.costs.vmm_zero_page)
        if self.bus.active:
            self.emit("pmap_lookup", va=va, step=3, ppn=ppn, mpn=mpn,
                      allocated=how == "allocated", how=how)
        return mpn

    def spend(self, category: str, cycles: int):
        """Take ``cycles`` of simulated time for one step: ``yield from`` it.
        While nobody watches, the cost is owed and taken at the end of the
        exit (an empty iterable costs nothing to ``yield from``)."""
        self.cycles[category] = self.cycles.get(category, 0) + cycles
        self._owed += cycles
        if self.bus.active:
            return self._pay()
        return ()

    def _pay(self):
        owed, self._owed = self._owed, 0
        yield self.env.timeout(owed)

    def emit(self, kind: str, va=None, step=None, **data) -> None:
        if self.bus.active:
            self.bus.emit(kind, va=va, step=step, **data)

    @property
    def guest_paging(self) -> bool:
        return bool(self.cpu.cr0 & paging.CR0_PG)

    # --- exits ----------------------------------------------------------------------
    def handle(self, stop):
        """Answer one exit (a generator: it yields simulated time)."""
        d = stop.detail
        reason = d["exit"]
        self.exits[reason] = self.exits.get(reason, 0) + 1
        self.restart_vpn = None       # a step 6 that never came is not due any more
        fault = reason == self.FAULT_EXIT
        if fault and self.bus.active:
            self.step1(d)
        if self.bus.active:
            extra = {"gpa": d["gpa"]} if "gpa" in d else {}
            self.emit("vm_exit", va=d.get("va"), step=2 if fault else None,
                      reason=reason, eip=d["eip"], error_code=d.get("error_code"), **extra)
        yield from self.spend("vm_exit", self.costs.vm_exit)
        action = yield from getattr(self, "on_" + reason)(d)
        if action.kind in ("resume", "inject", "emulate"):
            yield from self.spend("vm_entry", self.costs.vm_entry)
            if self.bus.active:
                self.emit("vm_entry", step=5 if fault else None, action=action.kind)
        return action

    def step1(self, d) -> None:
        """Tell the trace what the hardware did before the exit (step 1)."""

    def advance(self, d) -> None:
        """The intercepted instruction is done: retire it."""
        self.cpu.eip = d["next_eip"]
        self.cpu.icount += 1

    def on_hlt(self, d):
        yield from self.spend("emulate", self.costs.vmm_emulate)
        self.advance(d)
        return Action("halt")

    def on_io(self, d):
        yield from self.spend("io", self.costs.vmm_io)
        self.advance(d)
        return Action("io", {"port": d["port"], "value": d["value"], "reg": d["reg"]})

    def translations(self):
        """(what, mpn, page bytes, writable) of every translation the
        hardware holds for this VM: TLB entries and the CPU's fast maps,
        which are a view of the TLB (an entry without one: mpn None)."""
        mmu = self.mmu
        for t in {id(mmu.itlb): mmu.itlb, id(mmu.dtlb): mmu.dtlb}.values():
            for e in t.valid_entries():
                yield (f"{t.name} entry for va {e.vpn << 12:#010x}", e.pn, e.page,
                       e.writable and e.dirty)
        for kind, fast in (("read", mmu.rfast), ("write", mmu.wfast)):
            for vpn, page in fast.items():
                e = mmu.dtlb.probe(vpn)
                pn = None if e is None else e.pn + (vpn - e.vpn if e.large else 0)
                yield (f"{kind} fast map of va {vpn << 12:#010x}", pn, page, kind == "write")

    def stats(self) -> dict:
        return {"exits": dict(sorted(self.exits.items())),
                "exits_total": sum(self.exits.values()),
                "cycles": dict(sorted(self.cycles.items())),
                "pmap": self.pmap.stats(), "machine": self.machine.stats()}


def walk_json(w) -> dict | None:
    """A walk record as plain data for trace events."""
    if w is None:
        return None
    out = {"va": w.va, "fetch": w.fetch, "fault": w.fault, "error_code": w.error_code,
           "levels": [{"name": lv.name, "entry_pa": lv.entry_pa, "value": lv.value,
                       "value_after": lv.value_after} for lv in w.levels]}
    if not w.fault:
        out["frame"] = w.frame
    return out
