"""The platform a shadow-paging VMM runs on: the collaborators of ``api.py``
and the monitor that runs the VMM's handlers.

``ShadowMonitor`` owns the shadow tables and gives the VMM (``self.hw``):

    guest   GuestView: the guest's control registers, guest-physical memory,
            its page walk (step 2), injecting a #PF, retiring the
            intercepted instruction
    pmap    PMapView: the machine page of a guest page (step 3)
    shadow  the ShadowTables (isolation checked on every spte written)
    tlb     TlbView: the hardware TLB and the hardware's CR3

plus the story hooks ``classified`` (step 3), ``filled`` (step 4) and
``emulate_once`` (let the faulting instruction through once).  Each view
charges the cost model for the steps it performs and tells the trace, so
a VMM -- the built-in one or a student's -- is timed and narrated the same
way.
"""

from __future__ import annotations

from ..hw import paging
from ..hw.exceptions import PF
from ..hw.exits import CrWriteExit, InvlpgExit, PageFaultExit
from ..hw.paging import CR0_WP, CR4_PSE, PTE_A
from .api import Action, Fault, PfResult, VmmError
from .runtime import EMULATED, INJECTED, RESUMED, Monitor, Outcome, walk_json
from .shadow import ShadowTables

_walk = paging.walk
EMULATE_EXITS = 16      # exits one emulated instruction may take (pages it touches)


class GuestView:
    """The guest's CPU state and memory, as the VMM sees them."""

    def __init__(self, mon: ShadowMonitor):
        self._mon = mon
        self._cpu = mon.cpu
        self._mem = mon.guest
        self.injected = 0

    # --- control registers (the values the guest wrote) ---------------------------------
    @property
    def cr0(self) -> int:
        return self._cpu.cr0

    @cr0.setter
    def cr0(self, value: int) -> None:
        self._cpu.cr0 = value

    @property
    def cr3(self) -> int:
        return self._cpu.cr3

    @cr3.setter
    def cr3(self, value: int) -> None:
        self._cpu.cr3 = value

    @property
    def cr4(self) -> int:
        return self._cpu.cr4

    @cr4.setter
    def cr4(self, value: int) -> None:
        self._cpu.cr4 = value

    @property
    def paging(self) -> bool:
        return bool(self._cpu.cr0 & paging.CR0_PG)

    @property
    def wp(self) -> bool:
        return bool(self._cpu.cr0 & paging.CR0_WP)

    @property
    def pse(self) -> bool:
        return bool(self._cpu.cr4 & paging.CR4_PSE)

    @property
    def pge(self) -> bool:
        return bool(self._cpu.cr4 & paging.CR4_PGE)

    @property
    def eip(self) -> int:
        return self._cpu.eip

    # --- guest-physical memory ---------------------------------------------------------
    def read32(self, pa: int) -> int:
        return self._mem.read32(pa)

    def write32(self, pa: int, value: int) -> None:
        self._mem.write32(pa, value)

    def read(self, pa: int, n: int) -> bytes:
        return self._mem.read(pa, n)

    def check(self, ppn: int) -> None:
        """A bus error (the run's end, as natively) for a ppn past guest RAM."""
        self._mon.pmap.check(ppn)

    # --- the guest's walk (step 2) -----------------------------------------------------------
    def walk(self, va: int, write: bool = False, user: bool = False,
             fetch: bool = False) -> paging.Walk:
        """The guest's own walk of ``va`` for this access, as its hardware
        would make it (A and D set in its tables); charged and traced."""
        mon = self._mon
        cpu = self._cpu
        w = _walk(self._mem, cpu.cr3, va, write, user, fetch,
                  bool(cpu.cr0 & CR0_WP), bool(cpu.cr4 & CR4_PSE))
        mon.spend("guest_walk", w.refs * mon.costs.vmm_walk_ref)
        if mon.bus.active:
            mon.bus.emit("guest_walk", va=va, step=2, walk=walk_json(w))
        return w

    # --- into the guest ------------------------------------------------------------------
    def inject_page_fault(self, va: int, error_code: int) -> None:
        """Deliver #PF (CR2 = va) to the guest's handler on VM entry (a
        true fault); a fault while delivering it is the guest's too."""
        mon = self._mon
        mon.spend("inject", mon.costs.vmm_inject)
        self.injected += 1
        mon.emit("inject", va=va, step=3, vector=PF, error_code=error_code)
        stop = self._cpu.inject(PF, error_code, va)
        if stop is not None and stop.reason == "shutdown":
            mon.end_early(Outcome(Action.SHUTDOWN, detail=stop.detail))

    def skip(self, next_eip: int) -> None:
        """The intercepted instruction is done (the VMM did its work): the
        guest goes on at ``next_eip``."""
        self._cpu.eip = next_eip
        self._cpu.icount += 1


class PMapView:
    """The PMap, for the VMM: ppn -> mpn (step 3)."""

    def __init__(self, mon: ShadowMonitor):
        self._mon = mon
        self._pmap = mon.pmap

    def lookup(self, ppn: int) -> int | None:
        """The machine page backing ``ppn`` now, or None; a bus error past RAM."""
        return self._pmap.lookup(ppn)

    def is_shared(self, ppn: int) -> bool:
        return ppn in self._pmap.shared

    def owns(self, mpn: int) -> bool:
        return self._pmap.owns(mpn)

    def mpn(self, ppn: int) -> int | None:
        """The machine page backing ``ppn`` now (not counted as a lookup)."""
        return self._pmap.mpn_of.get(ppn)

    def obtain(self, ppn: int, va: int, write: bool) -> int:
        """The machine page for ``ppn``, for a fault at ``va`` about to map
        it: allocated and zeroed if unbacked, read back if swapped (the
        vCPU waits for the disk), copied if shared and written."""
        return self._mon.obtain(ppn, va, write)


class TlbView:
    """The hardware's TLB and CR3 under shadow paging."""

    def __init__(self, mon: ShadowMonitor):
        self._mon = mon
        self._mmu = mon.mmu

    def load_root(self, sp) -> None:
        """Point the hardware's CR3 at shadow page directory ``sp`` (the
        TLB drops all but global entries, as on any CR3 load)."""
        self._mmu.load_cr3(sp.mpn << 12)

    def set_global_pages(self, on: bool) -> None:
        """The hardware's CR4.PGE: global TLB entries survive CR3 loads."""
        self._mmu.set_control(True, True, False, on)

    def flush(self) -> None:
        """Drop every TLB entry, global ones too."""
        self._mmu.flush_all()

    def invlpg(self, va: int) -> None:
        self._mmu.invlpg(va)

    def invlpg_range(self, vpn: int, count: int) -> None:
        self._mmu.invlpg_range(vpn, count)

    def drop_page(self, va: int) -> None:
        """What a #PF at va drops: every TLB entry for its page."""
        self._mmu.drop_page(va)

    def downgrade(self, vpn: int) -> None:
        """The cached translation of ``vpn`` may not write any more."""
        self._mmu.downgrade(vpn)

    def forget_page(self, mpn: int) -> None:
        """No translation (or translated code) may use machine page ``mpn``."""
        self._mmu.forget_pn(mpn)

    def detach_page(self, ppn: int, mpn: int) -> None:
        """The cached translations to ``mpn`` (guest page ``ppn``) lose their
        page but stay in the TLB, as the guest's TLB keeps them: the next use
        brings the page back without a walk (``Mmu.detach_pn``)."""
        self._mon.detach(ppn, mpn)
        self._mmu.forget_pn(mpn)

    def probe(self, vpn: int):
        """The data TLB's entry for ``vpn``, without touching it."""
        return self._mmu.dtlb.probe(vpn)


class ShadowMonitor(Monitor):
    """The monitor of a shadow-paging VMM (``vmm_class``, a ``ShadowVmm``)."""

    FAULT_EXIT = PageFaultExit

    def __init__(self, *, vmm_class, policy: str, **collaborators):
        super().__init__(**collaborators)
        self.shadow = ShadowTables(self.machine, self.pmap, policy)
        self.shadow.on_protect = self._write_protected
        self.guest_view = GuestView(self)
        self.pmap_view = PMapView(self)
        self.tlb = TlbView(self)
        self.emulated = 0
        self.faults: dict[str, int] = {f.value: 0 for f in Fault}
        self.handlers.update({PageFaultExit: self._page_fault, CrWriteExit: self._cr_write,
                              InvlpgExit: self._invlpg})
        self.mmu.set_control(True, True, False, False)   # the hardware: paging, WP=1
        self.vmm = vmm_class(_Platform(self), policy)
        self.vmm.start()

    @property
    def root(self):
        """The shadow page directory the hardware walks now."""
        return self.shadow.by_mpn.get(self.mmu.cr3 >> 12)

    def _write_protected(self, gppn: int, mpn: int | None) -> None:
        """Guest page ``gppn`` (in machine page ``mpn``, or not resident) is
        a shadowed table now: no cached translation may write it -- those
        to its machine page, and those the host detached from it (the CLOCK
        hand testing its accessed bit, a reclaim), which would take their
        write permission back with them when reattached."""
        if mpn is not None:
            self.mmu.downgrade_pn(mpn)
        self.mmu.downgrade_gpn(gppn)

    # --- the host's hooks: the VMM's ------------------------------------------------------
    def evictable(self, ppn: int, mpn: int) -> bool:
        return self.vmm.evictable(ppn, mpn)

    def referenced(self, ppn: int, mpn: int) -> bool:
        return self.vmm.referenced(ppn, mpn)

    def unmap_page(self, ppn: int, mpn: int) -> None:
        self.detach(ppn, mpn)          # the guest's TLB keeps what it holds
        self.vmm.unmap_page(ppn, mpn)

    def page_back(self, ppn: int, mpn: int) -> None:
        for sp, idx in self.shadow.sptes_mapping(mpn):   # used: A, for the CLOCK
            sp.page[idx * 4] |= PTE_A

    def release_tables(self) -> None:
        self.shadow.drop_all()

    def shrink_tables(self, enough) -> int:
        freed = self.vmm.shrink_tables(enough)
        if freed and self.bus.active:
            self.bus.emit("tables_freed", pages=freed, left=len(self.shadow.pages))
        return freed

    def step1(self, exit: PageFaultExit) -> None:
        self.emit("shadow_walk", va=exit.va, step=1, error_code=exit.error_code,
                  walk=walk_json(exit.walk))

    # --- the exits ---------------------------------------------------------------------
    def _page_fault(self, exit: PageFaultExit) -> Outcome:
        result = self.vmm.handle_page_fault(exit)
        if self._outcome is not None:
            return self._outcome
        if result is PfResult.RETRY or result is PfResult.SPURIOUS:
            return RESUMED
        if result is PfResult.INJECT:
            return INJECTED
        if result is PfResult.EMULATE:
            return EMULATED
        raise VmmError(f"handle_page_fault returned {result!r}, not a PfResult")

    def _cr_write(self, exit: CrWriteExit) -> Outcome:
        handler = {0: self.vmm.handle_cr0_write, 3: self.vmm.handle_cr3_write,
                   4: self.vmm.handle_cr4_write}[exit.cr]
        handler(exit)
        self.advance(exit)
        return EMULATED

    def _invlpg(self, exit: InvlpgExit) -> Outcome:
        self.vmm.handle_invlpg(exit)
        self.advance(exit)
        return EMULATED

    # --- the story hooks (the VMM calls them through hw) --------------------------------------
    def classified(self, fault: Fault, va: int, **data) -> None:
        """Step 3: the VMM knows what the fault is."""
        name = fault._value_            # (.value: a property, on every fault)
        self.faults[name] += 1
        if self.bus.active:
            self.bus.emit(name + "_fault", va=va, step=3, **data)

    def filled(self, va: int, mpn: int, spte: int) -> None:
        """Step 4 is done: va's spte maps ``mpn``; the restart (step 5)
        makes the hardware walk it (step 6)."""
        self.spend("fill_shadow", self.costs.vmm_fill_shadow)
        if self.bus.active:
            self.bus.emit("shadow_fill", va=va, step=4, mpn=mpn, spte=spte,
                          root=self.root.mpn)
        self.mmu.expect_restart(va >> 12)

    def emulate_once(self):
        """Run the instruction at eip once, with whatever permission the VMM
        gave it, handling the exits it takes on the way (pages the shadow
        lacks) as exits of their own.  Returns the CPU's last stop and the
        outcome that ended it early (None if it ended by itself)."""
        cpu = self.cpu
        start = (cpu.eip, cpu.r[1], cpu.r[6], cpu.r[7])
        stop = None
        for _ in range(EMULATE_EXITS):
            stop = cpu.run(1, 1 << 40, irq=False)
            self.spend("emulate", self.costs.vmm_emulate + stop.cycles)
            if stop.reason != "exit":
                return stop, None
            if (cpu.eip, cpu.r[1], cpu.r[6], cpu.r[7]) != start:
                # A rep movs/stos stopped between iterations, past the write
                # that faulted: restartable, it goes on when the guest resumes
                # (and takes this exit again then, as a guest exit).
                return stop, Outcome(Action.RESUME)
            inner = self.handle(stop.detail["exit"])
            if inner.action is not Action.RESUME:
                return stop, inner
        return stop, Outcome(Action.CRASH, detail={
            "message": f"the VMM could not emulate the instruction at eip {cpu.eip:#010x}",
            "eip": cpu.eip})

    def stats(self) -> dict:
        out = super().stats()
        out.update(faults=dict(self.faults), injected=self.guest_view.injected,
                   emulated=self.emulated, shadow=self.shadow.stats(), policy=self.shadow.policy)
        out.update(self.vmm.stats())
        return out


class _Platform:
    """``self.hw`` of a VMM: the views and hooks it may use, nothing else."""

    __slots__ = ("guest", "pmap", "shadow", "tlb", "costs", "_mon", "classified", "filled")

    def __init__(self, mon: ShadowMonitor):
        self._mon = mon
        self.guest = mon.guest_view
        self.pmap = mon.pmap_view
        self.shadow = mon.shadow
        self.tlb = mon.tlb
        self.costs = mon.costs
        # The story hooks of every fault: the monitor's own (one call, and
        # the event's data passed on once).
        #   classified(fault, va, **data)   step 3: the VMM knows what the fault is
        #   filled(va, mpn, spte)           step 4 is done
        self.classified = mon.classified
        self.filled = mon.filled

    @property
    def root(self):
        """The shadow page directory the hardware walks now."""
        mon = self._mon
        return mon.shadow.by_mpn.get(mon.mmu.cr3 >> 12)

    def spend(self, category: str, cycles: int) -> None:
        """Take simulated time for a step of the VMM's own."""
        self._mon.spend(category, cycles)

    def emit(self, kind: str, va=None, step=None, **data) -> None:
        self._mon.emit(kind, va=va, step=step, **data)

    @property
    def tracing(self) -> bool:
        """Is somebody watching the trace?  (Build costly event data only then.)"""
        return self._mon.bus.active

    def emulate_once(self):
        return self._mon.emulate_once()

    def count_emulated(self) -> None:
        self._mon.emulated += 1

    def end_exit(self, outcome: Outcome) -> None:
        """End the exit with ``outcome`` whatever the handler returns."""
        self._mon.end_early(outcome)


__all__ = ["GuestView", "PMapView", "ShadowMonitor", "TlbView"]
