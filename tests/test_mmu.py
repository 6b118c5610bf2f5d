"""Translation through the MMU: guest kernels that page, and the Mmu alone.

Most tests run a small kernel (the guest program is in the test) that builds
its own page tables and turns paging on.  They assert what the guest can see
(console, registers, guest-physical memory) in every mode of
``emu.system.MODES``, and the TLB and walk counters only natively: under a
VMM the hardware walks shadow tables and the counts are the VMM's business.

The kernel of ``run_kernel`` (``KERNEL`` below) lays guest-physical memory
out as::

    0x001000  code (and lib.inc: IDT, TSS, console routines)
    0x080000  top of the ring-0 stack (and TSS esp0)
    0x090000  top of the ring-3 stack
    0x100000  PGDIR   page directory
    0x101000  PGTAB0  va 0..4 MiB: identity map, P W U
    0x102000  PGTAB1  va 4..8 MiB: the test pages, all not present until the
                      test's setup writes their PTEs (PTE of VA + n*4K is at
                      PGTAB1 + n*4)
    0x200000  FRAME_A, FRAME_B 0x205000, FRAME_C 0x206000, FRAME_D 0x207000
    0x210000  frames of the page-crossing tests (CROSS_SETUP)
    0x220000  code reached through paging (FETCH_DATA)
    0x400000  4 MiB page frames of the PSE tests (va 8 MiB, PDE slot 2)

Every trap prints one line and resumes at [resume] (one shot: a second
unexpected trap powers off with status 0xEE), unless [fixup] names a routine
that repairs the fault, in which case the faulting instruction is retried:

    PF <error code> <cr2> <eip>        a page fault
    T<vector> <eip>                    anything else (user code ends in ud2)
"""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.asm import assemble
from emu.cost import DEFAULT_COSTS
from emu.hw.exceptions import GuestFault
from emu.hw.memory import PhysMem
from emu.hw.mmu import Mmu
from emu.hw.tlb import POLICIES, Tlb
from emu.programs import include_dir
from emu.system import MODES, Config, System

VA = 0x400000
PGDIR, PGTAB0, PGTAB1 = 0x100000, 0x101000, 0x102000
FRAME_A, FRAME_B, FRAME_C, FRAME_D = 0x200000, 0x205000, 0x206000, 0x207000
P, W, U, A, D, PS, G = 0x1, 0x2, 0x4, 0x20, 0x40, 0x80, 0x100

KERNEL = """
%include "kernel.inc"
KSTACK_TOP  equ 0x80000
USTACK_TOP  equ 0x90000
PGDIR       equ 0x100000
PGTAB0      equ 0x101000
PGTAB1      equ 0x102000
VA          equ 0x400000
FRAME_A     equ 0x200000
FRAME_B     equ 0x205000
FRAME_C     equ 0x206000
FRAME_D     equ 0x207000

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    call build_tables
{body}
    mov eax, 0
    out POWER, eax

; paging_on / paging_on_wp: CR3 = PGDIR, then CR0.PG (and CR0.WP)
paging_on_wp:
    push eax
    mov eax, CR0_PG | CR0_WP
    jmp paging_go
paging_on:
    push eax
    mov eax, CR0_PG
paging_go:
    push ebx
    mov ebx, PGDIR
    mov cr3, ebx
    mov ebx, cr0
    or ebx, eax
    mov cr0, ebx
    pop ebx
    pop eax
    ret

build_tables:
    pushad
    mov dword [PGDIR], PGTAB0 | PTE_P | PTE_W | PTE_U
    mov dword [PGDIR + 4], PGTAB1 | PTE_P | PTE_W | PTE_U
    mov ecx, 0
.map:
    mov eax, ecx
    shl eax, 12
    or eax, PTE_P | PTE_W | PTE_U
    mov [PGTAB0 + ecx*4], eax
    inc ecx
    cmp ecx, 1024
    jne .map
    popad
    ret

; show: print eax and a newline
show:
    call print_hex
    call newline
    ret

; enter_user: iret to ring 3 at esi, user stack USTACK_TOP
enter_user:
    push USER_SS
    push USTACK_TOP
    push EFLAGS_BASE
    push USER_CS
    push esi
    iret

trap:
    mov ebx, eax
    cmp dword [ebx + TF_VEC], T_PF
    jne .other
    mov esi, msg_pf
    call puts
    mov eax, [ebx + TF_ERR]
    call print_hex
    mov al, ' '
    call putc
    mov eax, cr2
    call print_hex
    jmp .eip
.other:
    mov al, 'T'
    call putc
    mov eax, [ebx + TF_VEC]
    call print_dec
.eip:
    mov al, ' '
    call putc
    mov eax, [ebx + TF_EIP]
    call show
    mov eax, [fixup]
    test eax, eax
    je .resume
    call eax                    ; repair, then retry the faulting instruction
    ret
.resume:
    mov eax, [resume]
    mov dword [resume], 0
    test eax, eax
    jne .go
    mov eax, 0xEE
    out POWER, eax
.go:
    mov [ebx + TF_EIP], eax
    mov dword [ebx + TF_CS], KERNEL_CS
    ret

msg_pf:     db "PF ", 0
resume:     dd 0
fixup:      dd 0
%include "lib.inc"
{data}
"""


def run_kernel(mode: str, body: str, data: str = "", **config):
    """Run ``body`` (assembly, after the tables are built, paging still off)
    in the kernel above; returns (system, result, image).  The run must end
    with the kernel's own power-off (status 0)."""
    source = KERNEL.replace("{body}", textwrap.dedent(body)).replace(
        "{data}", textwrap.dedent(data))
    image = assemble(source, "<test_mmu>", [str(include_dir())])
    s = System(image, Config(mode=mode, **config))
    r = s.run()
    assert (r.outcome, r.exit_status) == ("poweroff", 0), (r.message, r.console)
    return s, r, image


def word(s: System, pa: int) -> int:
    return int.from_bytes(s.guest_read(pa, 4), "little")


def hexline(*values: int) -> str:
    """What ``show`` (print_hex + newline) prints for each value."""
    return "".join(f"{v:#010x}\n" for v in values)


def pf(error_code: int, cr2: int, eip: int) -> str:
    return f"PF {error_code:#010x} {cr2:#010x} {eip:#010x}\n"


def tlb_counts(stats: dict, name: str) -> dict:
    """The counters of one TLB (geometry left out)."""
    t = stats["mmu"][name]
    return {k: t[k] for k in ("lookups", "hits", "misses", "evictions", "flushes", "invlpg")}


def without_lookups(counts: dict) -> dict:
    """ITLB counters but lookups/hits: a batch that turns paging on charges
    the fetch of its ``mov cr0`` (made with paging off) to the ITLB; see
    test_lookups_made_with_paging_off_are_not_counted."""
    return {k: v for k, v in counts.items() if k not in ("lookups", "hits")}


modes = pytest.mark.parametrize("mode", MODES)


# --- translation, A and D ------------------------------------------------------------

@modes
def test_paging_translates_va_to_the_frame_of_its_pte(mode):
    s, r, _ = run_kernel(mode, """
        mov dword [PGTAB1], FRAME_A | PTE_P | PTE_W         ; VA        -> FRAME_A
        mov dword [PGTAB1 + 4], FRAME_B | PTE_P | PTE_W     ; VA + 4K   -> FRAME_B
        mov dword [FRAME_A + 0x123], 0xA0A0A0A0
        mov dword [FRAME_B + 0x123], 0xB0B0B0B0
        call paging_on
        mov eax, [VA + 0x123]
        call show
        mov eax, [VA + 0x1123]
        call show
        mov dword [VA + 0x1456], 0xCAFEF00D
        mov byte [VA + 0x457], 0x77
        mov esi, [VA + 0x1456]
    """)
    assert r.console == hexline(0xA0A0A0A0, 0xB0B0B0B0)
    assert r.registers["esi"] == 0xCAFEF00D
    assert word(s, FRAME_B + 0x456) == 0xCAFEF00D
    assert s.guest_read(FRAME_A + 0x457, 1) == b"\x77"
    assert s.guest_read(VA + 0x456, 8) == bytes(8)        # pa == va was not touched
    assert r.registers["cr3"] == PGDIR and r.registers["cr0"] & 0x80000000


@modes
def test_a_read_sets_A_and_a_write_sets_D_in_the_guests_pte(mode):
    s, r, _ = run_kernel(mode, """
        mov dword [PGTAB1], FRAME_A | PTE_P | PTE_W
        mov dword [PGTAB1 + 4], FRAME_B | PTE_P | PTE_W
        call paging_on
        mov eax, [PGTAB1]
        call show                       ; untouched
        mov eax, [VA]
        mov eax, [PGTAB1]
        call show                       ; read: A
        mov dword [VA], 1               ; write through a clean cached entry
        mov eax, [PGTAB1]
        call show                       ; A D
        mov dword [VA + 0x1000], 2      ; first access is a write
        mov eax, [PGTAB1 + 4]
        call show                       ; A D at once
        mov eax, [PGDIR + 4]
        call show                       ; the PDE: A, never D
    """)
    assert r.console == hexline(FRAME_A | P | W, FRAME_A | P | W | A,
                                FRAME_A | P | W | A | D, FRAME_B | P | W | A | D,
                                PGTAB1 | P | W | U | A)
    assert word(s, PGTAB1) == FRAME_A | P | W | A | D
    assert word(s, PGTAB1 + 4) == FRAME_B | P | W | A | D
    assert word(s, PGDIR + 4) == PGTAB1 | P | W | U | A
    assert word(s, PGTAB1 + 8) == 0


@modes
@pytest.mark.parametrize("wp", [0, 1])
def test_supervisor_write_to_a_read_only_page_obeys_cr0_wp(mode, wp):
    s, r, img = run_kernel(mode, f"""
        mov dword [PGTAB1], FRAME_A | PTE_P           ; read-only
        mov dword [FRAME_A + 8], 0x1111
        call {"paging_on_wp" if wp else "paging_on"}
        mov dword [resume], after
    store:
        mov dword [VA + 8], 0x2222
    after:
        mov eax, [VA + 8]
        call show
        mov eax, [PGTAB1]
        call show
    """)
    if wp:
        # #PF P|W; a protection fault sets neither A nor D; the read after it sets A.
        assert r.console == (pf(3, VA + 8, img.labels["store"])
                             + hexline(0x1111, FRAME_A | P | A))
        assert word(s, FRAME_A + 8) == 0x1111
    else:
        assert r.console == hexline(0x2222, FRAME_A | P | A | D)
        assert word(s, FRAME_A + 8) == 0x2222
    assert r.registers["cr0"] & 0x10000 == wp << 16


@modes
def test_turning_wp_on_applies_to_translations_already_cached(mode):
    s, r, img = run_kernel(mode, """
        mov dword [PGTAB1], FRAME_A | PTE_P           ; read-only
        call paging_on
        mov dword [VA], 1                            ; WP=0: allowed, D set
        mov eax, cr0
        or eax, CR0_WP
        mov cr0, eax
        mov dword [resume], after
    store:
        mov dword [VA + 4], 2
    after:
    """)
    assert r.console == pf(3, VA + 4, img.labels["store"])
    assert (word(s, FRAME_A), word(s, FRAME_A + 4)) == (1, 0)


USER_CODE = """
user_read:      mov eax, [VA + 4]
                ud2
user_write:     mov dword [VA + 4], 1
                ud2
user_write_ro:  mov dword [VA + 0x1008], 1
                ud2
user_read_ro:   mov eax, [VA + 0x1008]
user_read_ro_ud:
                ud2
"""


@modes
def test_user_access_to_a_supervisor_page_faults_5_or_7(mode):
    s, r, img = run_kernel(mode, """
        mov dword [PGTAB1], FRAME_A | PTE_P | PTE_W       ; supervisor only
        mov dword [PGTAB1 + 4], FRAME_B | PTE_P | PTE_U   ; user, read-only
        mov dword [FRAME_B + 8], 0xB8
        call paging_on
        mov dword [resume], r1
        mov esi, user_read
        call enter_user
    r1: mov esp, KSTACK_TOP
        mov dword [resume], r2
        mov esi, user_write
        call enter_user
    r2: mov esp, KSTACK_TOP
        mov dword [resume], r3
        mov esi, user_write_ro
        call enter_user
    r3: mov esp, KSTACK_TOP
        mov dword [resume], r4
        mov esi, user_read_ro
        call enter_user
    r4: mov esp, KSTACK_TOP
        mov ebp, [PGTAB1]
    """, USER_CODE)
    lab = img.labels
    assert r.console == (pf(5, VA + 4, lab["user_read"])
                         + pf(7, VA + 4, lab["user_write"])
                         + pf(7, VA + 0x1008, lab["user_write_ro"])
                         + f"T6 {lab['user_read_ro_ud']:#010x}\n")
    assert word(s, FRAME_A + 4) == 0 and word(s, FRAME_B + 8) == 0xB8
    # Protection faults set no A: only the allowed user read did.
    assert r.registers["ebp"] == FRAME_A | P | W
    assert word(s, PGTAB1 + 4) == FRAME_B | P | U | A
    assert r.registers["cpl"] == 0


# --- CR3 loads, global pages, INVLPG, stale entries --------------------------------------

STALE_SETUP = """
    mov dword [PGTAB1], FRAME_A | PTE_P | PTE_W
    mov dword [PGTAB1 + 4], FRAME_B | PTE_P | PTE_W
    mov dword [FRAME_A], 0xAAAA
    mov dword [FRAME_B], 0xBBBB
    mov dword [FRAME_C], 0xCCCC
    mov dword [FRAME_D], 0xDDDD
"""


@modes
def test_a_pte_changed_without_invalidation_is_not_seen_until_invlpg(mode):
    s, r, _ = run_kernel(mode, STALE_SETUP + """
        call paging_on
        mov eax, [VA]
        call show                                   ; AAAA
        mov dword [PGTAB1], FRAME_C | PTE_P | PTE_W ; no invalidation
        mov eax, [VA]
        call show                                   ; still AAAA: the TLB has it
        invlpg [VA]
        mov eax, [VA]
        call show                                   ; CCCC
    """)
    assert r.console == hexline(0xAAAA, 0xAAAA, 0xCCCC)
    if mode == "native":
        for t in ("itlb", "dtlb"):
            assert tlb_counts(r.stats, t)["invlpg"] == 1


@modes
def test_invlpg_drops_one_page_only(mode):
    s, r, _ = run_kernel(mode, STALE_SETUP + """
        call paging_on
        mov eax, [VA]
        call show                                        ; AAAA
        mov eax, [VA + 0x1000]
        call show                                        ; BBBB
        mov dword [PGTAB1], FRAME_C | PTE_P | PTE_W
        mov dword [PGTAB1 + 4], FRAME_D | PTE_P | PTE_W
        invlpg [VA + 0xFFF]                              ; any byte of the page
        mov eax, [VA]
        call show                                        ; CCCC: re-walked
        mov eax, [VA + 0x1000]
        call show                                        ; BBBB: still cached
    """)
    assert r.console == hexline(0xAAAA, 0xBBBB, 0xCCCC, 0xBBBB)
    if mode == "native":
        assert tlb_counts(r.stats, "dtlb")["invlpg"] == 1
        assert r.stats["mmu"]["page_faults"] == 0


@modes
def test_a_cr3_load_flushes_the_tlb(mode):
    s, r, _ = run_kernel(mode, STALE_SETUP + """
        call paging_on
        mov eax, [VA]
        call show                                   ; AAAA
        mov dword [PGTAB1], FRAME_C | PTE_P | PTE_W
        mov eax, [VA]
        call show                                   ; AAAA (stale)
        mov eax, cr3
        mov cr3, eax                                ; same root: still a flush
        mov eax, [VA]
        call show                                   ; CCCC
    """)
    assert r.console == hexline(0xAAAA, 0xAAAA, 0xCCCC)
    if mode == "native":
        # paging_on's mov cr3, its mov cr0 (PG 0 -> 1 flushes all), the test's mov cr3
        for t in ("itlb", "dtlb"):
            assert tlb_counts(r.stats, t)["flushes"] == 3
            assert tlb_counts(r.stats, t)["invlpg"] == 0


@modes
@pytest.mark.parametrize("pge", [0, 1])
def test_global_pages_survive_a_cr3_load_only_under_cr4_pge(mode, pge):
    s, r, _ = run_kernel(mode, STALE_SETUP + f"""
        mov dword [PGTAB1], FRAME_A | PTE_P | PTE_W | PTE_G    ; global
        mov eax, {pge} * CR4_PGE
        mov cr4, eax
        call paging_on
        mov eax, [VA]
        call show                                        ; AAAA
        mov eax, [VA + 0x1000]
        call show                                        ; BBBB
        mov dword [PGTAB1], FRAME_C | PTE_P | PTE_W | PTE_G
        mov dword [PGTAB1 + 4], FRAME_D | PTE_P | PTE_W
        mov eax, PGDIR
        mov cr3, eax
        mov eax, [VA]
        call show                                        ; AAAA if PGE, else CCCC
        mov eax, [VA + 0x1000]
        call show                                        ; DDDD: not global
        invlpg [VA]                                      ; drops a global entry too
        mov eax, [VA]
        call show                                        ; CCCC
    """)
    assert r.console == hexline(0xAAAA, 0xBBBB, 0xAAAA if pge else 0xCCCC, 0xDDDD, 0xCCCC)
    assert r.registers["cr4"] == pge << 7
    if mode == "native":
        # mov cr4 flushes everything when PGE changes; then paging_on (2) and mov cr3
        for t in ("itlb", "dtlb"):
            assert tlb_counts(r.stats, t)["flushes"] == 3 + pge
            assert tlb_counts(r.stats, t)["invlpg"] == 1


@modes
def test_clearing_cr4_pge_drops_global_entries(mode):
    s, r, _ = run_kernel(mode, STALE_SETUP + """
        mov dword [PGTAB1], FRAME_A | PTE_P | PTE_W | PTE_G
        mov eax, CR4_PGE
        mov cr4, eax
        call paging_on
        mov eax, [VA]
        call show                                        ; AAAA
        mov dword [PGTAB1], FRAME_C | PTE_P | PTE_W | PTE_G
        mov eax, PGDIR
        mov cr3, eax
        mov eax, [VA]
        call show                                        ; AAAA: global
        mov eax, 0
        mov cr4, eax
        mov eax, [VA]
        call show                                        ; CCCC
    """)
    assert r.console == hexline(0xAAAA, 0xAAAA, 0xCCCC)


@modes
def test_a_page_fault_handler_that_maps_the_page_gets_the_access_retried(mode):
    s, r, img = run_kernel(mode, """
        mov dword [FRAME_A + 0x10], 0x600D
        mov dword [fixup], map_va
        call paging_on
    load:
        mov eax, [VA + 0x10]
        call show
        mov dword [fixup], 0
        mov ebp, [PGTAB1]
    """, """
    map_va:
        mov dword [PGTAB1], FRAME_A | PTE_P | PTE_W
        ret
    """)
    assert r.console == pf(0, VA + 0x10, img.labels["load"]) + hexline(0x600D)
    assert r.registers["ebp"] == FRAME_A | P | W | A


# --- accesses that cross a page ---------------------------------------------------------

CROSS_SETUP = """
    ; VA+5 -> 0x210000, VA+6 -> 0x212000: a crossing read and write that succeed
    mov dword [PGTAB1 + 5*4], 0x210000 | PTE_P | PTE_W
    mov dword [PGTAB1 + 6*4], 0x212000 | PTE_P | PTE_W
    ; VA+7 -> 0x214000, VA+8 not present
    mov dword [PGTAB1 + 7*4], 0x214000 | PTE_P | PTE_W
    ; VA+9 -> 0x216000, VA+10 -> 0x218000 read-only
    mov dword [PGTAB1 + 9*4], 0x216000 | PTE_P | PTE_W
    mov dword [PGTAB1 + 10*4], 0x218000 | PTE_P
    ; VA+11 not present, VA+12 -> 0x21A000
    mov dword [PGTAB1 + 12*4], 0x21A000 | PTE_P | PTE_W
    mov dword [0x210FFC], 0x44332211
    mov dword [0x212000], 0x88776655
    mov dword [0x216FFC], 0x44332211
    mov dword [0x218000], 0x88776655
"""


@modes
def test_a_dword_crossing_two_pages_reads_and_writes_both_frames(mode):
    s, r, _ = run_kernel(mode, CROSS_SETUP + """
        call paging_on_wp
        mov eax, [VA + 0x5FFE]
        call show
        mov dword [VA + 0x5FFD], 0xDDCCBBAA
        mov eax, [VA + 0x5FFC]
        call show
        mov eax, [VA + 0x6000]
        call show
    """)
    assert r.console == hexline(0x66554433, 0xCCBBAA11, 0x887766DD)
    assert s.guest_read(0x210FFC, 4) == bytes([0x11, 0xAA, 0xBB, 0xCC])
    assert s.guest_read(0x212000, 4) == bytes([0xDD, 0x66, 0x77, 0x88])
    assert word(s, PGTAB1 + 5 * 4) == 0x210000 | P | W | A | D
    assert word(s, PGTAB1 + 6 * 4) == 0x212000 | P | W | A | D


@modes
def test_a_read_crossing_into_a_not_present_page_faults_on_its_first_byte(mode):
    s, r, img = run_kernel(mode, CROSS_SETUP + """
        call paging_on_wp
        mov dword [resume], after
        mov ebx, 0x0B0B
    load:
        mov ebx, [VA + 0x7FFE]
    after:
    """)
    assert r.console == pf(0, VA + 0x8000, img.labels["load"])
    assert r.registers["ebx"] == 0x0B0B
    assert word(s, PGTAB1 + 7 * 4) == 0x214000 | P | W | A   # translated first: keeps A


@modes
def test_a_crossing_write_whose_second_page_is_read_only_writes_nothing(mode):
    s, r, img = run_kernel(mode, CROSS_SETUP + """
        call paging_on_wp
        mov dword [resume], after
    store:
        mov dword [VA + 0x9FFE], 0xDDCCBBAA
    after:
    """)
    assert r.console == pf(3, VA + 0xA000, img.labels["store"])
    assert s.guest_read(0x216FFC, 4) == bytes([0x11, 0x22, 0x33, 0x44])
    assert s.guest_read(0x218000, 4) == bytes([0x55, 0x66, 0x77, 0x88])
    # The first page was translated for a write before the fault: A and D;
    # the read-only one refused it: neither.
    assert word(s, PGTAB1 + 9 * 4) == 0x216000 | P | W | A | D
    assert word(s, PGTAB1 + 10 * 4) == 0x218000 | P


@modes
def test_a_crossing_write_into_a_not_present_page_faults_2(mode):
    s, r, img = run_kernel(mode, CROSS_SETUP + """
        call paging_on_wp
        mov dword [resume], after
    store:
        mov dword [VA + 0x7FFF], 0xDDCCBBAA
    after:
    """)
    assert r.console == pf(2, VA + 0x8000, img.labels["store"])
    assert word(s, 0x214FFC) == 0
    assert word(s, PGTAB1 + 7 * 4) == 0x214000 | P | W | A | D


@modes
def test_crossing_pages_are_translated_lowest_first(mode):
    # VA+11 is not present, VA+12 is: the first page's fault is the one
    # reported, at the access's first byte, and the second page is not walked.
    s, r, img = run_kernel(mode, CROSS_SETUP + """
        call paging_on_wp
        mov dword [resume], after
    load:
        mov eax, [VA + 0xBFFD]
    after:
    """)
    assert r.console == pf(0, VA + 0xBFFD, img.labels["load"])
    assert word(s, PGTAB1 + 12 * 4) == 0x21A000 | P | W


# --- instruction fetch ------------------------------------------------------------------

FETCH_DATA = """
; for VA+0x2000 -> 0x220000
section at_220000 start=0x220000
    mov eax, 0xC0DE
    ret
; for VA+0x3FFC: mov eax, imm32 (6 bytes) crossing from 0x222000 into 0x223000
section at_222ffc start=0x222FFC
    mov eax, 0x12345678
    ret
"""

FETCH_SETUP = """
    mov dword [PGTAB1 + 2*4], 0x220000 | PTE_P
    mov dword [PGTAB1 + 3*4], 0x222000 | PTE_P
    mov dword [PGTAB1 + 4*4], 0x223000 | PTE_P
"""


@modes
def test_code_runs_through_paging(mode):
    s, r, _ = run_kernel(mode, FETCH_SETUP + """
        call paging_on
        call VA + 0x2000
        call show
        call VA + 0x3FFC                ; an instruction crossing two pages
        call show
    """, FETCH_DATA)
    assert r.console == hexline(0xC0DE, 0x12345678)
    assert word(s, PGTAB1 + 2 * 4) == 0x220000 | P | A
    assert word(s, PGTAB1 + 3 * 4) == 0x222000 | P | A
    assert word(s, PGTAB1 + 4 * 4) == 0x223000 | P | A


@modes
def test_fetch_from_a_not_present_page_faults_with_cr2_eip_and_no_id_bit(mode):
    s, r, img = run_kernel(mode, """
        call paging_on
        mov dword [resume], after
        call VA + 0x10
    after:
        mov esp, KSTACK_TOP
        mov dword [resume], after_user
        mov esi, VA + 0x20
        call enter_user
    after_user:
        mov esp, KSTACK_TOP
    """)
    assert r.console == pf(0, VA + 0x10, VA + 0x10) + pf(4, VA + 0x20, VA + 0x20)


@modes
def test_user_fetch_from_a_supervisor_page_faults_5(mode):
    s, r, img = run_kernel(mode, FETCH_SETUP + """
        call paging_on
        mov dword [resume], after
        mov esi, VA + 0x2000
        call enter_user
    after:
        mov esp, KSTACK_TOP
    """, FETCH_DATA)
    assert r.console == pf(5, VA + 0x2000, VA + 0x2000)
    assert word(s, PGTAB1 + 2 * 4) == 0x220000 | P


@modes
def test_an_instruction_crossing_into_a_not_present_page_faults_on_that_page(mode):
    s, r, img = run_kernel(mode, FETCH_SETUP + """
        mov dword [PGTAB1 + 4*4], 0             ; the second page: not present
        call paging_on
        mov dword [resume], after
        call VA + 0x3FFC
    after:
        mov esp, KSTACK_TOP
        mov ebp, [PGTAB1 + 3*4]
    """, FETCH_DATA)
    assert r.console == pf(0, VA + 0x4000, VA + 0x3FFC)
    assert r.registers["ebp"] == 0x222000 | P | A    # the first page was translated


@modes
def test_an_instruction_crossing_two_absent_pages_faults_on_the_first(mode):
    s, r, img = run_kernel(mode, """
        call paging_on
        mov dword [resume], after
        call VA + 0x3FFC
    after:
        mov esp, KSTACK_TOP
    """, FETCH_DATA)
    assert r.console == pf(0, VA + 0x3FFC, VA + 0x3FFC)


# --- 4 MiB pages ----------------------------------------------------------------------

BIG_SETUP = """
    mov dword [0x400000 + 0x123456], 0x44443333
    mov dword [0x800000 + 0x123456], 0x88887777
    mov dword [PGDIR + 8], 0x400000 | PTE_P | PTE_W | PTE_PS   ; va 8 MiB..12 MiB
"""


@modes
def test_a_4mib_page_under_cr4_pse(mode):
    s, r, _ = run_kernel(mode, BIG_SETUP + """
        mov eax, CR4_PSE
        mov cr4, eax
        call paging_on
        mov eax, [0x800000 + 0x123456]
        call show
        mov dword [0x800000 + 0x3FF000], 7
        mov eax, [PGDIR + 8]
        call show
    """)
    assert r.console == hexline(0x44443333, 0x400000 | P | W | A | D | PS)
    assert word(s, 0x7FF000) == 7


@modes
def test_pde_ps_is_ignored_without_cr4_pse(mode):
    # The PDE is then a table pointer: the "PTE" for pdx 2, ptx 0x123 is the
    # zero word at 0x400000 + 0x123*4, not present.
    s, r, img = run_kernel(mode, BIG_SETUP + """
        call paging_on
        mov dword [resume], after
    load:
        mov eax, [0x800000 + 0x123456]
    after:
        mov eax, [PGDIR + 8]
        call show
    """)
    assert r.console == pf(0, 0x923456, img.labels["load"]) + hexline(0x400000 | P | W | A | PS)


SHADOW_INVLPG_4M = ("vmm/monitor.py ShadowMonitor.on_invlpg: the guest's 4 MiB page is "
                    "shadowed by 4 KiB sptes, so the hardware TLB holds one 4 KiB entry per "
                    "page used, but the guest's INVLPG only makes mmu.invlpg(va) drop the "
                    "one of va (and drop_va, under oos, one spte); the other 4 KiB pieces "
                    "of the 4 MiB page keep the old translation")


@modes
def test_invlpg_anywhere_in_a_4mib_page_drops_all_of_it(mode):
    s, r, _ = run_kernel(mode, BIG_SETUP + """
        mov dword [0x400000], 0x1111
        mov dword [0x401000], 0x2222
        mov dword [0x800000], 0x3333
        mov dword [0x801000], 0x4444
        mov eax, CR4_PSE
        mov cr4, eax
        call paging_on
        mov eax, [0x800000]
        call show
        mov eax, [0x801000]
        call show
        mov dword [PGDIR + 8], 0x800000 | PTE_P | PTE_W | PTE_PS
        invlpg [0x800000]
        mov eax, [0x800000]
        call show
        mov eax, [0x801000]
        call show
    """)
    assert r.console == hexline(0x1111, 0x2222, 0x3333, 0x4444)


def test_a_4mib_page_takes_one_tlb_entry_natively():
    s, r, _ = run_kernel("native", BIG_SETUP + """
        mov eax, CR4_PSE
        mov cr4, eax
        call paging_on
        mov eax, [0x800000]
        mov eax, [0x900000]
        mov eax, [0xBFF000]
    """)
    dtlb = s.dtlb
    big = [e for e in dtlb.valid_entries() if e.large]
    assert [(e.vpn, e.pn) for e in big] == [(0x800, 0x400)]
    assert s.mmu.stats()["page_faults"] == 0


# --- replacement policies --------------------------------------------------------------

POLICY_KERNEL = """
    ; 48 pages VA + i*4K -> 0x300000 + i*4K; page i holds 3*i + 1 at offset 4*i
    mov ecx, 0
.map:
    mov eax, ecx
    shl eax, 12
    add eax, 0x300000
    mov ebx, eax
    or eax, PTE_P | PTE_W
    mov [PGTAB1 + ecx*4], eax
    lea edx, [ecx + ecx*2 + 1]
    mov [ebx + ecx*4], edx
    inc ecx
    cmp ecx, 48
    jne .map
    call paging_on
    ; 5 passes over the pages with stride 7 (mod 48): sum every value
    mov esi, 0                  ; sum
    mov ebp, 5
.pass:
    mov ecx, 0
    mov edi, 0                  ; page index
.next:
    mov eax, edi
    shl eax, 12
    add eax, VA
    mov edx, [eax + edi*4]
    add esi, edx
    add dword [eax + edi*4], 1  ; and count the visit in the page
    add edi, 7
    cmp edi, 48
    jb .same
    sub edi, 48
.same:
    inc ecx
    cmp ecx, 48
    jne .next
    dec ebp
    jne .pass
    mov eax, esi
    call show
"""

# Pass p reads 3i + 1 + p from page i: 5 * sum(3i + 1) + 48 * (0 + 1 + 2 + 3 + 4)
POLICY_SUM = 5 * sum(3 * i + 1 for i in range(48)) + 48 * 10


@modes
@pytest.mark.parametrize("policy, kind, seed", [
    ("lru", "split", 0), ("fifo", "split", 0), ("random", "split", 0),
    ("random", "split", 99), ("lru", "unified", 0), ("fifo", "unified", 0),
    ("random", "unified", 5)])
def test_every_tlb_policy_gives_the_same_guest_result(mode, policy, kind, seed):
    cfg = dict(tlb_entries=8, tlb_ways=2)
    _, ref, _ = run_kernel(mode, POLICY_KERNEL, **cfg)
    s, r, _ = run_kernel(mode, POLICY_KERNEL, tlb_policy=policy, tlb_kind=kind, seed=seed,
                         **cfg)
    assert r.console == hexline(POLICY_SUM)
    assert r.guest_visible() == ref.guest_visible()
    assert [word(s, 0x300000 + i * 0x1000 + 4 * i) for i in range(48)] == \
        [3 * i + 1 + 5 for i in range(48)]
    if mode == "native":
        names = ("tlb",) if kind == "unified" else ("itlb", "dtlb")
        assert set(r.stats["mmu"]) == {"walks", "walk_refs", "page_faults",
                                       "tlb_fills", *names}


# --- exact TLB counters on tiny kernels (native) -----------------------------------------
#
# These kernels include nothing: the IDT is hand-made (one gate, #PF, whose
# handler maps VA -> FRAME), the code after paging is on is one page, so
# every block and every memory reference after paging is on can be counted.
# ``out 0x80`` (a port nobody decodes) ends the CPU's batch just before the
# ``mov cr0`` that turns paging on, so the DTLB is charged nothing done with
# paging off (see test_lookups_made_with_paging_off_are_not_counted).

TINY_HEAD = """
PGDIR  equ 0x10000
PGTAB0 equ 0x11000
PGTAB1 equ 0x12000
VA     equ 0x400000
FRAME  equ 0x200000
org 0x1000
_start:
    mov esp, 0x8000
    lidt [idt_desc]
    mov dword [PGDIR], PGTAB0 | 3
    mov dword [PGDIR + 4], PGTAB1 | 3
    mov ecx, 0
map:
    mov eax, ecx
    shl eax, 12
    or eax, 3
    mov [PGTAB0 + ecx*4], eax
    inc ecx
    cmp ecx, 1024
    jne map
    mov dword [FRAME + 4], 0x5A5A
    mov dword [0x201000], 0x0B0B
    mov ecx, {n}
    mov eax, PGDIR
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80000000
    out 0x80, eax
    mov cr0, eax
"""
SPLIT_BATCH = "    out 0x80, eax\n"     # run_tiny(split_batch=False) leaves it out

TINY_TAIL = """
pf:
    mov dword [PGTAB1], FRAME | 3
    add esp, 4
    iret
align 8
idt_desc: dw 0x7F
          dd 0x3000
section idt start=0x3000
times 14*8 db 0
dd pf, 0x8E00
"""


def run_tiny(mode: str, body: str, n: int = 0, extra: str = "", split_batch: bool = True,
             **config):
    """Run ``body`` right after paging is turned on (ecx = ``n``); ``extra``
    goes after the IDT.  Returns (system, result)."""
    head = TINY_HEAD.replace("{n}", str(n))
    if not split_batch:
        head = head.replace(SPLIT_BATCH, "")
    source = head + textwrap.dedent(body) + TINY_TAIL + textwrap.dedent(extra)
    s = System(assemble(source, "<tiny>"), Config(mode=mode, **config))
    return s, s.run()


MISS_ONCE_WARM = """
    mov eax, [0x3000 + 14*8]        ; the IDT's page
    mov dword [PGTAB1 + 8], 0       ; the page table's page, dirty
    push eax                        ; the stack's page, dirty
    pop eax
"""
MISS_ONCE_BODY = """
    mov ebx, [VA + 4]               ; #PF: not present; the handler maps VA
    out 0xF4, ebx                   ; status 0x5A5A
"""


@modes
def test_a_miss_that_faults_is_counted_once_when_the_handler_misses_nothing(mode):
    s, r = run_tiny(mode, MISS_ONCE_WARM + MISS_ONCE_BODY)
    assert (r.outcome, r.exit_status) == ("poweroff", 0x5A5A)
    assert word(s, 0x12000) == 0x200000 | P | W | A     # the PTE the handler wrote, A set
    if mode != "native":
        return
    # DTLB, after paging is on:
    #   warm-up block        4 refs, misses: IDT page, PGTAB1 page, stack page   4 / 3
    #   mov ebx, [VA + 4]    the faulting ref is not a lookup (the instruction
    #                        did not complete) but its miss counts            0 / 1
    #   #PF delivery         2 IDT reads + the frame's pre-translation + 4 pushes 7 / 0
    #   handler              the PTE write                                       1 / 0
    #   iret                 3 pops                                              3 / 0
    #   retry of mov ebx     the walk succeeds; the same miss, not counted again 1 / 0
    # ITLB: one code page, one miss (its lookups: see without_lookups).
    assert tlb_counts(r.stats, "dtlb") == {"lookups": 16, "hits": 12, "misses": 4,
                                           "evictions": 0, "flushes": 2, "invlpg": 0}
    assert without_lookups(tlb_counts(r.stats, "itlb")) == {
        "misses": 1, "evictions": 0, "flushes": 2, "invlpg": 0}
    # walks: code page, 3 warm-up pages, VA (faults), VA again; all but one fill
    assert {k: r.stats["mmu"][k] for k in ("walks", "walk_refs", "page_faults",
                                           "tlb_fills")} == {
        "walks": 6, "walk_refs": 12, "page_faults": 1, "tlb_fills": 5}


MISSED_CLEARED = ("mmu.py Mmu.translate: the memory of the faulting miss (_missed) is "
                  "cleared by ANY successful walk, so when the #PF handler itself misses "
                  "(IDT, stack or page-table page not cached) the retry counts the "
                  "faulting page's miss a second time")


@modes
def test_a_miss_that_faults_is_counted_once_even_when_the_handler_misses(mode):
    s, r = run_tiny(mode, MISS_ONCE_BODY)
    assert (r.outcome, r.exit_status) == ("poweroff", 0x5A5A)
    assert word(s, 0x12000) == 0x200000 | P | W | A     # the PTE the handler wrote, A set
    if mode != "native":
        return
    # DTLB, after paging is on:
    #   mov ebx, [VA + 4]    faults: no lookup, one miss                       0 / 1
    #   #PF delivery         IDT reads (2) miss once, frame pre-translation
    #                        misses the stack page, 4 pushes hit                 7 / 2
    #   handler              PTE write: misses PGTAB1's page                     1 / 1
    #   iret                 3 pops                                              3 / 0
    #   retry                walks VA again, but it is the same miss             1 / 0
    assert tlb_counts(r.stats, "dtlb") == {"lookups": 12, "hits": 8, "misses": 4,
                                           "evictions": 0, "flushes": 2, "invlpg": 0}


@modes
def test_one_entry_dtlb_misses_on_every_alternating_access(mode):
    s, r = run_tiny(mode, """
    again:
        mov eax, [FRAME + 4]
        mov ebx, [0x201000]
        dec ecx
        jne again
        out 0xF4, ebx
    """, n=5, tlb_entries=1, tlb_ways=1)
    assert (r.outcome, r.exit_status) == ("poweroff", 0x0B0B)
    assert r.registers["eax"] == 0x5A5A and r.registers["ecx"] == 0
    if mode == "native":
        # 5 iterations x 2 pages, each evicting the other: 10 misses, 9 evictions.
        assert tlb_counts(r.stats, "dtlb") == {"lookups": 10, "hits": 0, "misses": 10,
                                               "evictions": 9, "flushes": 2, "invlpg": 0}
        # The code is one page: one miss, never evicted.
        assert without_lookups(tlb_counts(r.stats, "itlb")) == {
            "misses": 1, "evictions": 0, "flushes": 2, "invlpg": 0}
        assert r.stats["mmu"]["walks"] == r.stats["mmu"]["tlb_fills"] == 11


@modes
def test_one_entry_itlb_misses_on_every_alternating_code_page(mode):
    s, r = run_tiny(mode, """
    again:
        jmp far_code
    """, n=6, extra="""
    section far start=0x5000
    far_code:
        dec ecx
        jne again
        out 0xF4, ecx
    """, tlb_entries=1, tlb_ways=1)
    assert (r.outcome, r.exit_status) == ("poweroff", 0)
    if mode == "native":
        # Blocks alternate between the pages at 0x1000 and 0x5000: 6 x 2 misses;
        # the final out is on the page cached last.  Nothing touches data.
        assert without_lookups(tlb_counts(r.stats, "itlb")) == {
            "misses": 12, "evictions": 11, "flushes": 2, "invlpg": 0}
        assert tlb_counts(r.stats, "dtlb") == {"lookups": 0, "hits": 0, "misses": 0,
                                               "evictions": 0, "flushes": 2, "invlpg": 0}


UNIFIED_LOOP = """
again:
    mov eax, [FRAME + 4]
    mov ebx, [0x201000]
    dec ecx
    jne again
    out 0xF4, ebx
"""


LOOP_BLOCK_NO_FETCH = ("cpu.py Cpu.__init__ (loop_blocks): under a unified TLB with "
                       "policy fifo or random, a loop block runs its back edge without an "
                       "ITLB lookup, so the code page's translation, evicted by the loop's "
                       "own data accesses, is not missed again (12 misses, not 16, here)")


def _unified_cases():
    for mode in MODES:
        for policy in POLICIES:
            yield pytest.param(mode, policy)


@pytest.mark.parametrize("mode, policy", list(_unified_cases()))
def test_one_entry_unified_tlb_misses_on_fetch_and_data_alike(mode, policy):
    s, r = run_tiny(mode, UNIFIED_LOOP, n=5, tlb_entries=1, tlb_ways=1,
                    tlb_kind="unified", tlb_policy=policy)
    assert (r.outcome, r.exit_status) == ("poweroff", 0x0B0B)
    assert r.registers["eax"] == 0x5A5A
    if mode != "native":
        return
    assert "itlb" not in r.stats["mmu"] and "dtlb" not in r.stats["mmu"]
    # Each iteration: fetch (miss), [FRAME+4] (miss), [0x201000] (miss); then
    # the out's fetch misses again: 5 * 3 + 1.
    t = tlb_counts(r.stats, "tlb")
    assert {k: t[k] for k in ("misses", "evictions", "flushes", "invlpg")} == {
        "misses": 16, "evictions": 15, "flushes": 2, "invlpg": 0}
    assert r.stats["mmu"]["walks"] == 16


@modes
def test_a_unified_tlb_reports_one_tlb(mode):
    body = """
        mov eax, [FRAME + 4]
        out 0xF4, eax
    """
    s, r = run_tiny(mode, body, tlb_kind="unified")
    _, split = run_tiny(mode, body)
    assert (r.outcome, r.exit_status) == ("poweroff", 0x5A5A)
    assert r.guest_visible() == split.guest_visible()
    if mode == "native":
        assert s.itlb is s.dtlb
        mmu = r.stats["mmu"]
        assert set(mmu) == {"walks", "walk_refs", "page_faults", "tlb_fills", "tlb"}
        assert mmu["tlb"]["entries"] == 64 and mmu["tlb"]["ways"] == 4
        # one code page and one data page, one flush per CR3 load and CR0.PG
        t = tlb_counts(r.stats, "tlb")
        assert {k: t[k] for k in ("misses", "evictions", "flushes", "invlpg")} == {
            "misses": 2, "evictions": 0, "flushes": 2, "invlpg": 0}


PAGING_OFF_LOOKUPS = ("cpu.py Cpu.run: a batch adds its block and data lookups to the "
                      "TLBs only if paging is on when the batch ends, so the lookups made "
                      "with paging off before the mov cr0 that turns it on are charged, and "
                      "those made with paging on before a mov cr0 that turns it off are lost")


def test_lookups_made_with_paging_off_are_not_counted():
    # Without out 0x80 the whole start-up (1024 iterations of the map loop,
    # paging off) is in the batch whose mov cr0 turns paging on.
    s, r = run_tiny("native", """
        mov eax, [FRAME + 4]
        out 0xF4, eax
    """, split_batch=False)
    assert (r.outcome, r.exit_status) == ("poweroff", 0x5A5A)
    # With paging on: blocks [mov eax, [FRAME + 4]] and [out]; one data reference.
    assert tlb_counts(r.stats, "itlb") == {"lookups": 2, "hits": 1, "misses": 1,
                                           "evictions": 0, "flushes": 2, "invlpg": 0}
    assert tlb_counts(r.stats, "dtlb") == {"lookups": 1, "hits": 0, "misses": 1,
                                           "evictions": 0, "flushes": 2, "invlpg": 0}


def test_lookups_made_before_paging_is_turned_off_are_counted():
    s, r = run_tiny("native", """
        mov eax, [FRAME + 4]
        mov eax, [0x201000]
        mov eax, [0x202000]
        mov eax, cr0
        and eax, 0x7FFFFFFF
        mov cr0, eax
        out 0xF4, eax
    """)
    assert (r.outcome, r.exit_status) == ("poweroff", 0)
    # Three pages read with paging on: three lookups, three misses (not -3 hits).
    assert tlb_counts(r.stats, "dtlb") == {"lookups": 3, "hits": 0, "misses": 3,
                                           "evictions": 0, "flushes": 3, "invlpg": 0}


# --- the Mmu alone ------------------------------------------------------------------------
#
# Page directory at 0x10000; its slot 1 (va 4..8 MiB) points to the page
# table at 0x11000; VA + n*4K is PTE n.  No CPU: the tests call translate,
# read, write and the hit path (rd32/wr32) themselves.

M_PD, M_PT = 0x10000, 0x11000


def make_mmu(*, wp: bool = False, pge: bool = False, entries: int = 64, ways: int = 4,
             kind: str = "split", policy: str = "lru") -> Mmu:
    mem = PhysMem(16 << 20)
    mem.write32(M_PD + 4, M_PT | P | W | U)
    itlb = Tlb(entries, ways, policy, 0, "itlb")
    dtlb = itlb if kind == "unified" else Tlb(entries, ways, policy, 1, "dtlb")
    mmu = Mmu(mem, itlb, dtlb, DEFAULT_COSTS)
    mmu.set_control(True, wp, False, pge)
    mmu.load_cr3(M_PD)
    return mmu


def map_page(mmu: Mmu, n: int, frame: int, flags: int = P | W) -> None:
    mmu.mem.write32(M_PT + 4 * n, frame | flags)


def counts(tlb: Tlb) -> tuple[int, int, int]:
    return tlb.lookups, tlb.misses, tlb.evictions


def test_mmu_translate_counts_a_lookup_each_time_and_a_miss_once():
    mmu = make_mmu()
    map_page(mmu, 0, FRAME_A)
    mmu.mem.write32(FRAME_A + 0x10, 0x1234)
    assert mmu.read(VA + 0x10, 4) == 0x1234
    assert mmu.read(VA + 0x14, 4) == 0
    page, pn = mmu.translate(VA + 0xFFF)
    assert pn == FRAME_A >> 12 and page is mmu.mem.page(FRAME_A >> 12)
    assert counts(mmu.dtlb) == (3, 1, 0)
    assert counts(mmu.itlb) == (0, 0, 0)
    assert (mmu.walks, mmu.walk_refs, mmu.tlb_fills, mmu.page_faults) == (1, 2, 1, 0)
    assert mmu.mem.read32(M_PT) == FRAME_A | P | W | A


def test_mmu_fetches_use_the_itlb():
    mmu = make_mmu()
    map_page(mmu, 0, FRAME_A)
    mmu.mem.write8(FRAME_A + 5, 0x90)
    assert mmu.fetch_byte(VA + 5) == 0x90
    assert mmu.read(VA + 5, 1, fetch=True) == 0x90
    assert mmu.itlb.misses == 1 and mmu.dtlb.misses == 0
    assert mmu.dtlb.probe(VA >> 12) is None and mmu.itlb.probe(VA >> 12) is not None


def test_mmu_retry_after_a_fault_is_not_a_second_miss():
    mmu = make_mmu()
    with pytest.raises(GuestFault) as f:
        mmu.read(VA + 8, 4)
    assert (f.value.vector, f.value.error_code, f.value.cr2) == (14, 0, VA + 8)
    map_page(mmu, 0, FRAME_A)            # the handler maps the page
    mmu.read(VA + 8, 4)                  # the retry walks again
    assert counts(mmu.dtlb) == (2, 1, 0)
    assert (mmu.walks, mmu.page_faults, mmu.tlb_fills) == (2, 1, 1)


def test_mmu_retry_after_a_fault_is_not_a_second_miss_even_if_the_handler_walked():
    mmu = make_mmu()
    map_page(mmu, 5, FRAME_B)
    with pytest.raises(GuestFault):
        mmu.read(VA, 4)                  # miss 1 (faults)
    mmu.write(VA + 0x5000, 4, 7)         # the handler touches another page: miss 2
    map_page(mmu, 0, FRAME_A)
    mmu.read(VA, 4)                      # the retry: the same miss as the first
    assert counts(mmu.dtlb) == (3, 2, 0)


def test_mmu_a_write_through_a_clean_entry_rewalks_to_set_d():
    mmu = make_mmu()
    map_page(mmu, 0, FRAME_A)
    assert mmu.rd32(VA) == 0             # fills the TLB with D=0
    assert (VA >> 12) in mmu.rfast and (VA >> 12) not in mmu.wfast
    mmu.wr32(VA + 4, 0xAB)               # the hit path cannot: slow path, walk
    assert mmu.mem.read32(M_PT) == FRAME_A | P | W | A | D
    assert mmu.mem.read32(FRAME_A + 4) == 0xAB
    assert (VA >> 12) in mmu.wfast
    assert mmu.walks == 2 and mmu.dtlb.misses == 1 and mmu.tlb_fills == 2
    mmu.wr32(VA + 8, 0xCD)               # now the hit path
    assert mmu.walks == 2 and mmu.mem.read32(FRAME_A + 8) == 0xCD


def test_mmu_hit_path_keeps_a_stale_translation_until_invlpg():
    mmu = make_mmu()
    map_page(mmu, 0, FRAME_A)
    mmu.mem.write32(FRAME_A, 0xAAAA)
    mmu.mem.write32(FRAME_B, 0xBBBB)
    assert mmu.rd32(VA) == 0xAAAA
    map_page(mmu, 0, FRAME_B)            # no invalidation
    assert mmu.rd32(VA) == 0xAAAA
    assert mmu.read(VA, 4) == 0xAAAA     # the slow path hits the TLB too
    mmu.invlpg(VA + 0x800)
    assert (VA >> 12) not in mmu.rfast
    assert mmu.rd32(VA) == 0xBBBB
    assert (mmu.itlb.invlpgs, mmu.dtlb.invlpgs) == (1, 1)


def test_mmu_an_evicted_entry_leaves_the_fast_maps():
    mmu = make_mmu(entries=1, ways=1)
    map_page(mmu, 0, FRAME_A)
    map_page(mmu, 1, FRAME_B)
    mmu.mem.write32(FRAME_A, 0xAAAA)
    mmu.mem.write32(FRAME_B, 0xBBBB)
    assert mmu.rd32(VA) == 0xAAAA
    assert mmu.rd32(VA + 0x1000) == 0xBBBB
    assert set(mmu.rfast) == {(VA >> 12) + 1}
    map_page(mmu, 0, FRAME_B)            # VA left the TLB: the change is seen
    assert mmu.rd32(VA) == 0xBBBB
    assert (mmu.dtlb.misses, mmu.dtlb.evictions) == (3, 2)


@pytest.mark.parametrize("pge", [False, True])
def test_mmu_load_cr3_keeps_global_entries_only_under_pge(pge):
    mmu = make_mmu(pge=pge)
    map_page(mmu, 0, FRAME_A, P | W | G)
    map_page(mmu, 1, FRAME_B, P | W)
    mmu.read(VA, 4)
    mmu.read(VA + 0x1000, 4)
    mmu.load_cr3(M_PD)
    assert mmu.dtlb.probe(VA >> 12) is not None if pge else mmu.dtlb.probe(VA >> 12) is None
    assert mmu.dtlb.probe((VA >> 12) + 1) is None
    assert mmu.dtlb.flushes == 2         # make_mmu's load and this one
    mmu.flush_all()                      # CR4.PGE toggled: globals go too
    assert mmu.dtlb.valid_entries() == [] and mmu.rfast == {}


def test_mmu_crossing_write_translates_both_pages_before_writing_any_byte():
    mmu = make_mmu(wp=True)
    map_page(mmu, 0, FRAME_A)
    map_page(mmu, 1, FRAME_B, P)         # read-only
    with pytest.raises(GuestFault) as f:
        mmu.write(VA + 0xFFE, 4, 0xDDCCBBAA)
    assert (f.value.error_code, f.value.cr2) == (3, VA + 0x1000)
    assert mmu.mem.read(FRAME_A + 0xFFE, 2) == b"\0\0" and mmu.mem.read(FRAME_B, 2) == b"\0\0"
    assert mmu.mem.read32(M_PT) == FRAME_A | P | W | A | D
    assert mmu.mem.read32(M_PT + 4) == FRAME_B | P
    # the first page's lookup was counted, the second's (the slow path adds it) too
    assert counts(mmu.dtlb) == (2, 2, 0)


def test_mmu_crossing_read_combines_the_bytes_of_both_frames():
    mmu = make_mmu()
    map_page(mmu, 0, FRAME_B)            # not contiguous on purpose
    map_page(mmu, 1, FRAME_A)
    mmu.mem.write(FRAME_B + 0xFFD, b"\x11\x22\x33")
    mmu.mem.write(FRAME_A, b"\x44")
    assert mmu.rd32(VA + 0xFFD) == 0x44332211
    assert mmu.read(VA + 0xFFF, 2) == 0x4433


def test_mmu_unified_tlb_serves_fetches_and_data():
    mmu = make_mmu(kind="unified")
    map_page(mmu, 0, FRAME_A)
    mmu.fetch_byte(VA)
    mmu.read(VA, 4)
    assert mmu.itlb is mmu.dtlb
    assert (mmu.itlb.misses, mmu.walks) == (1, 1)
    assert set(mmu.stats()) == {"walks", "walk_refs", "page_faults", "tlb_fills", "tlb"}


def test_a_run_with_paging_off_counts_no_tlb_lookup():
    image = assemble("""
    org 0x1000
        jmp 0x1FFC
    section at_1ffc start=0x1FFC
        mov eax, 0x12345678             ; 6 bytes: 0x1FFC..0x2001
        out 0xF4, eax
    """)
    s = System(image, Config(mode="native"))
    r = s.run()
    assert (r.outcome, r.exit_status) == ("poweroff", 0x12345678)
    zero = {"lookups": 0, "hits": 0, "misses": 0, "evictions": 0, "flushes": 0, "invlpg": 0}
    assert tlb_counts(r.stats, "itlb") == zero
    assert tlb_counts(r.stats, "dtlb") == zero


@pytest.mark.parametrize("access", ["read", "write"])
def test_a_slow_access_answered_by_the_fast_maps_is_an_lru_use_and_a_lookup(access):
    # One set of two ways: pages 0 and 2 fill it, 0 first.  An access to
    # page 0 by Mmu.read/write (a system instruction's) finds it in the fast
    # maps; it still counts a lookup and makes 0 the most recent, so page 4
    # evicts page 2, as it would after translate's TLB hit.
    mmu = make_mmu(entries=2, ways=2)
    for n in (0, 2, 4):
        map_page(mmu, n, FRAME_A + n * 0x1000)
    mmu.write(VA, 4, 1)                       # (D set: the write fast map holds page 0)
    mmu.read(VA + 0x2000, 4)                  # the set: 0, then 2 (the most recent)
    before = mmu.dtlb.lookups
    assert (VA >> 12) in mmu.rfast and (VA >> 12) in mmu.wfast
    if access == "read":
        assert mmu.read(VA, 4) == 1
    else:
        mmu.write(VA, 4, 7)
        assert mmu.mem.read32(FRAME_A) == 7
    assert mmu.dtlb.lookups == before + 1
    mmu.read(VA + 0x4000, 4)
    assert mmu.dtlb.probe(VA >> 12) is not None
    assert mmu.dtlb.probe((VA >> 12) + 2) is None


# A flush that empties a TLB clears its fast maps at once (``Tlb.on_flush``);
# one that keeps global entries drops the others one by one.  Either way
# the fast maps and the TLBs end as the entry-by-entry path leaves them.
FLUSH_OPS = st.lists(st.one_of(
    st.tuples(st.sampled_from(["read", "write", "fetch"]), st.integers(0, 15)),
    st.tuples(st.just("cr3"), st.booleans()),            # keep global entries?
    st.tuples(st.just("invlpg"), st.integers(0, 15)),
), max_size=40)


@settings(max_examples=60, deadline=None)
@given(ops=FLUSH_OPS, kind=st.sampled_from(["split", "unified"]),
       globals_=st.integers(0, 0xFFFF), entries=st.sampled_from([4, 8, 64]))
def test_a_flush_leaves_the_fast_maps_as_dropping_each_entry_does(ops, kind, globals_,
                                                                 entries):
    def state(mmu):
        return (sorted(mmu.rfast), sorted(mmu.wfast), sorted(mmu.ifast),
                [(e.vpn, e.global_) for t in mmu._tlbs() for e in t.valid_entries()])

    mmus = [make_mmu(pge=True, kind=kind, entries=entries, ways=min(entries, 4))
            for _ in range(2)]
    for t in mmus[1]._tlbs():
        t.on_flush = None                    # the entry-by-entry path
    for mmu in mmus:
        for n in range(16):
            map_page(mmu, n, FRAME_A + (n << 12), P | W | U | D | (G if globals_ >> n & 1 else 0))
    for op, arg in ops:
        for mmu in mmus:
            if op == "cr3":
                mmu.pge = arg
                mmu.load_cr3(M_PD)
            elif op == "invlpg":
                mmu.invlpg(VA + (arg << 12))
            else:
                mmu.translate(VA + (arg << 12), op == "write", op == "fetch")
        assert state(mmus[0]) == state(mmus[1])
