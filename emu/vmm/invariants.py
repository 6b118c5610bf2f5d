"""Resource control, checked: the guest reaches nothing it was not given.

``check_shadow(monitor)`` verifies, for one VM under shadow paging:

* every present entry of a shadow page directory points to a shadow page
  table of this VM (a VMM-owned machine page the VMM knows as a table);
* every present spte maps a machine page the VM's PMap owns -- never a
  shadow page, a VMM page, another VM's page or a free page;
* under the tracing policy, every shadowed guest table page that is backed is
  mapped read-only by every spte that maps it (a write to it must exit);
* the reverse map lists exactly the present sptes.

A violation raises ``InvariantError`` naming the entry.
"""

from __future__ import annotations

from ..hw.paging import PTE_P, PTE_W
from .shadow import DIRECTORY_ROLES


class InvariantError(AssertionError):
    """The isolation invariant does not hold."""


def check_shadow(monitor) -> int:
    """Check every shadow entry of ``monitor``'s VM; returns entries checked."""
    shadow, pmap = monitor.shadow, monitor.pmap
    owner = monitor.machine.owner
    seen: dict[int, set] = {}
    checked = 0
    for key, sp in shadow.pages.items():
        if owner.get(sp.mpn) != "vmm":
            raise InvariantError(f"check_shadow: shadow page {key} at mpn {sp.mpn:#x} "
                                 "is not owned by the VMM")
        for idx in range(1024):
            e = sp.entry(idx)
            if not e & PTE_P:
                continue
            checked += 1
            target = e >> 12
            where = f"{key}[{idx}] = {e:#010x}"
            if sp.role in DIRECTORY_ROLES:
                child = shadow.by_mpn.get(target)
                if child is None or child.role in DIRECTORY_ROLES:
                    raise InvariantError(f"check_shadow: spde {where} does not point "
                                         "to a shadow page table")
                continue
            if not pmap.owns(target):
                what = ("a shadow page" if target in shadow.by_mpn else
                        f"a page owned by {owner.get(target, 'nobody')}")
                raise InvariantError(f"check_shadow: spte {where} maps {what}, "
                                     f"not a page of {pmap.name}")
            seen.setdefault(target, set()).add((sp, idx))
            if shadow.tracing and e & PTE_W:
                gppn = pmap.ppn_of.get(target)
                if gppn is not None and shadow.is_protected(gppn):
                    raise InvariantError(f"check_shadow: spte {where} lets the guest "
                                         f"write its page table at ppn {gppn:#x}")
    for mpn, refs in shadow.rmap.items():
        if refs != seen.get(mpn, set()):
            raise InvariantError(f"check_shadow: reverse map of mpn {mpn:#x} is stale")
    if set(seen) - set(shadow.rmap):
        raise InvariantError("check_shadow: reverse map misses present sptes")
    monitor.invariant_checks = getattr(monitor, "invariant_checks", 0) + 1
    return checked
