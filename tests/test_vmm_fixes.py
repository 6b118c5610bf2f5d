"""Regression tests for shadow-VMM bugs: each guest is a few instructions
that took the faulty path, run natively, under every shadow policy (the
invariant checked after every VM exit) and under nested paging; the
guest-visible result must be native's."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import PGTAB, paging_on, read32, run_snippet  # noqa: E402

from emu.vmm.shadow import POLICIES  # noqa: E402

CONFIGS = [("shadow", p) for p in POLICIES] + [("nested", None)]
IDS = list(POLICIES) + ["nested"]


def same_as_native(body: str, mode: str, policy: str | None, **config):
    """Run ``body`` natively and in ``mode`` (no InvariantError may come out
    of the run); the native system and result."""
    s, native = run_snippet(body, "native", **config)
    _, r = run_snippet(body, mode, shadow_policy=policy or "trace-cache",
                       check_invariants=True, **config)
    assert r.guest_visible() == native.guest_visible()
    return s, native


# --- a rep movsd into a traced table, over more pages than the emulation took exits ----
# The page directory lies inside the 4 MiB page it maps, so it is a traced
# table mapped by the 4 MiB page's shadow (the '4m' shadow table).  The rep
# movsd's first write to it is a tracing fault; the VMM lets the instruction
# through with a writable spte and runs it, handling the exits it takes on
# pages the shadow lacks.  Was: after 16 such exits it gave up ("could not
# emulate") without taking the write permission back: an spte of the 4 MiB
# shadow let the guest write its own page directory (InvariantError), and
# the guest crashed where it runs on natively.  Now a rep stopped between
# iterations ends the emulation (the permission taken back, the shadow
# synced) and goes on when the guest resumes.
REP_INTO_A_TRACED_DIRECTORY = """
    mov dword [0xA0000], 0x87         ; pde[0]: va 0..4 MiB identity, 4 MiB, P W U PS
    mov eax, cr4
    or eax, 0x10                      ; CR4.PSE
    mov cr4, eax
    mov eax, 0xA0000                  ; the directory, inside the 4 MiB page it maps
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80010000                ; paging on, CR0.WP
    mov cr0, eax
    mov dword [0xC0000], 0x12345      ; a source word (pages 0xC0-0xCF: 16, unshadowed)
    mov esi, 0xC0000
    mov edi, 0xA0800                  ; the directory's upper half (zeros), then 16 pages
    mov ecx, 0x4000                   ; 64 KiB: more than 16 pages touched, twice over
    rep movsd
    mov eax, [0xA0800]                ; the word it copied into the directory
"""


@pytest.mark.parametrize("mode,policy", CONFIGS, ids=IDS)
def test_a_rep_movsd_into_a_traced_directory_over_many_pages(mode, policy):
    _, native = same_as_native(REP_INTO_A_TRACED_DIRECTORY, mode, policy)
    assert native.outcome == "poweroff" and native.exit_status == 0x12345
    assert native.registers["ecx"] == 0 and native.registers["edi"] == 0xB0800


def test_the_rep_movsd_into_a_traced_directory_is_emulated_in_parts():
    # Under trace, each part of the rep that writes the directory is a
    # tracing fault; the exits it stops at come back as the guest's own.
    s, r = run_snippet(REP_INTO_A_TRACED_DIRECTORY, "shadow", shadow_policy="trace-cache",
                       check_invariants=True)
    assert r.outcome == "poweroff" and r.exit_status == 0x12345
    assert r.stats["vmm"]["faults"]["tracing"] >= 1
    assert r.stats["vmm"]["faults"]["hidden"] >= 32      # 16 source + 16 target pages
    assert s.vmm.invariant_checks == r.stats["vmm"]["exits_total"]


# --- a write through a stale TLB entry to a traced page table -------------------------
# The page table maps itself (va PGTAB -> pa PGTAB).  The guest writes
# through that mapping, rewrites the PTE that maps it WITHOUT INVLPG, and
# writes through it again: natively the TLB still holds the old translation,
# so the second write walks nothing (no A/D set) and goes to the old page.
# Under trace the spte built from the old PTE is gone; the VMM keeps a stale
# record of the translation the TLB still holds and emulates the write
# through it.  (tests/test_properties.py: the same with A/D cleared.)
SELF_PTE = PGTAB + (PGTAB >> 12) * 4        # the PTE that maps the page table itself


def stale_write(rewrite: str, flush: str = "") -> str:
    return paging_on() + f"""
    mov dword [{PGTAB + 0x10:#x}], 1          ; through the table's own mapping: A, D set
    mov dword [{SELF_PTE:#x}], {rewrite}      ; rewrite that PTE
{flush}
    mov dword [{PGTAB + 0x10:#x}], 2          ; the same mapping again
    mov ebx, [{SELF_PTE:#x}]
    mov ecx, [{PGTAB + 0x10:#x}]
    mov edx, [0xB0010]
    mov eax, ebx
"""


RETARGET = stale_write("0xB0007")                    # to page 0xB0000, no INVLPG


@pytest.mark.parametrize("mode,policy", CONFIGS, ids=IDS)
def test_a_write_through_a_stale_translation_goes_to_the_old_page(mode, policy):
    # Was (trace policies): the VMM walked the rewritten PTE and wrote page 0xB0000.
    _, native = same_as_native(RETARGET, mode, policy)
    assert native.exit_status == 0xB0007                # the PTE as the guest wrote it
    assert native.registers["ecx"] == 2                 # read through the stale entry
    assert native.registers["edx"] == 0                 # page 0xB0000 untouched


@pytest.mark.parametrize("flush", ["    invlpg [0xA1000]",
                                   "    mov eax, cr3\n    mov cr3, eax"], ids=["invlpg", "cr3"])
@pytest.mark.parametrize("mode,policy", CONFIGS, ids=IDS)
def test_after_a_flush_the_write_walks_the_new_pte(mode, policy, flush):
    # INVLPG or a CR3 load ends the stale translation: the write walks the
    # rewritten PTE, sets its A and D, and goes to the new page.
    _, native = same_as_native(stale_write(f"{PGTAB | 7:#x}", flush), mode, policy)
    assert native.exit_status == PGTAB | 0x67           # A and D set again by the walk
    s, native = same_as_native(stale_write("0xB0007", flush), mode, policy)
    assert read32(s, SELF_PTE) == 0xB0067               # (va PGTAB maps page 0xB0000 now)
    assert native.registers["edx"] == 2                 # the write went to the new page


def test_a_stale_write_is_a_tracing_fault_without_a_guest_walk():
    from emu.trace import TraceBus
    bus, events = TraceBus(), []
    bus.subscribe(events.append, {"tracing_fault", "guest_walk"})
    from emu.asm import assemble
    from emu.system import Config, System
    source = "\n".join(["org 0x1000", "_start:", "    mov esp, 0x80000",
                        stale_write(f"{PGTAB | 7:#x}"), "    out 0xF4, eax", ""])
    s = System(assemble(source, "<snippet>"),
               Config(mode="shadow", mem_mib=1, check_invariants=True), bus)
    r = s.run()
    assert r.exit_status == PGTAB | 7                  # A and D stayed clear
    last = [e for e in events if e.va == PGTAB + 0x10][-1]
    assert last.kind == "tracing_fault" and last.data.get("stale") is True


# --- a CR0.WP=0 write to a page table through a read-only alias, under oos ---------
# The page table maps itself read-only (va PGTAB -> pa PGTAB, R/W=0).  With
# CR0.WP=0 the kernel may write through that mapping anyway.  Was (oos
# policies): the write was an unsync fault, whose spte was filled read-only
# again (the gpte forbids writes), so the guest faulted on it forever.  Now
# it is emulated, as under the trace policies.
WP0_WRITE_THROUGH_A_READ_ONLY_TABLE_ALIAS = paging_on(readonly=PGTAB) + f"""
    mov dword [0xC0000], 0x5EED       ; the page va 0xB0000 will map
    mov eax, [0xB0000]                ; va 0xB0000 -> 0xB0000 (a shadowed translation)
    mov eax, cr0
    and eax, ~0x10000                 ; CR0.WP := 0
    mov cr0, eax
    mov dword [{PGTAB + 0xB0 * 4:#x}], 0xC0007   ; through the read-only alias: pte[0xB0]
    invlpg [0xB0000]
    mov eax, [0xB0000]                ; now page 0xC0000
"""


@pytest.mark.parametrize("mode,policy", CONFIGS, ids=IDS)
def test_a_wp0_write_through_a_read_only_alias_of_a_table(mode, policy):
    s, native = same_as_native(WP0_WRITE_THROUGH_A_READ_ONLY_TABLE_ALIAS, mode, policy)
    assert native.outcome == "poweroff" and native.exit_status == 0x5EED
    assert read32(s, PGTAB + 0xB0 * 4) == 0xC0027        # A set by the last read


@pytest.mark.parametrize("policy", ["oos-cache", "oos-drop"])
def test_under_oos_the_wp0_write_to_a_table_is_emulated_not_unsynced(policy):
    _, r = run_snippet(WP0_WRITE_THROUGH_A_READ_ONLY_TABLE_ALIAS, "shadow",
                       shadow_policy=policy, check_invariants=True)
    assert r.exit_status == 0x5EED
    assert r.stats["vmm"]["faults"]["wp-emulate"] == 1
    assert r.stats["vmm"]["faults"]["unsync"] == 0
