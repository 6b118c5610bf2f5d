"""ltr and lgdt: the task register is loaded through the GDT, as on x86.

``ltr r16`` takes a selector; the descriptor it names in the GDT (located by
``lgdt``) must be an available 32-bit TSS (S=0, type 9) and present.  Its
base -- split over bytes 2, 3, 4 and 7 -- becomes the TSS base whose esp0 a
trap from ring 3 loads, and the descriptor is marked busy (type 0xB).  The
faults (SDM, LTR): a null selector #GP(0); a selector with TI=1 or past the
GDT limit #GP(selector); a descriptor that is not an available TSS
#GP(selector); one not present #NP(selector).

Each snippet sets up the harness's IDT and TSS (selector 0x28), then loads
TR again from the GDT descriptor 0x30 edited by the test.
"""

from __future__ import annotations

import pytest
from harness import (
    TRAP_SETUP,
    enter_user,
    frame,
    load_tr,
    read32,
    regs,
    run_snippet,
    sym,
    trap_data,
)

from emu.system import MODES

NP, GP = 11, 13
TSS2_ESP0 = 0x70000


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


def run(mode, body: str):
    data = trap_data({0x80: 0xEF00}) + f"tss2: dd 0, {TSS2_ESP0:#x}\n    times 24 dd 0\n"
    s, r = run_snippet(body, mode, setup=TRAP_SETUP, data=data)
    assert r.outcome == "poweroff", r.message
    return s, r


def test_ltr_loads_the_base_of_the_tss_descriptor_its_selector_names(mode):
    s, r = run(mode, load_tr("tss2", 0x30) + enter_user("user") + "user:\n    int 0x80\n")
    assert r.exit_status == 0x80
    assert regs(r)["esp"] == TSS2_ESP0 - 20          # ss esp eflags cs eip on tss2's esp0


def test_ltr_marks_the_descriptor_busy(mode):
    s, r = run(mode, load_tr("tss2", 0x30) + "    mov eax, 0\n")
    assert r.exit_status == 0
    tss2 = sym(s, "tss2")
    high = read32(s, sym(s, "gdt") + 0x34)
    assert high == (tss2 & 0xFF000000) | 0x8B00 | (tss2 >> 16) & 0xFF
    assert read32(s, sym(s, "gdt") + 0x30) == (tss2 & 0xFFFF) << 16 | 103


def test_ltr_of_a_busy_tss_is_a_gp_with_the_selector(mode):
    s, r = run(mode, "    mov eax, 0x28\nfault:\n    ltr ax\n")
    assert r.exit_status == GP
    assert frame(s, r, 2) == [0x28, sym(s, "fault")]


@pytest.mark.parametrize("selector,vector,error_code", [
    (0x0000, GP, 0),          # null
    (0x0003, GP, 0),          # null with an RPL
    (0x0034, GP, 0x34),       # TI=1: the LDT
    (0x0038, GP, 0x38),       # past the GDT limit (0x37)
    (0x0008, GP, 0x08),       # a zero descriptor: not a TSS
    (0x10030, GP, 0x30),      # the low 16 bits, 0x30, patched below to an LDT descriptor
])
def test_ltr_faults_on_a_bad_selector(mode, selector, vector, error_code):
    body = ("    mov dword [gdt + 0x34], 0x8200\n" if selector == 0x10030 else "") + \
        f"    mov eax, {selector:#x}\nfault:\n    ltr ax\n"
    s, r = run(mode, body)
    assert r.exit_status == vector
    assert frame(s, r, 2) == [error_code, sym(s, "fault")]


def test_ltr_of_a_tss_not_present_is_np_with_the_selector(mode):
    body = "    mov dword [gdt + 0x34], 0x0900\n    mov eax, 0x30\nfault:\n    ltr ax\n"
    s, r = run(mode, body)
    assert r.exit_status == NP
    assert frame(s, r, 2) == [0x30, sym(s, "fault")]


def test_lgdt_loads_limit_and_base_from_six_bytes(mode):
    # A GDT of limit 0x2f ends before the descriptor 0x30: ltr 0x30 is past it.
    body = ("    lgdt [short_gdt]\n    mov eax, 0x30\nfault:\n    ltr ax\n")
    s, r = run(mode, body + "    hlt\nshort_gdt: dw 0x2f\n    dd gdt\n")
    assert r.exit_status == GP
    assert frame(s, r, 2) == [0x30, sym(s, "fault")]
