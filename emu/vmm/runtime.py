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
it fires.  Other vCPUs and devices keep running meanwhile.

Time owed.  While nobody watches the trace, a step's cost is not taken at
once: it is *owed*, and the vCPU takes what it owes in one timeout when
something else could happen before it is paid -- the next event in the
simulation's queue is due (another vCPU, the timer, the disk), the VMM
waits for an event, the run ends -- or when someone looks at the clock.
Until then no other process could have run, so the order of everything
that happens is the one a timeout per step would give (the trace, which
takes each step's time at once, shows the same run), at a fraction of the
event overhead: an exit that waits for nothing is a plain call
(``enter``), with no simpy event at all.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from functools import partial

from greenlet import GreenletExit, getcurrent, greenlet

from ..hw.exits import (
    CrReadExit,
    CrWriteExit,
    HaltExit,
    HostPageExit,
    InvlpgExit,
    IoExit,
    VmExit,
)
from ..hw.memory import BusError
from . import handler_time
from .api import Action
from .handler_time import HandlerAlarm, HandlerExited, HandlerTimeout, OsExit
from .pmap import OutOfMachineMemory


@dataclass(frozen=True, slots=True)
class Outcome:
    """The monitor's answer to one exit."""

    action: Action
    exit: VmExit | None = None      # IO: the exit whose port access the system performs
    detail: dict | None = None      # CRASH: message and eip; SHUTDOWN: the CPU's report


RESUMES = (Action.RESUME, Action.INJECT, Action.EMULATE)
# The outcomes with nothing but an action (an Outcome is immutable: shared).
RESUMED, INJECTED, EMULATED, HALTED = (Outcome(a) for a in (
    Action.RESUME, Action.INJECT, Action.EMULATE, Action.HALT))
INFINITY = float("inf")


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
            CrReadExit: self._cr3_read, HaltExit: self._halt, IoExit: self._io,
            HostPageExit: self._host_page}
        self._owed = 0             # step costs not yet taken (see the module doc)
        self._limit = INFINITY     # ... and how many may be owed before they are taken
        self._worker = None        # the greenlet the handlers run in
        self._main = None
        self._msg = None           # what the handler asked when it began to wait
        self._outcome: Outcome | None = None   # set by a handler that ends the exit early
        self.left = False          # the VM has ended and left its host (power_off)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_worker"] = state["_main"] = None     # a greenlet is not data
        return state

    # --- the exit --------------------------------------------------------------------
    def exit(self, exit: VmExit, owed: int = 0):
        """Answer one VM exit: a generator run in the vCPU's simpy process,
        which takes every cycle owed before it returns the outcome.
        ``owed``: cycles the vCPU's batch used and has not yet taken.
        (The system calls ``enter`` and keeps what is owed.)"""
        self._owed += owed
        outcome = self.enter(exit)
        if outcome is None:
            outcome = yield from self.serve()
        if self._owed:
            owed, self._owed = self._owed, 0
            yield self.env.timeout(owed)
        return outcome

    def enter(self, exit: VmExit) -> Outcome | None:
        """Handle one exit in the VMM's context, as a plain call: its
        ``Outcome``, or None when the handler waits for simulated time --
        then ``serve()`` (a generator) goes on with it.  The time it costs
        is added to ``owed`` (the module doc)."""
        if self.bus.active:
            self._limit = 0
        else:
            env = self.env
            self._limit = env.peek() - env.now
        self._main = getcurrent()
        worker = self._worker
        if worker is None or worker.dead:
            worker = self._worker = greenlet(partial(_work, weakref.ref(self)))
            worker.switch()                 # (it starts and waits for an exit)
        if self.handler_limit is not None:
            self._arm()
        msg = worker.switch(exit)
        if msg[0] == "wait":
            self._msg = msg
            return None
        return self._finish(msg)

    def serve(self):
        """The waits of the exit ``enter`` began (a generator); returns its
        outcome."""
        msg, self._msg = self._msg, None
        worker = self._worker
        while msg[0] == "wait":
            self._disarm()
            try:
                value = yield msg[1]
            except BaseException:
                self._disarm()
                raise
            self._limit = self._owed_limit()
            if self.handler_limit is not None:
                self._arm()
            msg = worker.switch(value)
        return self._finish(msg)

    def _finish(self, msg) -> Outcome:
        self._disarm()
        self._limit = INFINITY
        if msg[0] == "err":
            e = msg[1]
            if isinstance(e, SystemExit):
                call = e.call() if isinstance(e, OsExit) else f"sys.exit({e.code!r})"
                raise HandlerExited(call).with_traceback(
                    e.__traceback__) from None
            if isinstance(e, HandlerAlarm):
                raise HandlerTimeout(str(e)).with_traceback(e.__traceback__) from None
            if not isinstance(e, (BusError, OutOfMachineMemory)):
                raise e
            outcome = Outcome(Action.CRASH, detail={"message": str(e), "eip": self.cpu.eip})
        else:
            outcome = msg[1]
        if self.check is not None:
            self.check()
        return outcome

    def _owed_limit(self) -> float:
        """How many cycles may be owed before they must be taken: none
        while the trace is watched, else up to the next event due (``enter``
        computes it too)."""
        if self.bus.active:
            return 0
        env = self.env
        return env.peek() - env.now

    def take_owed(self) -> int:
        """The cycles owed, handed to the vCPU (which takes them)."""
        owed, self._owed = self._owed, 0
        return owed

    def handle(self, exit: VmExit) -> Outcome:
        """One exit, in the VMM's context (nested emulation calls it too)."""
        reason = exit.reason
        exits = self.exits
        exits[reason] = exits.get(reason, 0) + 1
        self.mmu.restart_vpn = None        # a step 6 that never came is not due any more
        bus = self.bus
        if bus.active:
            fault = isinstance(exit, self.FAULT_EXIT)
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
                bus.emit("vm_entry", step=5 if isinstance(exit, self.FAULT_EXIT) else None,
                         action=outcome.action.value)
        return outcome

    def step1(self, exit: VmExit) -> None:
        """Tell the trace what the hardware did before the exit (step 1)."""

    # --- the VMM's context: a greenlet (``_work``) ----------------------------------------
    def _arm(self) -> None:
        """Limit the handler's host time (a student's VMM may loop)."""
        limit = self.handler_limit
        handler_time.start(limit, f"the VMM's handler ran for more than {limit:g} s")

    def _disarm(self) -> None:
        if self.handler_limit is not None:
            handler_time.stop()

    def wait(self, event):
        """Wait for a simpy event (in a handler); returns its value.  The
        time owed is taken first: the event belongs to the present."""
        if self._owed:
            owed, self._owed = self._owed, 0
            self._main.switch(("wait", self.env.timeout(owed)))
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
        """Take ``cycles`` of simulated time for one step: at once while
        the trace is watched, else owed (see the module doc)."""
        spent = self.cycles
        spent[category] = spent.get(category, 0) + cycles
        owed = self._owed = self._owed + cycles
        if owed >= self._limit:
            self._owed = 0
            self._main.switch(("wait", self.env.timeout(owed)))

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
        return EMULATED

    def _halt(self, exit: HaltExit) -> Outcome:
        self.spend("emulate", self.costs.vmm_emulate)
        self.advance(exit)
        return HALTED

    def _io(self, exit: IoExit) -> Outcome:
        self.spend("io", self.costs.vmm_io)
        self.advance(exit)
        return Outcome(Action.IO, exit)

    def _host_page(self, exit: HostPageExit) -> Outcome:
        """The guest used a TLB entry whose page the host took: bring its
        guest page back (a private copy if the entry lets it write) and
        let the entry translate to it again (to a shared page, for reads
        only); the access restarts and hits."""
        vpn = exit.va >> 12
        mmu = self.mmu
        held = [e for t in mmu._tlbs()
                if (e := t.probe(vpn)) is not None and e.gpn is not None]
        if held:
            gpn = held[0].gpn
            if exit.write and gpn in self.pmap.shared:
                # A write to a page now shared: the VMM's own copy-on-write
                # fault (and its story), as for any write to a shared page.
                for t in mmu._tlbs():
                    if t.probe(vpn) is not None:
                        t.invlpg(vpn)
                        t.invlpgs -= 1
                return RESUMED
            mpn = self.obtain(gpn, exit.va, exit.write)
            mmu.reattach(vpn, gpn, mpn, gpn in self.pmap.shared)
            self.page_back(gpn, mpn)
        return RESUMED

    def page_back(self, ppn: int, mpn: int) -> None:
        """A detached TLB entry translates to ``mpn`` again: the page is in use."""

    def detach(self, ppn: int, mpn: int) -> None:
        """The host takes ``mpn`` (guest page ``ppn``) from this VM: the
        TLB entries to it are detached, not dropped (``Mmu.detach_pn``) --
        unless the VM binds several guest pages to it (a shared page), when
        the entries cannot say which they stand for and go."""
        if self.pmap.shared_mpns.get(mpn, 1) == 1:
            self.mmu.detach_pn(mpn, ppn)

    def power_off(self) -> None:
        """The VM has ended and leaves the machine (``Host.detach``): the
        VMM gives back its own tables (``release_tables``), and the hardware
        keeps no translation of the pages the host takes back next."""
        self.release_tables()
        self.mmu.flush_all()
        self.left = True

    def release_tables(self) -> None:
        """Free the VMM's own tables (the shadow or nested paging's)."""

    def shrink_tables(self, enough) -> int:
        """Machine memory has run out: free what of the VMM's own tables it
        can until ``enough()`` (a hook of the host's); returns the pages."""
        return 0

    # --- the PMap (step 3) -----------------------------------------------------------
    def obtain(self, ppn: int, va: int, write: bool) -> int:
        """The machine page for ``ppn``, for a fault at ``va`` about to map
        it: allocated and zeroed if unbacked, read back if swapped (the
        vCPU waits for the disk), copied if shared and written."""
        host = self.host
        got = host.obtain_now(self.name, ppn, write)
        mpn, how = got if got is not None else self.run_process(
            host.obtain(self.name, ppn, write))
        costs = self.costs
        self.spend("pmap", costs.vmm_pmap_lookup)
        if how == "allocated" or how == "cow-broken":
            self.spend("alloc", costs.vmm_alloc + costs.vmm_zero_page)
        if self.bus.active:
            self.bus.emit("pmap_lookup", va=va, step=3, ppn=ppn, mpn=mpn,
                          allocated=how == "allocated", how=how)
        return mpn

    # --- the host's view of this VM ----------------------------------------------------
    def translations(self, describe: bool = True) -> list:
        """(what, mpn, page bytes, writable) of every translation the
        hardware holds for this VM: TLB entries and the CPU's fast maps,
        which are a view of the TLB (an entry without one: mpn None).
        ``describe`` False: ``what`` is None (a check that finds nothing
        wrong needs no words; it runs after every exit of a checked run)."""
        mmu = self.mmu
        out = []
        for t in {id(mmu.itlb): mmu.itlb, id(mmu.dtlb): mmu.dtlb}.values():
            name = t.name
            # (a detached entry reaches no page: Mmu.detach_pn)
            out += [(f"{name} entry for va {e.vpn << 12:#010x}" if describe else None,
                     e.pn, e.page, e.writable and e.dirty and e.gpn is None)
                    for e in t.valid_entries() if e.gpn is None or e.page is not None]
        probe_each = mmu.dtlb.probe_each
        code_pages = {vpn: page for vpn, (page, _) in mmu.cwfast.items()}
        for kind, fast in (("read", mmu.rfast), ("write", mmu.wfast), ("write", code_pages)):
            write = kind == "write"
            out += [(f"{kind} fast map of va {vpn << 12:#010x}" if describe else None,
                     None if e is None else e.pn + (vpn - e.vpn if e.large else 0), page, write)
                    for (vpn, page), e in zip(fast.items(), probe_each(fast))]
        return out

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


__all__ = ["EMULATED", "HALTED", "INJECTED", "RESUMED", "CrWriteExit", "HandlerExited",
           "HandlerTimeout", "InvlpgExit", "Monitor", "Outcome", "walk_json"]


def _work(monitor):
    """The body of a monitor's greenlet: wait in the monitor's main greenlet
    for an exit, run the monitor's handler on it, hand back the result, and
    again.  While it waits, its frame holds nothing of the monitor but a
    weak reference (and the last result): a suspended greenlet is invisible
    to the garbage collector, and a strong one would keep the monitor, its
    VM and its whole System alive after the run (every run leaked so, found
    by a long property run); once the monitor goes, so does the greenlet."""
    msg = ("ready",)
    while True:
        main = monitor()._main
        exit = main.switch(msg)
        main = None
        try:
            msg = ("ok", monitor().handle(exit))
        except GreenletExit:
            raise
        except BaseException as e:       # handed to the monitor, raised there
            msg = ("err", e)
        exit = None
