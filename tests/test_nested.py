"""Nested paging: the 2D walk's exact reference counts, EPT violations,
what does and does not exit, and ``emu compare``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from emu import Config, System, assemble
from emu.hw.nested import NestedFault, NestedWalker
from emu.vmm.nested import NestedTables
from emu.vmm.pmap import GuestPhys, MachineMemory, PMap

PWU = 0x7
PS = 0x80


def machine_with_guest_tables(ntlb: int = 16):
    """Guest tables at pa 0x1000 (PD) and 0x2000 (PT): va 0x5000 -> pa 0x3000,
    va 0x6000 -> pa 0x4000; a 4 MiB guest page at va 0x400000 -> pa 0x800000.
    Every guest page backed and mapped in the nested table."""
    machine = MachineMemory(16 << 20)
    pmap = PMap("vm0", 16 << 20, machine)
    guest = GuestPhys(pmap)
    guest.write32(0x1000, 0x2000 | PWU)
    guest.write32(0x1000 + 4, 0x800000 | PWU | PS)
    guest.write32(0x2000 + 5 * 4, 0x3000 | PWU)
    guest.write32(0x2000 + 6 * 4, 0x4000 | PWU)
    for ppn in (1, 2, 3, 4, 0x800):
        pmap.back(ppn)
    nested = NestedTables(machine)
    for ppn, mpn in pmap.items():
        nested.map(ppn, mpn)
    walker = NestedWalker(machine.mem, lambda: True, ntlb)
    walker.ncr3 = nested.root_ma
    return machine, pmap, nested, walker


def test_a_cold_2d_walk_makes_eight_references():
    machine, pmap, _, walker = machine_with_guest_tables()
    w = walker(machine.mem, 0x1000, 0x5123)
    assert not w.fault
    assert w.refs == 8          # (2+1)(2+1)-1 (Bhargava et al., ASPLOS 2008)
    assert w.pa == (pmap.mpn_of[3] << 12) | 0x123
    assert [(row, col) for row, col, _, _ in walker.last_grid] == [
        ("gcr3", "npde"), ("gcr3", "npte"), ("gcr3", "gpde"),
        ("gpde", "npde"), ("gpde", "npte"), ("gpde", "gpte"),
        ("data", "npde"), ("data", "npte")]


def test_a_walk_of_a_4mib_guest_page_makes_five():
    machine, pmap, _, walker = machine_with_guest_tables()
    w = walker(machine.mem, 0x1000, 0x400123, pse=True)
    assert (w.fault, w.large, w.refs) == (False, True, 5)   # (2+1)(1+1)-1
    assert w.pa == (pmap.mpn_of[0x800] << 12) | 0x123


def test_a_warm_walk_reuses_the_nested_translations():
    machine, _, _, walker = machine_with_guest_tables()
    assert walker(machine.mem, 0x1000, 0x5000).refs == 8
    # Same guest tables, another data page: only its nested walk is new.
    assert walker(machine.mem, 0x1000, 0x6000).refs == 4
    # Everything cached: the two guest references remain.
    assert walker(machine.mem, 0x1000, 0x5000).refs == 2
    assert (walker.ntlb_hits, walker.ntlb_misses) == (0 + 2 + 3, 3 + 1 + 0)


def test_without_the_nested_translation_cache_every_walk_is_cold():
    machine, _, _, walker = machine_with_guest_tables(ntlb=0)
    assert [walker(machine.mem, 0x1000, va).refs for va in (0x5000, 0x6000, 0x5000)] == [8] * 3


def test_a_missing_nested_entry_is_an_ept_violation_with_the_gpa():
    machine, pmap, nested, walker = machine_with_guest_tables()
    nested.unmap(2)                              # the guest's page table
    with pytest.raises(NestedFault) as info:
        walker(machine.mem, 0x1000, 0x5000)
    assert (info.value.gpa, info.value.cr2, info.value.refs) == (0x2014, 0x5000, 5)


def test_the_guest_a_and_d_bits_are_set_through_the_nested_table():
    machine, pmap, _, walker = machine_with_guest_tables()
    walker(machine.mem, 0x1000, 0x5000, write=True)
    guest = GuestPhys(pmap)
    assert guest.read32(0x1000) == 0x2000 | PWU | 0x20          # gpde: A
    assert guest.read32(0x2000 + 5 * 4) == 0x3000 | PWU | 0x60  # gpte: A and D


KERNEL = """
%include "kernel.inc"
org 0x1000
_start:
    mov esp, 0x80000
    call idt_init
    mov dword [0x100000], 0x101000 | PTE_P | PTE_W
    mov ecx, 0
.map:
    mov eax, ecx
    shl eax, 12
    or eax, PTE_P | PTE_W
    mov [0x101000 + ecx*4], eax
    inc ecx
    cmp ecx, 1024
    jne .map
    mov dword [0x101000 + 0x300*4], 0      ; va 0x300000 not present
    mov eax, 0x100000
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG
    mov cr0, eax
    mov eax, [0x300000]                    ; a guest #PF: handled by the guest
    invlpg [0x200000]
    mov eax, cr3
    mov cr3, eax
    mov eax, [faults]
    out POWER, eax
trap:
    inc dword [faults]
    mov dword [0x101000 + 0x300*4], 0x300000 | PTE_P | PTE_W
    ret
faults: dd 0
KSTACK_TOP equ 0x80000
%include "lib.inc"
"""


def test_under_nested_paging_guest_faults_cr3_and_invlpg_do_not_exit():
    from emu.asm import assemble as asm
    from emu.programs import include_dir
    image = asm(KERNEL, "nested.s", include_dirs=[include_dir()])
    r = System(image, Config(mode="nested", check_invariants=True)).run()
    assert (r.outcome, r.exit_status) == ("poweroff", 1)        # one guest #PF handled
    exits = r.stats["vmm"]["exits"]
    assert set(exits) <= {"npf", "io"}                           # no pf, cr3, invlpg exits
    assert exits["npf"] == r.stats["vmm"]["faults"]["nested"]
    native = System(image, Config(mode="native")).run()
    assert r.guest_visible() == native.guest_visible()


def test_nested_walk_references_are_counted_in_the_stats():
    image = assemble("org 0x1000\n_start:\n    mov eax, [0x5000]\n    out 0xF4, eax\n")
    r = System(image, Config(mode="nested")).run()
    nested = r.stats["mmu"]["nested"]
    # Paging is off in the guest: only the nested dimension, two references a walk.
    assert r.stats["mmu"]["walk_refs"] == nested["nested_refs"] + nested["guest_refs"]
    assert nested["guest_refs"] == 0


def test_compare_runs_every_configuration_and_finds_them_identical(tmp_path):
    out = tmp_path / "cmp.json"
    done = subprocess.run([sys.executable, "-m", "emu", "compare", "stale_tlb", "--json",
                           str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "guest-visible results identical in every configuration" in done.stdout
    data = json.loads(out.read_text())
    assert data["identical"] is True and data["mismatches"] == []
    assert [run["config"] for run in data["runs"]] == [
        "native", "shadow trace-cache", "shadow trace-drop", "shadow oos-cache",
        "shadow oos-drop", "nested"]
    native, nested = data["runs"][0], data["runs"][-1]
    assert native["slowdown"] == 1.0 and native["vm_exits"] == {}
    assert set(nested["vm_exits"]) <= {"npf", "io", "hlt"}
    assert len({run["instructions"] for run in data["runs"]}) == 1


def test_compare_forkwait_shadow_pays_for_table_writes_and_cr3_switches():
    from emu.cli import load
    from emu.ui.compare import compare, to_json
    data = to_json(compare(load("forkwait")))
    runs = {run["config"]: run for run in data["runs"]}
    assert data["identical"]
    nested = runs["nested"]
    for policy in ("trace-cache", "trace-drop", "oos-cache", "oos-drop"):
        shadow = runs[f"shadow {policy}"]
        assert shadow["cycles"] > 2 * nested["cycles"]
        assert shadow["vm_exits"]["cr3_write"] == 121 and shadow["vm_exits"]["invlpg"] == 120
    assert runs["shadow trace-cache"]["faults"]["tracing"] > 500
    assert set(nested["vm_exits"]) <= {"npf", "io", "hlt"}


def test_compare_tlbthrash_nested_pays_for_long_walks():
    from emu.cli import load
    from emu.ui.compare import compare, to_json
    data = to_json(compare(load("tlbthrash")))
    runs = {run["config"]: run for run in data["runs"]}
    shadow, nested = runs["shadow trace-cache"], runs["nested"]
    assert shadow["refs_per_walk"] == 2.0 and nested["refs_per_walk"] >= 3.9
    assert nested["chart"]["walk"] > 1.9 * shadow["chart"]["walk"]
    assert nested["tlb_misses"] == shadow["tlb_misses"]
