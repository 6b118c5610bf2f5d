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

A violation raises ``InvariantError`` naming the entry.  The check is
vectorized (numpy) because tests run it after every VM exit.
"""

from __future__ import annotations

import numpy as np

from ..hw.paging import PTE_P, PTE_W
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
