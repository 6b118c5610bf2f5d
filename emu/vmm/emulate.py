"""Writes the VMM lets through once: tracing faults, CR0.WP=0 writes and
writes through stale translations (the built-in VMM's).

A write to a write-protected guest page table (trace policies), or one the
guest's CR0.WP=0 allows through a read-only gpte, cannot be given a
writable spte for good: the VMM lets the faulting instruction through once
(a one-instruction writable spte), takes the permission back, and brings
the shadow in line with what the instruction wrote (``sync_written``).

Stale records (``shadow.py`` explains them): when the VMM drops an spte
whose translation the hardware TLB still caches, the index keeps what the
TLB entry holds, so that a later write through that entry goes where it
goes natively (a TLB hit: no walk, no A/D).
"""

from __future__ import annotations

from struct import Struct

from ..hw.paging import CR0_WP, PTE_D, PTE_G, PTE_P, PTE_U, PTE_W, Walk, access_allowed, pdx, ptx
from .api import Action, Fault, PfResult
from .runtime import Outcome
from .shadow import SPTE_STALE

PAGE_MASK = 0xFFFFF000
_U32 = Struct("<I")


class Emulation:
    """Letting one instruction through (a part of ``BuiltinShadowVmm``)."""

    def emulate_write(self, fault: Fault, va: int, walk: Walk | None, ppn: int,
                      stale=None) -> PfResult:
        """Let the faulting instruction through once, then re-protect and
        bring the shadow in line with what it wrote.  ``stale``: (shadow
        table, index, stale record, its vpns) when the write goes through a
        stale translation (``stale_hit``) instead of the guest walk ``walk``."""
        hw = self.hw
        hw.classified(fault, va, ppn=ppn, write=True, **({"stale": True} if stale else {}))
        mpn = self.back_page(ppn, va, True)
        before = hw.guest.read(ppn << 12, 4096)
        root = hw.root
        dx = pdx(va)
        if stale is None:
            sp, idx, _ = self.fill_shadow(va, walk, ppn, mpn, force=True)
            spde = walk.levels[0].value_after if walk is not None else None
        else:
            sp, idx, record, _ = stale
            spde = root.entry(dx)
            hw.shadow.set_spte(sp, idx, mpn, record, ppn, False, force=True)
            hw.shadow.link(root, dx, sp, spde | PTE_W)
        try:
            stop, inner = hw.emulate_once()
        finally:
            # The one-instruction permission ends, however the instruction did.
            self.end_permission(va, sp, idx, mpn, spde, stale)
        hw.count_emulated()
        changed = _changed_dwords(before, hw.guest.read(ppn << 12, 4096))
        dropped = self.sync_written(ppn, changed, before) if changed else 0
        hw.emit("emulate", va=va, step=4, ppn=ppn, changed=changed, dropped=dropped,
                fault=fault.value)
        if inner is not None and inner.action is not Action.INJECT:
            # The answer to an exit it took (a nested emulation that ended it,
            # a crash, a triple fault), or "resume": it stopped part-way.
            hw.end_exit(inner)
        elif stop.reason in ("shutdown", "crash"):
            hw.end_exit(Outcome(Action(stop.reason), detail=stop.detail))
        return PfResult.EMULATE

    def end_permission(self, va: int, sp, idx: int, mpn: int, spde: int | None,
                       stale) -> None:
        """Take back the write ``emulate_write`` allowed: the spte read-only
        (or the stale record back in place), the spde with the guest's
        rights, the TLB entry read-only.  Inner exits may have replaced either."""
        shadow, root, dx = self.hw.shadow, self.hw.root, pdx(va)
        if shadow.pages.get(sp.key) is sp:
            e = sp.entry(idx)
            if stale is None:
                shadow.clear_write(sp, idx, mpn)
            elif e & PTE_P and e >> 12 == mpn:
                shadow.drop_entry(sp, idx)      # the TLB keeps the stale translation
                shadow.keep_stale(sp, idx, stale[2], stale[3])
            if spde is not None and root.entry(dx) & PTE_P and root.entry(dx) >> 12 == sp.mpn:
                shadow.link(root, dx, sp, spde)
        self.hw.tlb.downgrade(va >> 12)

    def sync_written(self, ppn: int, changed: list[int], before: bytes) -> int:
        """The guest changed entries ``changed`` of its table page ``ppn``:
        drop the sptes built from them, leaving a stale record where the
        TLB still caches the old translation.  Returns the entries dropped."""
        shadow, records = self.hw.shadow, []
        for key in shadow.tracked.get(ppn, ()):
            sp = shadow.pages.get(key)
            if key[0] == "pt" and sp is not None and self.hw.guest.paging:
                records += [(sp, idx, *r) for idx in changed
                            if (r := self.stale_record(sp, idx, before))]
        dropped = shadow.sync_entries(ppn, changed)
        for sp, idx, record, vpns in records:
            if shadow.pages.get(sp.key) is sp and not sp.entry(idx) & PTE_P:
                shadow.keep_stale(sp, idx, record, vpns)
        return dropped

    # --- stale translations (see shadow.py) ------------------------------------------
    def stale_record(self, sp, idx: int, before: bytes):
        """(record, vpns) for spte ``idx`` of ``sp`` if the data TLB caches its
        translation for va(s) of the current root, or None."""
        spte = sp.entry(idx)
        gpte = _U32.unpack_from(before, idx * 4)[0]
        if not spte & PTE_P or not gpte & PTE_P or \
                self.hw.pmap.mpn(gpte >> 12) != spte >> 12:
            return None
        rights, vpns = PTE_W | PTE_U, []
        root = self.hw.root
        for parent, dx in sp.parents:
            vpn = (dx << 10) | idx
            e = self.hw.tlb.probe(vpn)
            if parent is root and e is not None and not e.large and e.pn == spte >> 12:
                vpns.append(vpn)
                rights &= parent.entry(dx)
        if not vpns:
            return None
        return (gpte & PAGE_MASK) | SPTE_STALE | (gpte & rights) | (gpte & (PTE_D | PTE_G)), vpns

    def stale_hit(self, va: int, write: bool, user: bool):
        """A #PF at a stale record of ``va``: (shadow table, index, record,
        vpns) if the TLB entry it stands for serves this access natively (a
        write its rights allow, to a traced table page).  Otherwise the
        hardware TLB no longer holds it (a hit never exits) or it would not
        serve the access (natively a walk): the record goes, None."""
        shadow = self.hw.shadow
        idx = ptx(va)
        spde = self.hw.root.entry(pdx(va))
        sp = shadow.by_mpn.get(spde >> 12) if spde & PTE_P else None
        record = shadow.stale_record(sp, idx, va >> 12) if sp is not None else None
        if record is None:
            return None
        if write and record >> 12 in shadow.tracked and access_allowed(
                bool(record & PTE_W), bool(record & PTE_U), bool(record & PTE_D), write=True,
                user=user, wp=bool(self.hw.guest.cr0 & CR0_WP)):
            return sp, idx, record, shadow.stale[(sp, idx)]
        shadow.drop_entry(sp, idx)
        return None


def _changed_dwords(before: bytes, after: bytes) -> list[int]:
    """The indexes of the dwords that differ, lowest first: the page is
    compared 256 bytes at a time, and each part that differs as one
    little-endian number (the bits of its difference name its dwords)."""
    if before == after:
        return []
    out = []
    for at in range(0, len(before), 256):
        a, b = before[at:at + 256], after[at:at + 256]
        if a == b:
            continue
        diff = int.from_bytes(a, "little") ^ int.from_bytes(b, "little")
        base = at >> 2
        while diff:
            dword = ((diff & -diff).bit_length() - 1) >> 5
            out.append(base + dword)
            diff = diff >> ((dword + 1) << 5) << ((dword + 1) << 5)
    return out
