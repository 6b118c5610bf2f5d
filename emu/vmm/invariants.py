"""Resource control, checked: the guest reaches nothing it was not given.

``check_shadow(monitor)`` verifies, for one VM under shadow paging:

* every shadow page is a machine page owned by the VMM;
* every present entry of a shadow page directory points to a shadow page
  table of this VM;
* every present spte maps a machine page the VM's PMap owns -- never a
  shadow page, another VM's page or a free page;
* no spte lets the guest write a shadowed guest table page that is in sync
  (a write to it must exit; under oos, an out-of-sync page may be written),
  and no TLB entry does either -- one to its machine page, or one the host
  detached from it, which takes its rights back with it when reattached;
* the reverse map counts exactly the present sptes of each machine page.

Once a VM has ended and left the machine, ``check_vmm`` verifies that its
VMM holds no table and its hardware no translation.

``host_invariants.py`` checks the machine under them (``check_host``).

A violation raises ``InvariantError`` naming the entry.  The checks are
vectorized (numpy) because tests run them after every VM exit.
"""

from __future__ import annotations

import numpy as np

from ..hw.paging import PTE_P, PTE_W
from .pmap import MAPPED, SHARED_PAGE
from .shadow import DIRECTORY_ROLES


class InvariantError(AssertionError):
    """The isolation invariant does not hold."""


def check_shadow(monitor) -> int:
    """Check every shadow entry of ``monitor``'s VM; returns entries checked.
    (Every table's entries at once, with numpy; where anything is wrong, the
    entry by entry check below finds the first and says what.)"""
    shadow, pmap = monitor.shadow, monitor.pmap
    owner = monitor.machine.owner
    _check_tlb_writes(monitor)
    tables, checked = [], 0
    for sp in shadow.pages.values():
        if owner.get(sp.mpn) != "vmm":
            return _check_shadow_entries(monitor)
        if sp.role in DIRECTORY_ROLES:
            entries = np.frombuffer(sp.page, dtype="<u4")
            present = np.flatnonzero(entries & PTE_P)
            checked += len(present)
            by_mpn = shadow.by_mpn
            for t in (entries[present] >> 12).tolist():
                child = by_mpn.get(t)
                if child is None or child.role in DIRECTORY_ROLES:
                    return _check_shadow_entries(monitor)
        else:
            tables.append(sp.page)
    mpns = counts = np.empty(0, dtype=np.int64)
    if tables:
        entries = np.frombuffer(b"".join(tables), dtype="<u4")
        present = (entries & PTE_P) != 0
        targets = entries[present] >> 12
        checked += len(targets)
        owned = _owned(monitor)
        inside = targets < len(owned)
        if not (inside.all() and owned[targets].all()):
            return _check_shadow_entries(monitor)
        unwritable = [*(pmap.mpn_of[g] for g in shadow.tracked
                        if g in pmap.mpn_of and shadow.is_protected(g)), *pmap.shared_mpns]
        if unwritable:
            writable = entries[present & ((entries & PTE_W) != 0)] >> 12
            if np.isin(writable, unwritable).any():
                return _check_shadow_entries(monitor)
        mpns, counts = np.unique(targets, return_counts=True)
    # the reverse map: as many references to each machine page as sptes map
    # it (its pages in order, as np.unique gives the sptes')
    rmap = shadow.rmap
    keys = np.fromiter(rmap, dtype=np.int64, count=len(rmap))
    refs = np.fromiter(map(len, rmap.values()), dtype=np.int64, count=len(rmap))
    keys, refs = keys[refs != 0], refs[refs != 0]
    order = np.argsort(keys)
    if not (np.array_equal(keys[order], mpns) and np.array_equal(refs[order], counts)):
        return _check_shadow_entries(monitor)
    monitor.invariant_checks = getattr(monitor, "invariant_checks", 0) + 1
    return checked


def _check_tlb_writes(monitor) -> None:
    """No TLB entry lets the guest write a shadowed table page in sync:
    neither one to its machine page nor one detached from it (``Mmu.detach_pn``:
    reattached, it translates to the page with the rights it had)."""
    shadow, pmap, mmu = monitor.shadow, monitor.pmap, monitor.mmu
    if not shadow.tracked:
        return
    for t in {id(mmu.itlb): mmu.itlb, id(mmu.dtlb): mmu.dtlb}.values():
        for e in t.valid_entries():
            if not (e.writable and e.dirty):
                continue
            gppn = e.gpn if e.gpn is not None else pmap.ppn_of.get(e.pn)
            if gppn is not None and shadow.is_protected(gppn):
                raise InvariantError(
                    f"check_shadow: the {t.name} entry for va {e.vpn << 12:#010x} lets the "
                    f"guest write its page table at ppn {gppn:#x}" + (
                        " (detached from its page)" if e.gpn is not None else ""))


def _owned(monitor) -> np.ndarray:
    """mpn -> may the VM's guest reach it (``PMap.owns``), for every machine
    page, made again when a page or a binding changed (as ``check_host``
    checks page states only when one changed)."""
    pmap, machine = monitor.pmap, monitor.machine
    version = (machine.version, pmap.version, len(machine.owner), len(pmap.ppn_of),
               len(pmap.shared_mpns))
    cached = getattr(monitor, "_owned_pages", None)
    if cached is not None and cached[0] == version:
        return cached[1]
    owned = np.zeros(machine.npages, dtype=bool)
    state, owner = machine.state, machine.owner
    # (owns, over every page at once: the iteration stays in C)
    for mpns, ok in ((pmap.ppn_of, lambda m: (map(MAPPED.__eq__, map(state.get, m)),
                                              map(pmap.name.__eq__, map(owner.get, m)))),
                     (pmap.shared_mpns, lambda m: (map(SHARED_PAGE.__eq__, map(state.get, m)),))):
        if mpns:
            keys = np.fromiter(mpns, dtype=np.int64, count=len(mpns))
            mask = np.ones(len(keys), dtype=bool)
            for test in ok(mpns):
                mask &= np.fromiter(test, dtype=bool, count=len(keys))
            owned[keys[mask]] = True
    monitor._owned_pages = (version, owned)
    return owned


def _check_shadow_entries(monitor) -> int:
    """``check_shadow`` entry by entry: raises on the first entry that is
    wrong, naming it."""
    shadow, pmap = monitor.shadow, monitor.pmap
    owner = monitor.machine.owner

    protected = {pmap.mpn_of[g] for g in shadow.tracked
                 if g in pmap.mpn_of and shadow.is_protected(g)}
    seen: dict[int, int] = {}
    checked = 0
    for key, sp in shadow.pages.items():
        if owner.get(sp.mpn) != "vmm":
            raise InvariantError(f"check_shadow: shadow page {key} at mpn {sp.mpn:#x} "
                                 "is not owned by the VMM")
        entries = np.frombuffer(bytes(sp.page), dtype="<u4")
        present = np.flatnonzero(entries & PTE_P)
        if not len(present):
            continue
        checked += len(present)
        targets = (entries[present] >> 12).tolist()
        if sp.role in DIRECTORY_ROLES:
            for idx, t in zip(present.tolist(), targets):
                child = shadow.by_mpn.get(t)
                if child is None or child.role in DIRECTORY_ROLES:
                    raise InvariantError(
                        f"check_shadow: spde {key}[{idx}] = {int(entries[idx]):#010x} "
                        "does not point to a shadow page table")
            continue
        for idx, t in zip(present.tolist(), targets):
            if not pmap.owns(t):
                what = ("a shadow page" if t in shadow.by_mpn else
                        f"a page owned by {owner.get(t, 'nobody')}")
                raise InvariantError(
                    f"check_shadow: spte {key}[{idx}] = {int(entries[idx]):#010x} maps "
                    f"{what}, not a page of {pmap.name}")
            seen[t] = seen.get(t, 0) + 1
        if protected or pmap.shared_mpns:
            writable = present[(entries[present] & PTE_W) != 0]
            for idx in writable.tolist():
                t = int(entries[idx]) >> 12
                if t in protected:
                    raise InvariantError(
                        f"check_shadow: spte {key}[{idx}] lets the guest write its page "
                        f"table at ppn {pmap.ppn_of.get(t, -1):#x}")
                if t in pmap.shared_mpns:
                    raise InvariantError(
                        f"check_shadow: spte {key}[{idx}] lets the guest write the shared "
                        f"page mpn {t:#x}")
    rmap = {mpn: len(refs) for mpn, refs in shadow.rmap.items() if refs}
    if rmap != seen:
        bad = sorted(set(rmap.items()) ^ set(seen.items()))[0][0]
        raise InvariantError(f"check_shadow: reverse map of mpn {bad:#x} is stale")
    monitor.invariant_checks = getattr(monitor, "invariant_checks", 0) + 1
    return checked


def check_nested(monitor) -> int:
    """Resource control under nested paging: every nested table page is the
    VMM's; every present npte maps exactly the machine page the PMap gives
    its ppn (so a guest reaches only its own pages); returns nptes checked.
    (Every table at once, with numpy; where anything is wrong, the entry by
    entry check below finds the first and says what.)"""
    nested, pmap = monitor.nested, monitor.pmap
    owner = monitor.machine.owner
    if any(owner.get(mpn) != "vmm" for mpn in (nested.root, *nested.tables.values())):
        return _check_nested_entries(monitor)
    tables = sorted(nested.tables.items())
    n = 0
    if tables:
        pages = monitor.machine.mem
        entries = np.frombuffer(b"".join(pages.page(pt) for _, pt in tables),
                                dtype="<u4").reshape(len(tables), 1024)
        present = (entries & PTE_P) != 0
        rows, cols = np.nonzero(present)
        ppns = (np.array([pdx for pdx, _ in tables], dtype=np.int64)[rows] << 10) | cols
        nptes = entries[rows, cols]
        mpns = (nptes >> 12).astype(np.int64)
        n = len(mpns)
        mpn_of = pmap.mpn_of
        expected = np.full(max(pmap.npages, int(ppns.max(initial=0)) + 1), -1, dtype=np.int64)
        if mpn_of:
            expected[np.fromiter(mpn_of.keys(), np.int64, len(mpn_of))] = np.fromiter(
                mpn_of.values(), np.int64, len(mpn_of))
        owned = _owned(monitor)
        if not ((expected[ppns] == mpns).all() and (mpns < len(owned)).all()
                and owned[mpns].all()):
            return _check_nested_entries(monitor)
        if pmap.shared and np.isin(ppns[(nptes & PTE_W) != 0], list(pmap.shared)).any():
            return _check_nested_entries(monitor)
    monitor.invariant_checks = getattr(monitor, "invariant_checks", 0) + 1
    return n


def _check_nested_entries(monitor) -> int:
    """``check_nested`` entry by entry: raises on the first entry that is
    wrong, naming it."""
    nested, pmap = monitor.nested, monitor.pmap
    owner = monitor.machine.owner
    for mpn in (nested.root, *nested.tables.values()):
        if owner.get(mpn) != "vmm":
            raise InvariantError(f"check_nested: nested table page mpn {mpn:#x} "
                                 "is not owned by the VMM")
    n = 0
    for ppn, npte in nested.entries():
        n += 1
        mpn = npte >> 12
        if pmap.mpn_of.get(ppn) != mpn or not pmap.owns(mpn):
            raise InvariantError(f"check_nested: npte for ppn {ppn:#x} = {npte:#010x} "
                                 f"maps mpn {mpn:#x}, not the PMap's page of {pmap.name}")
        if ppn in pmap.shared and npte & PTE_W:
            raise InvariantError(f"check_nested: npte for ppn {ppn:#x} lets the guest "
                                 f"write the shared page mpn {mpn:#x}")
    monitor.invariant_checks = getattr(monitor, "invariant_checks", 0) + 1
    return n


def check_vmm(monitor) -> int:
    """The check of ``monitor``'s mode: shadow tables or the nested table
    (once its VM has ended and left the machine: that it holds neither)."""
    if monitor.left:
        return _check_left(monitor)
    if hasattr(monitor, "shadow"):
        return check_shadow(monitor)
    return check_nested(monitor)


def _check_left(monitor) -> int:
    """A VM that has ended gave every table and translation back."""
    shadow, nested = getattr(monitor, "shadow", None), getattr(monitor, "nested", None)
    if (shadow is not None and shadow.pages) or (
            nested is not None and (nested.root is not None or nested.tables)):
        raise InvariantError(f"check_vmm: {monitor.name} has ended, and its VMM still "
                             "holds tables")
    held = monitor.translations(describe=True)
    if held:
        raise InvariantError(f"check_vmm: {monitor.name} has ended, and its hardware "
                             f"still holds the {held[0][0]}")
    return 0
