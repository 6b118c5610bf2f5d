"""The shadow-paging VMM: the monitor that answers a vCPU's VM exits.

(The exit plumbing shared with nested paging is in ``base.py``.)

The six steps of a virtualized translation (DESIGN.md), for a #PF exit:

    1  TLB miss: the hardware walked the shadow and found nothing (or too
       little): #PF, intercepted -> VM exit
    2  the VMM walks the guest's table for the faulting va
    3  the guest denies it: a TRUE fault, injected into the guest's handler;
       the guest allows it: a HIDDEN fault, the PMap gives (or allocates)
       the machine page
    4  the VMM writes the spte (and the spde above it)
    5  the VMM restarts the faulting instruction (VM entry)
    6  the hardware walk succeeds and fills the TLB

Fault kinds (``Fault``) are counted and traced by name.
"""

from __future__ import annotations

import enum
from struct import Struct

from ..hw import paging
from ..hw.exceptions import PF
from ..hw.paging import PF_U, PF_W, PTE_A, PTE_D, PTE_G, PTE_P, PTE_U, PTE_W
from .base import Action, Monitor, walk_json
from .pmap import GuestPhys, MachineMemory, PMap
from .shadow import SPTE_STALE, SRC_4M, ShadowTables

PAGE_MASK = 0xFFFFF000
EMULATE_EXITS = 16      # exits one emulated instruction may take (pages it touches)
_U32 = Struct("<I")


class Fault(enum.Enum):
    """What a #PF exit turned out to be."""

    TRUE = "true"            # the guest's tables deny the access: inject #PF
    HIDDEN = "hidden"        # the guest allows it, the shadow lacked it: fill, restart
    DIRTY = "dirty"          # a write to a clean page mapped read-only: set the guest's D
    TRACING = "tracing"      # a write to a write-protected guest table: emulate, sync
    UNSYNC = "unsync"        # oos: first write to a guest table: let it go out of sync
    WP_EMULATE = "wp-emulate"  # CR0.WP=0 lets the kernel write a read-only page: emulate
    COW = "cow"              # a write to a page the VMM shares: break the sharing


class ShadowMonitor(Monitor):
    """The VMM's per-vCPU context for shadow paging."""

    STATS = {
        "exits": "VM exits, by reason",
        "faults": "#PF exits, by kind (true, hidden, dirty, tracing, unsync, wp-emulate)",
        "injected": "exceptions injected into the guest",
        "emulated": "instructions the VMM emulated",
        "cycles": "simulated cycles the VMM spent, by step",
    }

    def __init__(self, system, machine: MachineMemory, pmap: PMap, guest: GuestPhys,
                 policy: str):
        super().__init__(system, machine, pmap, guest)
        self.shadow = ShadowTables(machine, pmap, policy)
        self.shadow.on_protect = self.mmu.downgrade_pn
        self.faults: dict[str, int] = {f.value: 0 for f in Fault}
        self.injected = 0
        self.emulated = 0
        self.large_regions: set[int] = set()   # pdx of guest 4 MiB pages shadowed
        self.phys_root, _ = self.shadow.ensure(("phys-pd", 0))
        self.root = self.phys_root
        self.mmu.set_control(True, True, False, False)   # the hardware: paging, WP=1
        self.mmu.load_cr3(self.root.mpn << 12)

    def step1(self, d) -> None:
        # The shadow walk that faulted.
        sw = self.mmu.last_walk
        self.emit("shadow_walk", va=d["va"], step=1, error_code=d["error_code"],
                  walk=walk_json(sw) if sw is not None and sw.va == d["va"] else None)

    # --- #PF: the six steps ------------------------------------------------------------
    def on_pf(self, d):
        va, ec = d["va"], d["error_code"]
        write, user = bool(ec & PF_W), bool(ec & PF_U)
        sw = self.mmu.last_walk
        fetch = bool(sw is not None and sw.fetch and sw.va == va)
        if self.shadow.stale:
            stale = self._stale_hit(va, write, user)
            if stale is not None:
                # Natively a TLB hit: no walk, no A/D; the write goes to the old page.
                return (yield from self._emulate(Fault.TRACING, va, None, stale[2] >> 12, d,
                                                 stale))
        # Step 2: walk the guest's table.
        if self.guest_paging:
            gw = paging.walk(self.guest, self.cpu.cr3, va, write=write, user=user,
                             fetch=fetch, wp=bool(self.cpu.cr0 & paging.CR0_WP),
                             pse=bool(self.cpu.cr4 & paging.CR4_PSE))
            yield from self.spend("guest_walk", gw.refs * self.costs.vmm_walk_ref)
            if self.bus.active:
                self.emit("guest_walk", va=va, step=2, walk=walk_json(gw))
            if gw.fault:
                return (yield from self._true_fault(va, gw.error_code, d))
            gppn = gw.frame >> 12
        else:
            gw = None
            gppn = va >> 12
            self.pmap.check(gppn)      # past guest RAM: a bus error, as natively
        # Step 3: what kind of fault is it?
        shadow = self.shadow
        if write and gppn in shadow.tracked and shadow.tracing:
            return (yield from self._emulate(Fault.TRACING, va, gw, gppn, d))
        if write and gw is not None and not gw.writable:
            # CR0.WP=0 through a read-only gpte: no spte may let it write (a
            # guest table written so stays in sync: unsyncing it would fault
            # again forever).
            return (yield from self._emulate(Fault.WP_EMULATE, va, gw, gppn, d))
        if write and gppn in shadow.tracked:
            kind = Fault.UNSYNC
            shadow.mark_unsync(gppn)
            mpn = self.pmap.mpn_of.get(gppn)
            if mpn is not None:
                shadow.drop_mappings(mpn)   # they refill writable on demand
        elif write and gppn in self.pmap.shared:
            kind = Fault.COW       # the guest may write; the VMM shares the page
        elif write and sw is not None and sw.fault and sw.error_code & 1:
            kind = Fault.DIRTY     # the spte was there, read-only: D was clear
        else:
            kind = Fault.HIDDEN
        self.faults[kind.value] += 1
        if self.bus.active:
            self.emit(kind.value + "_fault", va=va, step=3, ppn=gppn, write=write, user=user)
        mpn = yield from self._pmap(gppn, va, write)
        # Step 4: fill the shadow.
        _, _, spte = self._fill(va, gw, gppn, mpn)
        yield from self.spend("fill_shadow", self.costs.vmm_fill_shadow)
        if self.bus.active:
            self.emit("shadow_fill", va=va, step=4, mpn=mpn, spte=spte, root=self.root.mpn)
        # Step 5: restart the instruction (the VM entry in ``handle``); step 6
        # is the hardware's walk and TLB fill for this page.
        self.restart_vpn = va >> 12
        return Action("resume", {"fault": kind.value})

    def _pmap(self, gppn: int, va: int, write: bool):
        """Step 3 of a hidden fault: the PMap's machine page for ``gppn``."""
        mpn = yield from self.obtain(gppn, va, write)
        return mpn

    def _fill(self, va: int, gw, gppn: int, mpn: int, force: bool = False):
        """Write the spde and spte that map ``va`` -> ``mpn``; returns the
        shadow table, the index and the spte."""
        shadow = self.shadow
        pdx, ptx = (va >> 22) & 0x3FF, (va >> 12) & 0x3FF
        if gw is None:
            child, _ = shadow.ensure(("phys-pt", pdx))
            shadow.link(self.root, pdx, child, PTE_W | PTE_U)
            return child, ptx, shadow.set_spte(child, ptx, mpn, PTE_U, gppn,
                                               gppn not in self.pmap.shared, force)
        gpde = gw.levels[0].value_after
        if gw.large:
            key = ("4m", self.cpu.cr3 >> 12, pdx)
            child = shadow.get(key)
            if child is not None and child.src != gpde & SRC_4M:
                shadow.free(child)      # built from another gpde: start again
            child, _ = shadow.ensure(key)
            child.src = gpde & SRC_4M
            gpte = gpde
            self.large_regions.add(pdx)
        else:
            child, _ = shadow.ensure(("pt", gpde >> 12))
            gpte = gw.levels[1].value_after
        # Forcing (emulation): the spde must let the write through too.
        shadow.link(self.root, pdx, child, gpde | (PTE_W if force else 0))
        writable = bool(gpte & PTE_W) and gw.dirty and gppn not in self.pmap.shared
        return child, ptx, shadow.set_spte(child, ptx, mpn, gpte, gppn, writable, force)

    def _true_fault(self, va: int, error_code: int, d):
        self.faults[Fault.TRUE.value] += 1
        self.emit("true_fault", va=va, step=3, error_code=error_code)
        # The guest's #PF invalidates its TLB entries and cached directory
        # entry for va (SDM 4.10.4.1): the shadow forgets what they held.
        self.mmu.drop_page(va)
        self._invalidate_page(va, pde_caches=False)
        yield from self.spend("inject", self.costs.vmm_inject)
        self.injected += 1
        self.emit("inject", va=va, step=3, vector=PF, error_code=error_code)
        stop = self.cpu.inject(PF, error_code, va)
        return self._after_inject(stop)

    def _after_inject(self, stop) -> Action:
        if stop is None:
            return Action("inject", {"vector": PF})
        if stop.reason == "shutdown":
            return Action("shutdown", stop.detail)
        # A #PF while delivering: the event stays pending (cpu.vectoring) and
        # the hardware raises the exit again when the guest resumes.
        return Action("inject", {"vector": PF, "pending": True})

    def _emulate(self, kind: Fault, va: int, gw, gppn: int, d, stale=None):
        """Let the faulting instruction through once, then re-protect and
        bring the shadow in line with what it wrote.  ``stale``: (shadow
        table, index, stale record, its vpns) when the write goes through a
        stale translation (``_stale_hit``) instead of the guest walk ``gw``."""
        self.faults[kind.value] += 1
        self.emit(kind.value + "_fault", va=va, step=3, ppn=gppn, write=True,
                  **({"stale": True} if stale else {}))
        mpn = yield from self._pmap(gppn, va, True)
        before = bytes(self.machine.mem.page(mpn))
        pdx = (va >> 22) & 0x3FF
        if stale is None:
            sp, idx, _ = self._fill(va, gw, gppn, mpn, force=True)
            spde = gw.levels[0].value_after if gw is not None else None
        else:
            sp, idx, record, _ = stale
            spde = self.root.entry(pdx)
            self.shadow.set_spte(sp, idx, mpn, record, gppn, False, force=True)
            self.shadow.link(self.root, pdx, sp, spde | PTE_W)
        try:
            stop, inner = yield from self._run_emulated()
        finally:
            # The one-instruction permission ends, however the instruction did.
            self._end_permission(va, sp, idx, mpn, spde, stale)
        self.emulated += 1
        changed = _changed_dwords(before, self.machine.mem.page(mpn))
        dropped = self._sync(gppn, changed, before) if changed else 0
        self.emit("emulate", va=va, step=4, ppn=gppn, changed=changed, dropped=dropped,
                  fault=kind.value)
        if inner is not None and inner.kind != "inject":
            # The answer to an exit it took (a nested emulation that ended it,
            # a crash, a triple fault), or "resume": it stopped part-way.
            return inner
        if stop.reason in ("shutdown", "crash", "halt", "io"):
            return Action(stop.reason, stop.detail)
        return Action("emulate", {"fault": kind.value})

    def _run_emulated(self):
        """Run the instruction at eip once, handling the exits it takes on
        the way (pages the shadow lacks).  Returns its last stop and the
        action that ended it early (None if it ended by itself)."""
        cpu = self.cpu
        start = (cpu.eip, cpu.r[1], cpu.r[6], cpu.r[7])
        for _ in range(EMULATE_EXITS):
            stop = cpu.run(1, 1 << 40, irq=False)
            yield from self.spend("emulate", self.costs.vmm_emulate + stop.cycles)
            if stop.reason != "exit":
                return stop, None
            if (cpu.eip, cpu.r[1], cpu.r[6], cpu.r[7]) != start:
                # A rep movs/stos stopped between iterations, past the write
                # that faulted: restartable, it goes on when the guest resumes
                # (and takes this exit again then, as a guest exit).
                return stop, Action("resume", {"retired": False})
            inner = yield from self.handle(stop)
            if inner.kind != "resume":
                return stop, inner
        return stop, Action("crash", {"message": f"the VMM could not emulate the instruction "
                                                 f"at eip {cpu.eip:#010x}", "eip": cpu.eip})

    def _end_permission(self, va: int, sp, idx: int, mpn: int, spde: int | None,
                        stale) -> None:
        """Take back the write ``_emulate`` allowed: the spte read-only (or
        the stale record back in place), the spde with the guest's rights,
        the TLB entry read-only.  Inner exits may have replaced either."""
        shadow, pdx = self.shadow, (va >> 22) & 0x3FF
        if shadow.pages.get(sp.key) is sp:
            e = sp.entry(idx)
            if stale is None:
                shadow.clear_write(sp, idx, mpn)
            elif e & PTE_P and e >> 12 == mpn:
                shadow.drop_entry(sp, idx)      # the TLB keeps the stale translation
                shadow.keep_stale(sp, idx, stale[2], stale[3])
            if spde is not None and self.root.entry(pdx) & PTE_P \
                    and self.root.entry(pdx) >> 12 == sp.mpn:
                shadow.link(self.root, pdx, sp, spde)
        self.mmu.downgrade(va >> 12)

    # --- stale translations (see shadow.py) ------------------------------------------
    def _sync(self, gppn: int, changed: list[int], before: bytes) -> int:
        """The guest changed entries ``changed`` of its table page ``gppn``:
        drop the sptes built from them, leaving a stale record where the
        TLB still caches the old translation.  Returns the entries dropped."""
        shadow, records = self.shadow, []
        for key in shadow.tracked.get(gppn, ()):
            sp = shadow.pages.get(key)
            if key[0] == "pt" and sp is not None and self.guest_paging:
                records += [(sp, idx, *r) for idx in changed
                            if (r := self._stale_record(sp, idx, before))]
        dropped = shadow.sync_entries(gppn, changed)
        for sp, idx, record, vpns in records:
            if shadow.pages.get(sp.key) is sp and not sp.entry(idx) & PTE_P:
                shadow.keep_stale(sp, idx, record, vpns)
        return dropped

    def _stale_record(self, sp, idx: int, before: bytes):
        """(record, vpns) for spte ``idx`` of ``sp`` if the data TLB caches its
        translation for va(s) of the current root, or None."""
        spte = sp.entry(idx)
        gpte = _U32.unpack_from(before, idx * 4)[0]
        if not spte & PTE_P or not gpte & PTE_P or \
                self.pmap.mpn_of.get(gpte >> 12) != spte >> 12:
            return None
        rights, vpns = PTE_W | PTE_U, []
        for parent, pdx in sp.parents:
            vpn = (pdx << 10) | idx
            e = self.mmu.dtlb.probe(vpn)
            if parent is self.root and e is not None and not e.large and e.pn == spte >> 12:
                vpns.append(vpn)
                rights &= parent.entry(pdx)
        if not vpns:
            return None
        return (gpte & PAGE_MASK) | SPTE_STALE | (gpte & rights) | (gpte & (PTE_D | PTE_G)), vpns

    def _stale_hit(self, va: int, write: bool, user: bool):
        """A #PF at a stale record of ``va``: (shadow table, index, record,
        vpns) if the TLB entry it stands for serves this access natively (a write
        its rights allow, to a traced table page).  Otherwise the hardware
        TLB no longer holds it (a hit never exits) or it would not serve
        the access (natively a walk): the record goes, None."""
        pdx, idx = (va >> 22) & 0x3FF, (va >> 12) & 0x3FF
        spde = self.root.entry(pdx)
        sp = self.shadow.by_mpn.get(spde >> 12) if spde & PTE_P else None
        record = self.shadow.stale_record(sp, idx, va >> 12) if sp is not None else None
        if record is None:
            return None
        if write and record >> 12 in self.shadow.tracked and paging.access_allowed(
                bool(record & PTE_W), bool(record & PTE_U), bool(record & PTE_D), write=True,
                user=user, wp=bool(self.cpu.cr0 & paging.CR0_WP)):
            return sp, idx, record, self.shadow.stale[(sp, idx)]
        self.shadow.drop_entry(sp, idx)
        return None

    # --- the host's hooks: reclaim and sharing -----------------------------------------
    def evictable(self, ppn: int, mpn: int) -> bool:
        """A guest page the host may take back: not a shadowed guest table
        (the VMM reads those when it walks)."""
        return ppn not in self.shadow.tracked

    def referenced(self, ppn: int, mpn: int) -> bool:
        """Did the guest use the page since the clock hand last passed?
        Reads and clears the A bits the hardware set in its sptes."""
        used = False
        for sp, idx in self.shadow.sptes_mapping(mpn):
            e = sp.entry(idx)
            if e & PTE_A:
                used = True
                sp.page[idx * 4] = e & ~PTE_A & 0xFF
        if used:
            self.mmu.forget_pn(mpn)   # so that the next use sets A again
        return used

    def unmap_page(self, ppn: int, mpn: int) -> None:
        """Drop every spte mapping ``mpn`` (reverse map) and its TLB entries."""
        self.shadow.drop_mappings(mpn)
        self.mmu.forget_pn(mpn)

    # --- control registers, INVLPG, HLT, I/O --------------------------------------------
    def on_cr3_write(self, d):
        cpu, shadow = self.cpu, self.shadow
        cpu.cr3 = d["value"]
        dropped = shadow.resync() if not shadow.tracing else 0
        if not shadow.cache_roots:
            shadow.drop_all()
            self.phys_root, _ = shadow.ensure(("phys-pd", 0))
        elif shadow.stale:
            # The TLB keeps only global translations across a CR3 load.
            shadow.forget_stale(keep_global=bool(cpu.cr4 & paging.CR4_PGE))
        yield from self.spend("cr3", self.costs.vmm_flush + dropped * self.costs.vmm_fill_shadow)
        self._set_root()
        self.mmu.load_cr3(self.root.mpn << 12)
        self.emit("cr3_load", guest_cr3=cpu.cr3, root=self.root.mpn, resynced=dropped,
                  paging=self.guest_paging)
        self.advance(d)
        return Action("emulate", {"cr3": cpu.cr3})

    def _set_root(self) -> None:
        if self.guest_paging:
            self.root, _ = self.shadow.ensure(("pd", (self.cpu.cr3 & PAGE_MASK) >> 12))
        else:
            self.root = self.phys_root

    def on_cr3_read(self, d):
        self.cpu.r[d["reg"]] = self.cpu.cr3
        yield from self.spend("emulate", self.costs.vmm_emulate)
        self.advance(d)
        return Action("emulate", {"cr3_read": self.cpu.cr3})

    def on_cr0_write(self, d):
        cpu = self.cpu
        old, cpu.cr0 = cpu.cr0, d["value"]
        yield from self.spend("emulate", self.costs.vmm_emulate)
        if (old ^ cpu.cr0) & (paging.CR0_PG | paging.CR0_WP):
            # Every TLB entry goes (SDM 4.10.4.1; WP too, see docs/design.md).
            self.mmu.flush_all()
            self.shadow.forget_stale()
            if self.shadow.unsync:
                self.shadow.resync()
        if (old ^ cpu.cr0) & paging.CR0_PG:
            self._set_root()
            self.mmu.load_cr3(self.root.mpn << 12)
        self.advance(d)
        return Action("emulate", {"cr0": cpu.cr0})

    def on_cr4_write(self, d):
        cpu = self.cpu
        old, cpu.cr4 = cpu.cr4, d["value"]
        yield from self.spend("emulate", self.costs.vmm_emulate)
        if (old ^ cpu.cr4) & paging.CR4_PSE:
            # The guest's tables mean something else now: start the shadows again.
            self.shadow.drop_all()
            self.phys_root, _ = self.shadow.ensure(("phys-pd", 0))
            self._set_root()
            self.mmu.load_cr3(self.root.mpn << 12)
        if (old ^ cpu.cr4) & (paging.CR4_PSE | paging.CR4_PGE):
            # Every TLB entry goes, global ones too (SDM 4.10.4.1).
            self.mmu.flush_all()
            self.shadow.forget_stale()
            if self.shadow.unsync:
                self.shadow.resync()
        self.mmu.set_control(True, True, False, bool(cpu.cr4 & paging.CR4_PGE))
        self.advance(d)
        return Action("emulate", {"cr4": cpu.cr4})

    def on_invlpg(self, d):
        va = d["va"]
        self.mmu.invlpg(va)
        dropped = self._invalidate_page(va, pde_caches=True)
        yield from self.spend("invlpg", self.costs.vmm_flush)
        self.emit("invlpg", va=va, dropped=dropped)
        self.advance(d)
        return Action("emulate", {"invlpg": va})

    def _invalidate_page(self, va: int, pde_caches: bool) -> int:
        """The guest's TLB lets go of va's page (an INVLPG, a #PF): the
        shadow drops what stands for it -- the 4 KiB entries of a guest
        4 MiB page holding it, a stale record, and under oos the spte and
        spde built from the guest's possibly rewritten entries; with
        ``pde_caches`` (INVLPG) every out-of-sync spde too.  Returns the
        shadow entries dropped."""
        pdx = (va >> 22) & 0x3FF
        if pdx in self.large_regions:
            # A guest 4 MiB page, shadowed (and cached in the TLB) as 4 KiB
            # pages: the guest's one invalidation covers all of them.
            self.large_regions.discard(pdx)
            self.mmu.invlpg_range(pdx << 10, 1024)
        if self.shadow.stale:
            self.shadow.forget_stale(va >> 12)      # the guest's TLB lets it go
        if self.shadow.tracing:
            return 0
        # The guest's current PDE names the page table whose shadow may
        # hold the va's entry even when no spde links it right now.
        gpt = None
        pse = bool(self.cpu.cr4 & paging.CR4_PSE)
        if self.guest_paging:
            gpde = self.guest.read32((self.cpu.cr3 & PAGE_MASK) | (pdx << 2))
            if gpde & 1 and not (gpde & 0x80 and pse):
                gpt = gpde >> 12
        dropped = self.shadow.drop_va(self.root, va, gpt)
        if pde_caches and self.shadow.unsync:
            dropped += self.shadow.sync_directories(self.guest.read32, pse)
        return dropped

    # --- statistics ------------------------------------------------------------------------
    def stats(self) -> dict:
        out = super().stats()
        out.update(faults=dict(self.faults), injected=self.injected, emulated=self.emulated,
                   shadow=self.shadow.stats(), policy=self.shadow.policy)
        return out


def _changed_dwords(before: bytes, after) -> list[int]:
    if before == after:
        return []
    import numpy as np
    a = np.frombuffer(before, dtype="<u4")
    b = np.frombuffer(bytes(after), dtype="<u4")
    return [int(i) for i in np.nonzero(a != b)[0]]
