"""Several VMs on a machine too small for them: nothing lost, nothing crossed,
everybody finishes.

The kernel (``swap_rounds``) runs with paging off and writes ``i + round``
into the last dword of each of its pages, three rounds, then counts the
pages that do not hold ``i + 2`` and powers off with that count.  Two or
three copies on a 1 MiB machine (256 machine pages for 2 x 160 or 3 x 300
guest pages) swap all the time; with the resource-control checks on after
every exit and every host event (reclaim, swap I/O, sharing scan), every
copy must report 0 in every mode, policy, swap latency and sharing
interval.  Before the host's page states were explicit, two copies lost
pages and mapped each other's (issue: a swap-in's page was reclaimed as a
zero page while its read was in flight and handed to the other VM).
"""

from __future__ import annotations

import pytest

from emu.asm import assemble
from emu.multi import run_many
from emu.system import Config, System
from emu.vmm import invariants
from emu.vmm.shadow import POLICIES

CONFIGS = [("shadow", p) for p in POLICIES] + [("nested", "trace-cache")]
IDS = list(POLICIES) + ["nested"]


def swap_rounds(pages: int) -> str:
    return f"""
KSTACK_TOP equ 0x80000
PAGES equ {pages}
org 0x1000
_start:
    mov esp, KSTACK_TOP
    mov ebx, 0
.round:
    mov ecx, 0
.w:
    mov edx, ecx
    shl edx, 12
    lea eax, [ecx + ebx]
    mov [0x400FFC + edx], eax
    inc ecx
    cmp ecx, PAGES
    jne .w
    inc ebx
    cmp ebx, 3
    jne .round
    mov ecx, 0
    mov esi, 0
.r:
    mov edx, ecx
    shl edx, 12
    mov eax, [0x400FFC + edx]
    lea edi, [ecx + 2]
    cmp eax, edi
    je .ok
    inc esi
.ok:
    inc ecx
    cmp ecx, PAGES
    jne .r
    mov eax, esi
    out 0xF4, eax
"""


def run_copies(copies: int, pages: int, **config):
    image = assemble(swap_rounds(pages), "swap_rounds.s")
    cfg = Config(machine_mib=1, check_invariants=True, **config)
    names = [f"swap#{i + 1}" for i in range(copies)]
    return run_many([image] * copies, names, cfg)


def outcomes(multi) -> list:
    return [(r.outcome, r.exit_status) for _, r in multi.results]


@pytest.mark.parametrize("mode,policy,latency", [
    *[(m, p, lat) for m, p in CONFIGS for lat in (0, 100)],
    ("shadow", "trace-cache", 1), ("nested", "trace-cache", 1)],
    ids=[*[f"{i}-{lat}" for i in IDS for lat in (0, 100)], "trace-cache-1", "nested-1"])
def test_two_copies_lose_nothing(mode, policy, latency):
    multi = run_copies(2, 160, mode=mode, shadow_policy=policy, swap_latency=latency,
                       share_interval=0)
    assert outcomes(multi) == [("poweroff", 0)] * 2
    assert multi.host["swap_outs"] > 300 and multi.host["swap_ins"] > 300


@pytest.mark.parametrize("mode,policy", [("shadow", "trace-cache"), ("shadow", "oos-drop"),
                                         ("nested", "trace-cache")])
def test_two_copies_lose_nothing_while_pages_are_shared(mode, policy):
    """The copies write the same values: the scans share their pages, and
    every round's writes break the sharing again."""
    multi = run_copies(2, 160, mode=mode, shadow_policy=policy, swap_latency=100,
                       share_interval=2_000)
    assert outcomes(multi) == [("poweroff", 0)] * 2
    assert multi.host["scans"] > 10 and multi.host["cow_breaks"] > 100


def test_with_the_default_disk_every_copy_finishes():
    """The default swap disk (20,000 cycles a transfer) on a machine far too
    small: the disk is the bottleneck, yet both copies finish, and their
    time is the disk's (no livelock between reclaim and refault)."""
    multi = run_copies(2, 160, share_interval=0)
    assert outcomes(multi) == [("poweroff", 0)] * 2
    disk = multi.host["disk"]
    assert disk["busy_cycles"] > 0.9 * multi.cycles


def test_three_copies_all_make_progress():
    """Three times 300 pages on 256: every copy ends, none stalls."""
    multi = run_copies(3, 300, swap_latency=1, share_interval=0)
    assert outcomes(multi) == [("poweroff", 0)] * 3


def test_alone_it_needs_no_swap():
    image = assemble(swap_rounds(160), "swap_rounds.s")
    r = System(image, Config(check_invariants=True)).run()
    assert (r.outcome, r.exit_status, r.stats["host"]["swap_outs"]) == ("poweroff", 0, 0)


# --- the checker catches what it must: mutants of the host ------------------------------
def _expect_violation(monkeypatch, attr: str, mutant, match: str, share_interval: int):
    from emu.vmm.host import Host
    original = getattr(Host, attr)
    monkeypatch.setattr(Host, attr, mutant(original))
    with pytest.raises(invariants.InvariantError, match=match):
        run_copies(2, 160, swap_latency=100, share_interval=share_interval)


def test_a_reclaim_that_keeps_the_mappings_is_caught(monkeypatch):
    """Evicting a page without zapping its sptes and TLB entries first."""
    def mutant(original):
        def _evict(self, vm, ppn, mpn):
            hooks = vm.hooks
            vm.hooks = _NoUnmap(hooks)
            try:
                return (yield from original(self, vm, ppn, mpn))
            finally:
                vm.hooks = hooks
        return _evict
    _expect_violation(monkeypatch, "_evict", mutant, "maps a page owned by|reaches mpn",
                      share_interval=0)


def test_unpinning_a_page_in_the_middle_of_its_swap_in_is_caught(monkeypatch):
    """The old bug: a page whose read is in flight treated as an ordinary
    page: the state machine refuses the transition."""
    from emu.vmm import pmap

    def mutant(original):
        def _swap_in(self, vm, ppn):
            mpn = yield from original(self, vm, ppn)
            if mpn is not None:
                self.machine.set_state(mpn, pmap.READING_IN)   # reading-in again
            return mpn
        return _swap_in
    from emu.vmm.host import Host
    monkeypatch.setattr(Host, "_swap_in", mutant(Host._swap_in))
    with pytest.raises(pmap.PageStateError, match="no transition mapped -> reading-in"):
        run_copies(2, 160, swap_latency=100, share_interval=0)


def test_a_shared_page_left_writable_is_caught(monkeypatch):
    def mutant(original):
        def _make_shared(self, mpn):
            vm = self.vms.get(self.machine.owner.get(mpn))
            hooks = vm.hooks if vm is not None else None
            if vm is not None:
                vm.hooks = _NoUnmap(hooks)
            try:
                return original(self, mpn)
            finally:
                if vm is not None:
                    vm.hooks = hooks
        return _make_shared
    _expect_violation(monkeypatch, "_make_shared", mutant,
                      "write the shared page|lets the guest write", share_interval=2_000)


def test_a_stale_sharing_count_is_caught(monkeypatch):
    def mutant(original):
        def scan(self):
            hashed = original(self)
            for refs in self.sharers.values():
                refs.add(("swap#1", 0x3FF))          # a reference nobody holds
                break
            if self.check is not None:
                self.check(self)
            return hashed
        return scan
    _expect_violation(monkeypatch, "scan", mutant, "shared mpn .* has references",
                      share_interval=2_000)


class _NoUnmap:
    """A VMM whose unmap_page forgets to zap anything."""

    def __init__(self, hooks):
        self._hooks = hooks

    def unmap_page(self, ppn, mpn):
        pass

    def __getattr__(self, name):
        return getattr(self._hooks, name)
