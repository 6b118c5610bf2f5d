"""The MMU's slow data accesses (``Mmu.read``/``Mmu.write``, used by system
instructions, deliveries and iret) are answered by the fast maps when they
can be.  That must change nothing but host time: every guest, in every
mode and TLB shape, ends with the same result, the same counters and the
same TLB contents, in the same LRU order, as when every such access goes
through ``translate``."""

from __future__ import annotations

import pytest

from emu import programs
from emu.cli import build_parser, config_from
from emu.hw.mmu import Mmu
from emu.system import System

GUESTS = [name for name, _ in programs.catalogue()]
SHAPES = [dict(tlb_policy="lru"), dict(tlb_policy="fifo"),
          dict(tlb_policy="lru", tlb_entries=8, tlb_ways=2),
          dict(tlb_policy="lru", tlb_kind="unified", tlb_entries=16, tlb_ways=4)]


def _read_by_translate(self, va, size, counted=True, fetch=False):
    va &= 0xFFFFFFFF
    off = va & 0xFFF
    page, _ = self.translate(va, False, fetch, counted)
    if off + size <= 4096:
        return int.from_bytes(page[off:off + size], "little")
    page2, _ = self.translate((va + 4096 - off) & 0xFFFFFFFF, False, fetch)
    return int.from_bytes(bytes(page[off:]) + bytes(page2[:size - (4096 - off)]), "little")


def _write_by_translate(self, va, size, value, counted=True):
    va &= 0xFFFFFFFF
    off = va & 0xFFF
    page, pn = self.translate(va, True, False, counted)
    data = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
    if off + size <= 4096:
        page[off:off + size] = data
        self.wrote_bytes(pn, off, off + size)
        return
    first = 4096 - off
    page2, pn2 = self.translate((va + first) & 0xFFFFFFFF, True, False)
    page[off:] = data[:first]
    page2[:size - first] = data[first:]
    self._wrote(pn)
    self._wrote(pn2)


def _check_write_by_translate(self, va):
    self.translate(va & 0xFFFFFFFF, True)


def _end(name, mode, shape):
    path = programs.resolve(name)
    args = build_parser().parse_args(["run", path, *programs.default_options(path)])
    system = System(programs.assemble_file(path), config_from(args).with_(mode=mode, **shape))
    r = system.run()
    tlbs = [[(e.vpn, e.pn, e.writable, e.dirty) for s in (*t.sets, t.large)
             for e in s.values()] for t in (system.itlb, system.dtlb)]
    return r.guest_visible(), r.stats, r.cycles, tlbs


@pytest.mark.parametrize("shape", SHAPES, ids=["lru", "fifo", "lru8x2", "unified16"])
@pytest.mark.parametrize("mode", ["native", "shadow", "nested"])
@pytest.mark.parametrize("name", GUESTS)
def test_fast_answers_change_nothing_the_guest_or_the_counters_see(name, mode, shape,
                                                                    monkeypatch):
    fast = _end(name, mode, shape)
    monkeypatch.setattr(Mmu, "read", _read_by_translate)
    monkeypatch.setattr(Mmu, "write", _write_by_translate)
    monkeypatch.setattr(Mmu, "check_write", _check_write_by_translate)
    slow = _end(name, mode, shape)
    assert fast[0] == slow[0]
    assert fast[1] == slow[1]
    assert fast[2:] == slow[2:]
