"""A walk nobody watches skips its record: the MMU walks a 4 KiB page
inline (``Mmu.translate``), the nested walker makes its 2D walk without the
grid (``NestedWalker.fast``), and either gives way to the full walk when the
walk would fault or is unusual.  That must change nothing but host time:
every guest and every random paging kernel, in every mode and TLB shape,
ends with the same result, the same counters, the same TLB and NTLB
contents in the same order, and the same bytes in every page of memory
(the A and D bits the walks set, in the guest's tables and the nested
ones), as when every walk is made in full."""

from __future__ import annotations

import guestgen
import pytest
from hypothesis import HealthCheck, given, settings

from emu import programs
from emu.asm.assembler import assemble
from emu.cli import build_parser, config_from
from emu.hw import paging
from emu.hw.nested import NestedWalker
from emu.system import Config, System

GUESTS = [name for name, _ in programs.catalogue()]
SHAPES = {"default": dict(), "fifo8x2": dict(tlb_policy="fifo", tlb_entries=8, tlb_ways=2),
          "unified16-ntlb2": dict(tlb_kind="unified", tlb_entries=16, tlb_ways=4,
                                  ntlb_entries=2),
          "ntlb0": dict(ntlb_entries=0)}
# (the NTLB's shapes matter under nested paging only)
CASES = [pytest.param(name, mode, shape, id=f"{name}-{mode}-{label}")
         for name in GUESTS for mode in ("native", "shadow", "nested")
         for label, shape in SHAPES.items() if mode == "nested" or label != "ntlb0"]


def _full_walks_only(monkeypatch) -> None:
    """Every walk made by the full walkers, as a watched run makes them."""
    monkeypatch.setattr(paging, "walk_quiet", lambda *a: None)
    monkeypatch.setattr(NestedWalker, "fast", lambda self, *a: None)


def _end(system: System):
    r = system.run()
    tlbs = [[(e.vpn, e.pn, e.writable, e.user, e.dirty, e.global_) for s in (*t.sets, t.large)
             for e in s.values()] for t in (system.itlb, system.dtlb)]
    mmu = system.mmu
    walker = mmu.walker
    nested = (list(walker.ntlb.items()), walker.stats()) if isinstance(
        walker, NestedWalker) else None
    memory = {pn: bytes(page) for pn, page in system.mem.pages.items() if any(page)}
    return (r.guest_visible(), r.stats, r.cycles, tlbs, nested, memory,
            (mmu.walks, mmu.walk_refs, mmu.tlb_fills, mmu.page_faults,
             sorted(mmu.split_regions)))


def _guest(name: str, mode: str, shape: dict) -> System:
    path = programs.resolve(name)
    args = build_parser().parse_args(["run", path, *programs.default_options(path)])
    return System(programs.assemble_file(path), config_from(args).with_(mode=mode, **shape))


@pytest.mark.parametrize("name, mode, shape", CASES)
def test_walks_without_records_change_nothing(name, mode, shape, monkeypatch):
    fast = _end(_guest(name, mode, shape))
    _full_walks_only(monkeypatch)
    full = _end(_guest(name, mode, shape))
    for i, what in enumerate(("guest-visible result", "stats", "cycles", "TLBs",
                              "NTLB and nested walker counts", "memory", "MMU counts")):
        assert fast[i] == full[i], f"{what} differ"


def test_the_shortcuts_are_taken():
    """The comparisons compare something: in a guest that misses the TLB
    page after page, nearly every walk is answered by a shortcut (a walk
    without its record that found the page: the MMU's ``_quiet``)."""
    for mode in ("native", "nested"):
        system = _guest("tlbthrash", mode, {})
        quiet, answered = system.mmu._quiet, []

        def counting(*a, quiet=quiet, answered=answered):
            got = quiet(*a)
            if got is not None:
                answered.append(a[2])
            return got
        system.mmu._quiet = counting
        system.run()
        assert system.mmu.walks > 8000
        assert len(answered) > 0.75 * system.mmu.walks, mode


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(guestgen.guest_programs())
def test_random_paging_kernels_walk_the_same_without_records(prog):
    image = assemble(prog.source, prog.name, include_dirs=[str(programs.include_dir())])
    fields = prog.config_fields()
    with pytest.MonkeyPatch.context() as mp:
        for mode in ("native", "shadow", "nested"):
            for shape in (dict(), dict(tlb_entries=4, tlb_ways=1, ntlb_entries=2)):
                config = Config(mode=mode, **{**fields, **shape})
                fast = _end(System(image, config))
                _full_walks_only(mp)
                full = _end(System(image, config))
                mp.undo()
                assert fast == full, (mode, shape)
