"""Regression tests for shadow-VMM bugs: each guest is a few instructions
that took the faulty path, run natively, under every shadow policy (the
invariant checked after every VM exit) and under nested paging; the
guest-visible result must be native's."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_snippet  # noqa: E402

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
