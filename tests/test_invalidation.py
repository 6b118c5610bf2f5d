"""Every event that invalidates TLB entries on x86 (Intel SDM vol. 3A,
4.10.4.1) makes a stale translation fresh in every mode and policy.

Each guest maps va 0x300000 -> page A, uses it, rewrites the mapping entry
(to page B) WITHOUT INVLPG, then performs one invalidating event and uses
va again: natively the event drops the cached translation, so the guest sees
B.  Under the out-of-sync shadow policies the spte still maps A unless the
VMM resyncs at that event; under the trace policies the VMM saw the rewrite.
The guest-visible result must be native's in every mode, with the
resource-control invariant checked after every VM exit.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import PGDIR, PGTAB, TRAP_SETUP, paging_on, run_snippet, trap_data  # noqa: E402

from emu.vmm.shadow import POLICIES  # noqa: E402

CONFIGS = [("shadow", p) for p in POLICIES] + [("nested", None)]
IDS = list(POLICIES) + ["nested"]
VA, PAGE_A, PAGE_B = 0x300000, 0x300000, 0x301000
PTE = PGTAB + (VA >> 12) * 4
A_VALUE, B_VALUE = 0xAAAA, 0xBBBB


def run_all(body: str, data: str = "", **config):
    """Native first, then every VMM configuration: each must agree."""
    config.setdefault("mem_mib", 8)
    _, native = run_snippet(body, "native", data=data, **config)
    for mode, policy in CONFIGS:
        _, r = run_snippet(body, mode, data=data, shadow_policy=policy or "trace-cache",
                           check_invariants=True, **config)
        assert r.guest_visible() == native.guest_visible(), (mode, policy)
    return native


def scenario(event: str, rights: int = 0x7, setup: str = "") -> str:
    """Map va -> A, read it, point its PTE at B (``rights``), then ``event``
    and read va into eax (the exit status)."""
    return f"""
    mov dword [{PAGE_A:#x}], {A_VALUE:#x}
    mov dword [{PAGE_B:#x}], {B_VALUE:#x}
{setup}
{paging_on()}
    mov ebx, [{VA:#x}]
    mov dword [{PTE:#x}], {PAGE_B | rights:#x}
{event}
    mov eax, [{VA:#x}]
"""


PF_SKIP = """
pf_skip:
    add esp, 4                        ; the error code
    mov dword [esp], after_write      ; skip the faulting write
    iret
"""


def test_a_page_fault_invalidates_the_faulting_address():
    """SDM 4.10.4.1: a #PF drops the TLB entries of the faulting address.
    The new PTE is read-only: the write faults, the handler skips it."""
    body = TRAP_SETUP + scenario(f"""
    mov dword [{VA:#x}], 1
after_write:
""", rights=0x5)
    native = run_all(body, trap_data(handlers={14: "pf_skip"}) + PF_SKIP)
    assert native.exit_status == B_VALUE
    assert native.registers["ebx"] == A_VALUE


def test_a_page_fault_invalidates_the_fetch_translation_too():
    """The #PF of a data write drops the instruction TLB's entry of the
    page as well: the code then fetched there is the new page's."""
    code_a = "    mov eax, 0x11\n    ret\n"
    code_b = "    mov eax, 0x22\n    ret\n"
    body = TRAP_SETUP + f"""
    mov esi, stub_a
    mov edi, {PAGE_A:#x}
    mov ecx, 16
    rep movsd
    mov esi, stub_b
    mov edi, {PAGE_B:#x}
    mov ecx, 16
    rep movsd
{paging_on()}
    mov eax, {VA:#x}
    call eax
    mov ebx, eax
    mov dword [{PTE:#x}], {PAGE_B | 0x5:#x}
    mov dword [{VA + 0x800:#x}], 1
after_write:
    mov eax, {VA:#x}
    call eax
"""
    data = (trap_data(handlers={14: "pf_skip"}) + PF_SKIP + "align 16\nstub_a:\n" + code_a
            + "align 64\nstub_b:\n" + code_b + "align 64\n")
    native = run_all(body, data)
    assert (native.registers["ebx"], native.exit_status) == (0x11, 0x22)


@pytest.mark.parametrize("event", [
    "    invlpg [0x300000]",
    "    mov eax, cr3\n    mov cr3, eax",                        # the same value
    "    mov eax, cr0\n    and eax, ~0x10000\n    mov cr0, eax",  # CR0.WP 1 -> 0
    "    mov eax, cr0\n    and eax, 0x7FFFFFFF\n    mov cr0, eax\n"
    "    or eax, 0x80000000\n    mov cr0, eax",                     # CR0.PG off, on
], ids=["invlpg", "cr3-same", "cr0-wp", "cr0-pg"])
def test_an_invalidating_instruction_makes_the_new_mapping_visible(event):
    native = run_all(scenario(event))
    assert native.exit_status == B_VALUE


@pytest.mark.parametrize("toggle", ["off-on", "on-off"])
def test_a_cr4_pge_change_flushes_non_global_entries(toggle):
    """SDM 4.10.4.1: a MOV to CR4 that changes PGE invalidates every TLB
    entry, global or not."""
    on = "    mov eax, cr4\n    or eax, 0x80\n    mov cr4, eax"
    off = "    mov eax, cr4\n    and eax, ~0x80\n    mov cr4, eax"
    setup, event = (on, off + "\n" + on) if toggle == "off-on" else ("", on + "\n" + off)
    native = run_all(scenario(event, setup=setup))
    assert native.exit_status == B_VALUE


def test_a_global_entry_goes_with_a_pge_toggle():
    """The global translation survives CR3 loads but not a PGE change."""
    pge = "    mov eax, cr4\n    or eax, 0x80\n    mov cr4, eax"
    body = scenario("    mov eax, cr4\n    and eax, ~0x80\n    mov cr4, eax",
                    rights=0x107, setup=pge).replace(
        paging_on(), paging_on() + f"    or dword [{PTE:#x}], 0x100\n    invlpg [{VA:#x}]\n")
    native = run_all(body)
    assert native.exit_status == B_VALUE


def test_invlpg_invalidates_every_cached_directory_entry():
    """SDM 4.10.4.1: INVLPG also invalidates all paging-structure caches,
    whatever their address.  Page table pt2 serves 4-8 MiB and 8-12 MiB;
    the guest uses va 0x402000 and 0x801000 (so the shadow of pt2 holds the
    entry for index 1), points the PDE of 4-8 MiB at pt3, INVLPGs an address
    elsewhere and reads va 0x401000, which it never used: the walk must read
    the new PDE and find pt3's page."""
    pt2, pt3 = 0xA2000, 0xA3000
    body = f"""
    mov dword [0x501000], 0x1111
    mov dword [0x600000], 0x2222
{paging_on()}
    mov dword [{pt2 + 4:#x}], 0x501007        ; pt2[1] -> 0x501000
    mov dword [{pt2 + 8:#x}], 0x502007        ; pt2[2] -> 0x502000
    mov dword [{pt3 + 4:#x}], 0x600007        ; pt3[1] -> 0x600000
    mov dword [{PGDIR + 4:#x}], {pt2 | 7:#x}    ; 4-8 MiB through pt2
    mov dword [{PGDIR + 8:#x}], {pt2 | 7:#x}    ; 8-12 MiB through pt2 too
    mov eax, cr3
    mov cr3, eax
    mov ebx, [0x801000]                       ; pt2[1] via 8-12 MiB
    mov ecx, [0x402000]                       ; pt2[2] via 4-8 MiB
    mov dword [{PGDIR + 4:#x}], {pt3 | 7:#x}    ; no INVLPG of 4-8 MiB ...
    invlpg [0x1000]                           ; ... but one elsewhere
    mov eax, [0x401000]                       ; never used: walks pdx 1 again
"""
    native = run_all(body)
    assert (native.registers["ebx"], native.exit_status) == (0x1111, 0x2222)


def flush_then_edit(event: str, setup: str = "") -> str:
    """Map va -> A, read it, ``event`` (which empties the TLB of va), then
    point the PTE at B WITHOUT INVLPG and read va: the TLB holds nothing for
    va since the event, so the read walks the new entry -- natively with any
    TLB shape.  Under the out-of-sync policies the table page goes out of
    sync at that write, after the event: the spte built from the old entry
    must not outlive the translation the TLB no longer holds."""
    return f"""
    mov dword [{PAGE_A:#x}], {A_VALUE:#x}
    mov dword [{PAGE_B:#x}], {B_VALUE:#x}
{setup}
{paging_on()}
    mov ebx, [{VA:#x}]
{event}
    mov dword [{PTE:#x}], {PAGE_B | 7:#x}
    mov eax, [{VA:#x}]
"""


@pytest.mark.parametrize("event,setup", [
    ("    mov eax, cr3\n    mov cr3, eax", ""),
    ("    mov eax, cr4\n    or eax, 0x80\n    mov cr4, eax", ""),
    ("    mov eax, cr4\n    and eax, ~0x80\n    mov cr4, eax",
     "    mov eax, cr4\n    or eax, 0x80\n    mov cr4, eax"),
    ("    mov eax, cr0\n    and eax, ~0x10000\n    mov cr0, eax", ""),
    ("    invlpg [0x300000]", ""),
], ids=["cr3-same", "pge-on", "pge-off", "cr0-wp", "invlpg"])
def test_an_entry_rewritten_after_the_flush_is_walked_anew(event, setup):
    native = run_all(flush_then_edit(event, setup))
    assert (native.registers["ebx"], native.exit_status) == (A_VALUE, B_VALUE)


def test_an_entry_rewritten_twice_after_its_refill_stays_cached_until_the_flush():
    """After the table went out of sync and va was refilled from the new
    entry (B), a third entry (A again) without INVLPG is not seen while the
    TLB holds B -- natively too, with any TLB shape (nothing else is used)
    -- and is seen after a CR3 load."""
    body = flush_then_edit("    mov eax, cr3\n    mov cr3, eax") + f"""
    mov ecx, eax
    mov dword [{PTE:#x}], {PAGE_A | 7:#x}
    mov edx, [{VA:#x}]
    mov eax, cr3
    mov cr3, eax
    mov eax, [{VA:#x}]
"""
    native = run_all(body)
    assert (native.registers["ecx"], native.registers["edx"], native.exit_status) == (
        B_VALUE, B_VALUE, A_VALUE)
