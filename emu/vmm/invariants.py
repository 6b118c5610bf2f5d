"""Resource control, checked: the guest reaches nothing it was not given.

``check_shadow(monitor)`` verifies, for one VM under shadow paging:

* every shadow page is a machine page owned by the VMM;
* every present entry of a shadow page directory points to a shadow page
  table of this VM;
* every present spte maps a machine page the VM's PMap owns -- never a
  shadow page, another VM's page or a free page;
* no spte lets the guest write a shadowed guest table page that is in sync
  (a write to it must exit; under oos, an out-of-sync page may be written);
* the reverse map counts exactly the present sptes of each machine page.

``check_host(host)`` verifies the whole machine: every machine page and
guest page in one consistent state (pmap.py), reference counts exact, swap
slots accounted for, and for every VM that every translation it holds --
TLB entries and the CPU's fast maps included -- reaches only a page it may:
never a free page, a page with swap I/O in flight, another VM's page or a
freed page's old bytes; a shared page never writable.

A violation raises ``InvariantError`` naming the entry.  The checks are
vectorized (numpy) because tests run them after every VM exit and every
host event (reclaim, swap I/O, sharing scan).
"""

from __future__ import annotations

import numpy as np

from ..hw.paging import PTE_P, PTE_W
from .pmap import MAPPED, READING_IN, SHARED_OWNER, SHARED_PAGE, VMM, VMM_OWNER, WRITING_OUT
from .shadow import DIRECTORY_ROLES


class InvariantError(AssertionError):
    """The isolation invariant does not hold."""


def check_shadow(monitor) -> int:
    """Check every shadow entry of ``monitor``'s VM; returns entries checked."""
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
        if protected:
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
    its ppn (so a guest reaches only its own pages); returns nptes checked."""
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


def check_host(host) -> int:
    """Check the host's page states and every VM's reach; returns the
    machine pages checked."""
    machine = host.machine
    owner, state = machine.owner, machine.state
    if owner.keys() != state.keys():
        raise InvariantError("check_host: machine pages with an owner but no state, "
                             "or the other way round")
    if len(owner) + machine.free_pages() != machine.npages - 1:
        raise InvariantError(f"check_host: {len(owner)} pages in use and "
                             f"{machine.free_pages()} free do not add up to "
                             f"{machine.npages - 1}")
    free = set(machine._free)
    if free & owner.keys():
        raise InvariantError(f"check_host: mpn {min(free & owner.keys()):#x} is free and "
                             "in use")
    refs: dict[int, set] = {}
    in_flight: dict[int, tuple] = {}
    slots = set()
    for name, vm in host.vms.items():
        pmap = vm.pmap
        for ppn, mpn in pmap.mpn_of.items():
            if ppn in pmap.shared:
                if state.get(mpn) != SHARED_PAGE:
                    raise InvariantError(f"check_host: {name} ppn {ppn:#x} is shared, but "
                                         f"mpn {mpn:#x} is {state.get(mpn, 'free')}")
                refs.setdefault(mpn, set()).add((name, ppn))
            elif (state.get(mpn), owner.get(mpn), pmap.ppn_of.get(mpn)) != (MAPPED, name, ppn):
                raise InvariantError(
                    f"check_host: {name} ppn {ppn:#x} -> mpn {mpn:#x}, which is "
                    f"{state.get(mpn, 'free')} and owned by {owner.get(mpn, 'nobody')}")
        if len(pmap.ppn_of) + len(pmap.shared) != len(pmap.mpn_of):
            raise InvariantError(f"check_host: {name}'s reverse PMap is not exact")
        counts: dict[int, int] = {}
        for ppn in pmap.shared:
            counts[pmap.mpn_of[ppn]] = counts.get(pmap.mpn_of[ppn], 0) + 1
        if counts != pmap.shared_mpns:
            raise InvariantError(f"check_host: {name}'s shared-page counts are stale")
        for ppn, io in pmap.in_flight.items():
            if ppn in pmap.mpn_of or ppn in pmap.swapped or state.get(io.mpn) != io.kind \
                    or owner.get(io.mpn) != name:
                raise InvariantError(f"check_host: {name} ppn {ppn:#x} is {io.kind} at "
                                     f"mpn {io.mpn:#x}, which is "
                                     f"{state.get(io.mpn, 'free')}")
            in_flight[io.mpn] = (name, ppn)
            if io.kind == READING_IN:
                slots.add(io.key)
        for ppn, key in pmap.swapped.items():
            if ppn in pmap.mpn_of:
                raise InvariantError(f"check_host: {name} ppn {ppn:#x} is on the disk and "
                                     "mapped")
            slots.add(key)
    if slots != host.disk.store.keys():
        raise InvariantError(f"check_host: {len(host.disk.store)} swap slots in use, "
                             f"{len(slots)} guest pages on the disk")
    for mpn, st in state.items():
        if st == SHARED_PAGE:
            if owner[mpn] != SHARED_OWNER or refs.get(mpn, set()) != host.sharers.get(mpn) \
                    or not refs.get(mpn):
                raise InvariantError(f"check_host: shared mpn {mpn:#x} has references "
                                     f"{sorted(refs.get(mpn, ()))}, the host counts "
                                     f"{sorted(host.sharers.get(mpn, ()))}")
        elif st in (WRITING_OUT, READING_IN):
            if mpn not in in_flight:
                raise InvariantError(f"check_host: mpn {mpn:#x} is {st} for no guest page")
        elif st == VMM and owner[mpn] != VMM_OWNER:
            raise InvariantError(f"check_host: VMM page mpn {mpn:#x} owned by {owner[mpn]}")
        elif st == MAPPED and owner[mpn] not in host.vms:
            raise InvariantError(f"check_host: mpn {mpn:#x} mapped for unknown {owner[mpn]}")
    if host.sharers.keys() - refs.keys():
        raise InvariantError("check_host: the host shares a page no guest page is bound to")
    for name, vm in host.vms.items():
        reach = getattr(vm.hooks, "translations", None)
        if reach is not None:
            _check_translations(name, vm.pmap, machine, reach())
    return len(state)


def _check_translations(name, pmap, machine, held) -> None:
    """``held``: (what, pn, page, writable) of every translation the VM's
    hardware holds: each must reach a page the VM may reach, through the
    page's current bytes (a freed page's old bytes are lost writes), and
    never write a shared page."""
    pages = machine.mem.pages
    for what, pn, page, writable in held:
        if pn is None:
            raise InvariantError(f"check_host: {name}'s {what} holds the bytes of a "
                                 "machine page that was freed (its writes are lost)")
        if not pmap.owns(pn):
            st = machine.state.get(pn, "free")
            raise InvariantError(f"check_host: {name}'s {what} reaches mpn {pn:#x}, which "
                                 f"is {st} (owner {machine.owner.get(pn, 'nobody')})")
        if page is not None and pages.get(pn) is not page:
            raise InvariantError(f"check_host: {name}'s {what} holds stale bytes of mpn "
                                 f"{pn:#x} (the page was freed since)")
        if writable and machine.state.get(pn) == SHARED_PAGE:
            raise InvariantError(f"check_host: {name}'s {what} lets the guest write the "
                                 f"shared page mpn {pn:#x}")
