"""Resource control on the machine, checked: every page in one state, and
no VM reaching a page it was not given.

``check_host(host)`` verifies the whole machine: every machine page and
guest page in one consistent state (pmap.py), reference counts exact, swap
slots accounted for, and for every VM that every translation it holds --
TLB entries and the CPU's fast maps included -- reaches only a page it may:
never a free page, a page with swap I/O in flight, another VM's page or a
freed page's old bytes; a shared page never writable.

Tests run it after every VM exit and every host event (reclaim, swap I/O,
sharing scan), so it works with set operations and counting, and says
what is wrong only once something is (``_check_pages_one_by_one``).  A
violation raises ``InvariantError`` (``invariants.py``, whose checks of
each VMM's own tables run beside this one).
"""

from __future__ import annotations

from collections import Counter

from .invariants import InvariantError
from .pmap import MAPPED, READING_IN, SHARED_OWNER, SHARED_PAGE, VMM, VMM_OWNER, WRITING_OUT


def check_host(host, only: str | None = None) -> int:
    """Check the host's page states when any page changed state since the
    last check, and the reach of every VM (``only``: of that VM, after its
    own exit -- the other VMs' translations changed only in host events,
    which check them all); returns the pages checked."""
    version = (host.machine.version, *(vm.pmap.version for vm in host.vms.values()))
    if version != getattr(host, "checked_version", None):
        _check_pages(host)
        host.checked_version = version
    for name, vm in host.vms.items():
        if only is not None and name != only:
            continue
        reach = getattr(vm.hooks, "translations", None)
        if reach is not None and not _translations_ok(vm, host.machine):
            _check_translations(name, vm.pmap, host.machine, reach())
    return len(host.machine.state)


def _translations_ok(vm, machine) -> bool:
    """``_check_translations`` finds nothing wrong (it says what is, when
    this is False): the same tests, without the words, each page asked of
    the PMap once (a page is held by a TLB entry and a fast map or two)."""
    hooks = vm.hooks
    if not hasattr(hooks, "mmu"):
        return False
    held = hooks.translations(describe=False)
    pns = {pn for _, pn, _, _ in held}
    if None in pns or not all(map(hooks.pmap.owns, pns)):
        return False
    get = machine.mem.pages.get
    if [pn for _, pn, page, _ in held if page is not None and get(pn) is not page]:
        return False
    state = machine.state
    return SHARED_PAGE not in {state.get(pn) for _, pn, _, writable in held if writable}


def _check_pages(host) -> None:
    """Every machine page, guest page and swap slot in one consistent state
    (set operations and counting where it can: this runs after every host
    event; where something is wrong, ``_check_pages_one_by_one`` says what)."""
    machine = host.machine
    owner, state = machine.owner, machine.state
    if owner.keys() != state.keys() \
            or len(owner) + machine.free_pages() != machine.npages - 1 \
            or not owner.keys().isdisjoint(machine._free):
        return _check_pages_one_by_one(host)
    groups = Counter(zip(state.values(), map(owner.__getitem__, state.keys())))
    refs: dict[int, set] = {}
    slots = set()
    in_flight = set()
    for name, vm in host.vms.items():
        pmap = vm.pmap
        shared_items = {(ppn, pmap.mpn_of[ppn]) for ppn in pmap.shared}
        # the PMap less its shared pages and its reverse are one bijection
        if len(pmap.mpn_of) - len(pmap.shared) != len(pmap.ppn_of) \
                or list(map(pmap.mpn_of.get, pmap.ppn_of.values())) != list(pmap.ppn_of) \
                or not pmap.shared.isdisjoint(pmap.ppn_of.values()):
            return _check_pages_one_by_one(host)
        # ppn_of's pages are exactly those mapped for this VM: as many, and
        # each of them mapped and this VM's
        ppn_of = pmap.ppn_of
        n = len(ppn_of)
        if groups.get((MAPPED, name), 0) != n or (n and (
                list(map(state.get, ppn_of)).count(MAPPED) != n
                or list(map(owner.get, ppn_of)).count(name) != n)):
            return _check_pages_one_by_one(host)
        counts: dict[int, int] = {}
        for ppn, mpn in shared_items:
            if state.get(mpn) != SHARED_PAGE:
                return _check_pages_one_by_one(host)
            refs.setdefault(mpn, set()).add((name, ppn))
            counts[mpn] = counts.get(mpn, 0) + 1
        if counts != pmap.shared_mpns:
            return _check_pages_one_by_one(host)
        for ppn, io in pmap.in_flight.items():
            if ppn in pmap.mpn_of or ppn in pmap.swapped or state.get(io.mpn) != io.kind \
                    or owner.get(io.mpn) != name:
                return _check_pages_one_by_one(host)
            if io.kind == READING_IN:
                slots.add(io.key)
            in_flight.add(io.mpn)
        if not pmap.swapped.keys().isdisjoint(pmap.mpn_of):
            return _check_pages_one_by_one(host)
        slots.update(pmap.swapped.values())
    if slots != host.disk.store.keys():
        return _check_pages_one_by_one(host)
    for (st, who), n in groups.items():
        if (st == VMM) != (who == VMM_OWNER) or (st == SHARED_PAGE) != (who == SHARED_OWNER):
            return _check_pages_one_by_one(host)
        if st == MAPPED and who not in host.vms:
            return _check_pages_one_by_one(host)
        if st in (WRITING_OUT, READING_IN) and (
                n > len(in_flight) or {m for m, s in state.items() if s == st} - in_flight):
            return _check_pages_one_by_one(host)
    if groups.get((SHARED_PAGE, SHARED_OWNER)) or refs or host.sharers:
        shared = {m for m, s in state.items() if s == SHARED_PAGE}
        if shared != refs.keys() or any(refs[m] != host.sharers.get(m) for m in shared) \
                or host.sharers.keys() != shared:
            return _check_pages_one_by_one(host)
    return None


def _check_pages_one_by_one(host) -> None:
    """``_check_pages`` page by page: raises on the first thing wrong,
    naming it."""
    machine = host.machine
    owner, state = machine.owner, machine.state
    if owner.keys() != state.keys():
        raise InvariantError("check_host: machine pages with an owner but no state, "
                             "or the other way round")
    if len(owner) + machine.free_pages() != machine.npages - 1:
        raise InvariantError(f"check_host: {len(owner)} pages in use and "
                             f"{machine.free_pages()} free do not add up to "
                             f"{machine.npages - 1}")
    if not owner.keys().isdisjoint(machine._free):
        raise InvariantError("check_host: a machine page is free and in use")
    by_state: dict[tuple, set] = {}
    for mpn, st in state.items():
        by_state.setdefault((st, owner[mpn]), set()).add(mpn)
    refs: dict[int, set] = {}
    slots = set()
    for name, vm in host.vms.items():
        pmap = vm.pmap
        shared_items = {(ppn, pmap.mpn_of[ppn]) for ppn in pmap.shared}
        if pmap.mpn_of.items() - shared_items != set(zip(pmap.ppn_of.values(),
                                                        pmap.ppn_of.keys())):
            raise InvariantError(f"check_host: {name}'s PMap and its reverse disagree")
        mapped = by_state.get((MAPPED, name), set())
        if pmap.ppn_of.keys() != mapped:
            bad = min(pmap.ppn_of.keys() ^ mapped)
            raise InvariantError(
                f"check_host: {name} maps mpn {bad:#x} in its PMap, which is "
                f"{state.get(bad, 'free')} and owned by {owner.get(bad, 'nobody')}"
                if bad in pmap.ppn_of else
                f"check_host: mpn {bad:#x} is mapped for {name}, but no guest page of it "
                "is bound to it")
        counts: dict[int, int] = {}
        for ppn, mpn in shared_items:
            if state.get(mpn) != SHARED_PAGE:
                raise InvariantError(f"check_host: {name} ppn {ppn:#x} is shared, but "
                                     f"mpn {mpn:#x} is {state.get(mpn, 'free')}")
            refs.setdefault(mpn, set()).add((name, ppn))
            counts[mpn] = counts.get(mpn, 0) + 1
        if counts != pmap.shared_mpns:
            raise InvariantError(f"check_host: {name}'s shared-page counts are stale")
        for ppn, io in pmap.in_flight.items():
            if ppn in pmap.mpn_of or ppn in pmap.swapped or state.get(io.mpn) != io.kind \
                    or owner.get(io.mpn) != name:
                raise InvariantError(f"check_host: {name} ppn {ppn:#x} is {io.kind} at "
                                     f"mpn {io.mpn:#x}, which is "
                                     f"{state.get(io.mpn, 'free')}")
            if io.kind == READING_IN:
                slots.add(io.key)
        if not pmap.swapped.keys().isdisjoint(pmap.mpn_of):
            raise InvariantError(f"check_host: a guest page of {name} is on the disk and "
                                 "mapped")
        slots.update(pmap.swapped.values())
    if slots != host.disk.store.keys():
        raise InvariantError(f"check_host: {len(host.disk.store)} swap slots in use, "
                             f"{len(slots)} guest pages on the disk")
    in_flight = {io.mpn for vm in host.vms.values() for io in vm.pmap.in_flight.values()}
    for (st, who), mpns in by_state.items():
        if st in (WRITING_OUT, READING_IN) and mpns - in_flight:
            raise InvariantError(f"check_host: mpn {min(mpns - in_flight):#x} is {st} "
                                 "for no guest page")
        if (st == VMM) != (who == VMM_OWNER) or (st == SHARED_PAGE) != (who == SHARED_OWNER):
            raise InvariantError(f"check_host: mpn {min(mpns):#x} is {st} and owned by {who}")
        if st == MAPPED and who not in host.vms:
            raise InvariantError(f"check_host: mpn {min(mpns):#x} mapped for unknown {who}")
    shared = by_state.get((SHARED_PAGE, SHARED_OWNER), set())
    if shared != refs.keys() or any(refs[m] != host.sharers.get(m) for m in shared) \
            or host.sharers.keys() != shared:
        bad = min(shared ^ refs.keys() or shared ^ host.sharers.keys()
                  or {m for m in shared if refs[m] != host.sharers.get(m)})
        raise InvariantError(f"check_host: shared mpn {bad:#x} has references "
                             f"{sorted(refs.get(bad, ()))}, the host counts "
                             f"{sorted(host.sharers.get(bad, ()))}")


def _check_translations(name, pmap, machine, held) -> None:
    """``held``: (what, pn, page, writable) of every translation the VM's
    hardware holds: each must reach a page the VM may reach, through the
    page's current bytes (a freed page's old bytes are lost writes), and
    never write a shared page.  ``pn`` None: a translation with no page."""
    pages = machine.mem.pages
    for what, pn, page, writable in held:
        if pn is None:
            raise InvariantError(f"check_host: {name}'s {what} has no TLB entry "
                                 "behind it")
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
