"""The monitor: the simpy side of every VM exit, for any VMM.

A VM exit stops the vCPU's batch; the system hands its typed record
(``emu.hw.exits``) to ``Monitor.exit``, a generator run in the vCPU's simpy
process (a VMM context per vCPU, as VMware's monitor ran one per virtual
CPU).  The monitor counts the exit, tells the trace, charges the exit's
cost, picks the handler by the record's class and answers the vCPU with an
``Outcome``.

The handlers are plain code -- the built-in VMM's and a student's alike --
run in the monitor's own greenlet: when one must wait for simulated time (a
step's cost while somebody watches the trace, the swap disk) it switches
back here, the monitor yields the simpy event, and the handler goes on when
it fires.  Other vCPUs and devices keep running meanwhile.  While nobody
watches, each step's cost is owed and taken in one timeout at the end of
the exit, which changes no simulated time and saves most of the event
overhead.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

from greenlet import GreenletExit, getcurrent, greenlet

from ..hw.exits import CrReadExit, CrWriteExit, HaltExit, InvlpgExit, IoExit, VmExit
from ..hw.memory import BusError
from .api import Action
from .pmap import OutOfMachineMemory


@dataclass(frozen=True, slots=True)
class Outcome:
    """The monitor's answer to one exit."""

    action: Action
    exit: VmExit | None = None      # IO: the exit whose port access the system performs
    detail: dict | None = None      # CRASH: message and eip; SHUTDOWN: the CPU's report


RESUMES = (Action.RESUME, Action.INJECT, Action.EMULATE)


class HandlerTimeout(Exception):
    """A VMM handler ran longer than the monitor's time limit."""


class Monitor:
    """One VM's VMM context: exits in, outcomes out (see the module doc).

    Collaborators are passed in: the simpy environment and trace bus, the
    cost model, the vCPU and its MMU, the host (machine memory for every VM)
    and this VM's PMap and guest-physical memory.  Subclasses (shadow,
    nested) give ``handlers`` -- exit class -> method -- and the story's
    first step.
    """

    FAULT_EXIT: type = VmExit           # the exit whose handling is the six steps
    STATS = {
        "exits": "VM exits, by reason",
        "cycles": "simulated cycles the VMM spent, by step",
    }

    def __init__(self, *, name: str, env, bus, costs, cpu, mmu, host, pmap, guest):
        self.name = name
        self.env = env
        self.bus = bus
        self.costs = costs
        self.cpu = cpu
        self.mmu = mmu
        self.host = host
        self.pmap = pmap
        self.guest = guest
        self.machine = host.machine
        self.exits: dict[str, int] = {}
        self.cycles: dict[str, int] = {}
        self.check = None          # callable() run after every exit (--check-invariants)
        self.handler_limit: float | None = None   # host seconds a handler may run
        self.handlers: dict[type, object] = {
            CrReadExit: self._cr3_read, HaltExit: self._halt, IoExit: self._io}
        self._owed = 0             # step costs not yet taken (see the module doc)
        self._worker = None        # the greenlet the handlers run in
        self._main = None
        self._outcome: Outcome | None = None   # set by a handler that ends the exit early

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_worker"] = state["_main"] = None     # a greenlet is not data
        return state

    # --- the exit --------------------------------------------------------------------
    def exit(self, exit: VmExit, owed: int = 0):
        """Answer one VM exit: a generator run in the vCPU's simpy process.
        ``owed``: cycles the vCPU's batch used and has not yet taken."""
        self._owed += owed
        try:
            outcome = yield from self._in_vmm(self.handle, exit)
        except (BusError, OutOfMachineMemory) as e:
            outcome = Outcome(Action.CRASH, detail={"message": str(e), "eip": self.cpu.eip})
        if self._owed:
            owed, self._owed = self._owed, 0
            yield self.env.timeout(owed)
        if self.check is not None:
            self.check()
        return outcome

    def handle(self, exit: VmExit) -> Outcome:
        """One exit, in the VMM's context (nested emulation calls it too)."""
        reason = exit.reason
        self.exits[reason] = self.exits.get(reason, 0) + 1
        self.mmu.expect_restart(None)      # a step 6 that never came is not due any more
        fault = isinstance(exit, self.FAULT_EXIT)
        bus = self.bus
        if bus.active:
            if fault:
                self.step1(exit)
            extra = {"gpa": exit.gpa} if hasattr(exit, "gpa") else {}
            bus.emit("vm_exit", va=getattr(exit, "va", None), step=2 if fault else None,
                     reason=reason, eip=exit.eip, error_code=getattr(exit, "error_code", None),
                     **extra)
        self.spend("vm_exit", self.costs.vm_exit)
        self._outcome = None
        outcome = self.handlers[type(exit)](exit)
        if outcome.action in RESUMES:
            self.spend("vm_entry", self.costs.vm_entry)
            if bus.active:
                bus.emit("vm_entry", step=5 if fault else None, action=outcome.action.value)
        return outcome

    def step1(self, exit: VmExit) -> None:
        """Tell the trace what the hardware did before the exit (step 1)."""

    # --- the VMM's context: a greenlet ---------------------------------------------------
    def _in_vmm(self, fn, arg):
        """Run ``fn(arg)`` in the VMM's greenlet, serving its waits (a generator)."""
        worker = self._worker
        if worker is None or worker.dead:
            worker = self._worker = greenlet(self._work)
        self._main = getcurrent()
        timer = self._arm()
        try:
            msg = worker.switch(fn, arg)
            while msg[0] == "wait":
                if timer:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                value = yield msg[1]
                timer = self._arm()
                msg = worker.switch(value)
        finally:
            if timer:
                signal.setitimer(signal.ITIMER_REAL, 0)
        if msg[0] == "err":
            raise msg[1]
        return msg[1]

    def _work(self, fn, arg):
        while True:
            try:
                msg = ("ok", fn(arg))
            except GreenletExit:
                raise
            except BaseException as e:       # handed to the monitor, raised there
                msg = ("err", e)
            fn, arg = self._main.switch(msg)

    def _arm(self) -> bool:
        """Limit the handler's host time (a student's VMM may loop)."""
        if self.handler_limit is None:
            return False
        limit = self.handler_limit

        def expired(signum, frame):
            raise HandlerTimeout(f"the VMM's handler ran for more than {limit:g} s")
        signal.signal(signal.SIGALRM, expired)
        signal.setitimer(signal.ITIMER_REAL, limit)
        return True

    def wait(self, event):
        """Wait for a simpy event (in a handler); returns its value."""
        return self._main.switch(("wait", event))

    def run_process(self, gen):
        """Run a simpy generator (the host's ``obtain``) to its end from a
        handler, waiting where it waits; returns its value."""
        try:
            event = next(gen)
            while True:
                event = gen.send(self.wait(event))
        except StopIteration as done:
            return done.value

    # --- time and the trace -----------------------------------------------------------
    def spend(self, category: str, cycles: int) -> None:
        """Take ``cycles`` of simulated time for one step.  While nobody
        watches, the cost is owed and taken at the end of the exit."""
        self.cycles[category] = self.cycles.get(category, 0) + cycles
        self._owed += cycles
        if self.bus.active:
            owed, self._owed = self._owed, 0
            self.wait(self.env.timeout(owed))

    def emit(self, kind: str, va=None, step=None, **data) -> None:
        if self.bus.active:
            self.bus.emit(kind, va=va, step=step, **data)

    def end_early(self, outcome: Outcome) -> None:
        """A handler's work ended the exit otherwise than it returns (an
        emulated instruction that crashed, halted, did I/O ...)."""
        self._outcome = outcome

    # --- the exits every VMM answers the same way ------------------------------------------
    def advance(self, exit) -> None:
        """The intercepted instruction is done: retire it."""
        self.cpu.eip = exit.next_eip
        self.cpu.icount += 1

    def _cr3_read(self, exit: CrReadExit) -> Outcome:
        self.cpu.r[exit.reg] = self.cpu.cr3
        self.spend("emulate", self.costs.vmm_emulate)
        self.advance(exit)
        return Outcome(Action.EMULATE)

    def _halt(self, exit: HaltExit) -> Outcome:
        self.spend("emulate", self.costs.vmm_emulate)
        self.advance(exit)
        return Outcome(Action.HALT)

    def _io(self, exit: IoExit) -> Outcome:
        self.spend("io", self.costs.vmm_io)
        self.advance(exit)
        return Outcome(Action.IO, exit)

    # --- the PMap (step 3) -----------------------------------------------------------
    def obtain(self, ppn: int, va: int, write: bool) -> int:
        """The machine page for ``ppn``, for a fault at ``va`` about to map
        it: allocated and zeroed if unbacked, read back if swapped (the
        vCPU waits for the disk), copied if shared and written."""
        mpn, how = self.run_process(self.host.obtain(self.name, ppn, write))
        costs = self.costs
        self.spend("pmap", costs.vmm_pmap_lookup)
        if how in ("allocated", "cow-broken"):
            self.spend("alloc", costs.vmm_alloc + costs.vmm_zero_page)
        if self.bus.active:
            self.bus.emit("pmap_lookup", va=va, step=3, ppn=ppn, mpn=mpn,
                          allocated=how == "allocated", how=how)
        return mpn

    # --- the host's view of this VM ----------------------------------------------------
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

    # --- statistics -------------------------------------------------------------------
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


__all__ = ["CrWriteExit", "HandlerTimeout", "InvlpgExit", "Monitor", "Outcome", "walk_json"]
