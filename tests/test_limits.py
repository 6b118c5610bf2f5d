"""Limits: big sparse guests run in memory proportional to what they touch.

``benchmarks/limits.py`` measures the big case (100,000 pages, host time
and peak memory per mode); here the same kernels run scaled down, with
exact counts of the pages that exist.
"""

from __future__ import annotations

import hashlib
import importlib.util
import pathlib

import pytest

from emu import programs
from emu.asm import assemble
from emu.system import Config, System

_spec = importlib.util.spec_from_file_location(
    "limits", pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "limits.py")
limits = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(limits)

MODES = ("native", "shadow", "nested")


def run(source: str, mem_mib: int, mode: str, **config):
    image = assemble(source, "<limits>", include_dirs=[str(programs.include_dir())])
    system = System(image, Config(mode=mode, mem_mib=mem_mib, **config))
    return system, system.run()


def backed(system, result) -> int:
    """Pages that exist on the host: guest RAM natively, machine pages
    handed out under a VMM (guest pages and the VMM's own tables)."""
    if result.mode == "native":
        return system.guest.touched()
    return result.stats["vmm"]["machine"]["peak_allocated"]


@pytest.mark.parametrize("mode", MODES)
def test_one_gib_of_guest_ram_costs_only_the_pages_touched(mode):
    source, mem_mib = limits.sparse_kernel()
    assert mem_mib == 1024
    system, r = run(source, mem_mib, mode)
    assert (r.outcome, r.exit_status) == ("poweroff", 0)
    assert r.instructions == 1 + 9 + 1 + 9 + 2
    # 9 data pages and the code page; under a VMM also the shadow or
    # nested tables that map them (paging is off: the VMM maps identity)
    assert backed(system, r) == {"native": 10, "shadow": 20, "nested": 20}[mode]


def test_the_hash_of_a_sparse_gib_is_the_same_in_every_mode():
    source, mem_mib = limits.sparse_kernel()
    hashes = {run(source, mem_mib, mode)[1].guest_memory_sha256 for mode in MODES}
    assert len(hashes) == 1


@pytest.mark.parametrize("mode", MODES)
def test_five_thousand_pages_touched_through_4k_page_tables(mode):
    source, mem_mib = limits.touch_kernel(5000)
    assert mem_mib == 24
    system, r = run(source, mem_mib, mode)
    assert (r.outcome, r.exit_status) == ("poweroff", 0)
    # the page-table loop (6,024 PTEs, 6 PDEs), then touch and sum 5,000 pages
    assert r.instructions == 92_227
    assert backed(system, r) == {"native": 5008, "shadow": 5017, "nested": 5015}[mode]
    if mode == "shadow":
        assert r.stats["vmm"]["faults"]["hidden"] == 5009


@pytest.mark.parametrize("mode", ["shadow", "nested"])
def test_a_thousand_pages_keep_the_invariants_at_every_exit(mode):
    # (Each check looks at every page and translation: checked at every exit,
    # the five thousand pages above would cost the square of their number.)
    source, mem_mib = limits.touch_kernel(1000)
    system, r = run(source, mem_mib, mode, check_invariants=True)
    assert (r.outcome, r.exit_status) == ("poweroff", 0)
    assert r.instructions == 24_199
    assert backed(system, r) == {"shadow": 1009, "nested": 1007}[mode]
    assert system.vmm.invariant_checks == {"shadow": 1008, "nested": 1005}[mode]


def test_the_touch_kernel_refuses_what_its_table_area_cannot_hold():
    with pytest.raises(AssertionError):
        limits.touch_kernel(1_100_000)


@pytest.mark.parametrize("mode", MODES)
def test_the_hash_is_sha256_of_every_byte_of_guest_memory_at_the_end(mode):
    # The digest is computed when first read; it is of the memory as the
    # run left it, not as it is when read.
    source, _ = limits.touch_kernel(40)
    system, r = run(source, 4, mode)
    whole = hashlib.sha256(system.guest_read(0, 4 << 20)).hexdigest()
    system.guest_write(0x3FF000, b"\xAA" * 16)
    system.guest_write(0x1000, b"\x55")
    assert r.guest_memory_sha256 == whole
    assert r.to_json()["guest_memory_sha256"] == whole
    later = system.result()
    assert later.guest_memory_sha256 == hashlib.sha256(
        system.guest_read(0, 4 << 20)).hexdigest() != whole
    assert later != r and later.registers == r.registers
