"""Writes to a page that holds translated code: only the translations read
from the bytes written go stale (``Mmu.code_bytes``).  A kernel's variables
beside its code are written without translating anything again, and code
written by a store, a byte store, ``rep movsb`` forwards or backwards runs
as written -- in every mode and shadow policy alike."""

from __future__ import annotations

import pytest

from emu import programs
from emu.asm.assembler import assemble
from emu.system import Config, System
from emu.vmm.shadow import POLICIES

SOURCE = """
bits 32
%include "kernel.inc"
org 0x1000
_start:
    mov esp, 0x80000
    call patch                  ; translated: eax = 7
    mov [first], eax
    mov ecx, 0
.loop:                          ; a variable beside the code, written 100 times
    mov [counter], ecx
    call nothing
    inc ecx
    cmp ecx, 100
    jne .loop
    mov byte [patch + 2], 35    ; the immediate of patch's first instruction
    call patch
    mov ebx, eax                ; 35
    mov dword [deep + 3], 1000  ; the immediate of deep's second instruction
    call deep
    add ebx, eax                ; + 1000 - 1
    mov esi, new_code           ; patch's first instruction, by rep movsb
    mov edi, patch
    mov ecx, new_code2 - new_code
    cld
    rep movsb
    call patch
    add ebx, eax                ; + 100
    mov esi, first - 1          ; and again, backwards
    mov edi, patch + (first - new_code2) - 1
    mov ecx, first - new_code2
    std
    rep movsb
    cld
    call patch
    add ebx, eax                ; + 20000
    add ebx, [first]            ; + 7
    mov eax, ebx
    out POWER, eax
nothing:
    ret
patch:
    mov eax, 7
    ret
deep:
    nop
    mov eax, 2
    add eax, -1
    ret
new_code:
    mov eax, 100
new_code2:
    mov eax, 20000
first:   dd 0
counter: dd 0
"""

CONFIGS = [("native", None)] + [("shadow", p) for p in POLICIES] + [("nested", None)]


@pytest.fixture(scope="module")
def image():
    return assemble(SOURCE, "code_writes.s", [str(programs.include_dir())],
                    require_start=True)


@pytest.mark.parametrize("mode,policy", CONFIGS,
                         ids=[m + (f"-{p}" if p else "") for m, p in CONFIGS])
def test_code_runs_as_written_and_variables_beside_it_cost_no_translation(image, mode,
                                                                            policy):
    cfg = Config(mode=mode, shadow_policy=policy or Config.shadow_policy)
    r = System(image, cfg).run()
    assert (r.outcome, r.exit_status) == ("poweroff", 35 + 999 + 100 + 20000 + 7)
    assert r.instructions == 640
    # Every block once, and again only those whose bytes were written (the
    # 100 writes to `counter` once made it 300 more); a VMM emulates the
    # first write to the code page, one instruction translated on its own.
    # A store to translated code ends its block, and the rest of the block
    # is translated again from the next instruction: one more.
    assert r.stats["cpu"]["blocks_translated"] == (21 if mode == "native" else 22)


def test_a_write_to_a_translated_byte_drops_the_pages_translations(image):
    s = System(image, Config())
    s.run()
    mmu = s.mmu
    page = mmu.translate(s.image.labels["patch"], fetch=True)[1]   # (its physical page)
    assert mmu.code[page] and mmu.code_bytes[page][s.image.labels["patch"] & 0xFFF]
    counter = s.image.labels["counter"] & 0xFFF
    assert not mmu.code_bytes[page][counter]       # data: never read as code
    mmu.wrote_bytes(page, counter, counter + 4)
    assert mmu.code[page]
    mmu.wrote_bytes(page, counter - 1, counter + 4)  # first's last byte: also data
    assert mmu.code[page]
    at = s.image.labels["nothing"] & 0xFFF          # code, run before the last write
    assert not mmu.code_bytes[page][at]             # to patch: not translated since
    mmu.wrote_bytes(page, at, at + 1)
    assert mmu.code[page]
    at = s.image.labels["patch"] & 0xFFF
    mmu.wrote_bytes(page, at + 5, at + 6)
    assert not mmu.code[page] and page not in mmu.code_bytes


# A store into the block that is running: x86 (P6 and later) sees a write
# to an instruction it has already fetched (Intel SDM vol. 3A, 11.6), so the
# rest of the block must run as written.  (emu's `mov eax, imm32` is
# 02 00 <imm32>: +2 is the immediate's low byte; `add r32, imm8` is
# <op> <reg> <imm8>.)
AHEAD = """
bits 32
org 0x1000
_start:
    mov ebx, 7
    mov byte [target + 2], 5    ; the next instruction's immediate
target:
    mov eax, 1
    add eax, ebx                ; 5 + 7
    out 0xF4, eax
"""

LOOP = """
bits 32
org 0x1000
_start:
    mov ecx, 3
    mov edx, 0
top:
    add edx, 1                  ; 1, then 3, then 2 (the loop rewrites it)
    mov byte [top + 2], cl
    loop top
    mov eax, edx
    add eax, 0                  ; flags of a real add, then a store's exit
    out 0xF4, eax
"""


@pytest.mark.parametrize("mode,policy", CONFIGS,
                         ids=[m + (f"-{p}" if p else "") for m, p in CONFIGS])
@pytest.mark.parametrize("source,status,insns", [(AHEAD, 12, 5), (LOOP, 6, 14)],
                         ids=["ahead", "loop"])
def test_a_store_into_the_running_block_is_seen_by_its_next_instruction(
        mode, policy, source, status, insns):
    cfg = Config(mode=mode, shadow_policy=policy or Config.shadow_policy)
    r = System(assemble(source, "smc.s", require_start=True), cfg).run()
    assert (r.outcome, r.exit_status, r.instructions) == ("poweroff", status, insns)


def test_a_store_that_ends_the_block_leaves_exact_flags_and_counts():
    """The block ends after the storing instruction: the flags an earlier
    instruction computed (which its next one would have overwritten) are
    exact, and so are the cycles and data references of the instructions
    that ran."""
    source = """
bits 32
org 0x1000
_start:
    mov eax, 0xFFFFFFFF
    add eax, 1                  ; CF=1 ZF=1
    mov byte [target + 2], 9    ; stores; flags unchanged
target:
    mov ecx, 0
    setc cl
    mov eax, ecx
    out 0xF4, eax
"""
    image = assemble(source, "smc.s", require_start=True)
    plain = assemble(source.replace("[target + 2]", "[data]") + "data: dd 0\n", "p.s",
                     require_start=True)
    r, p = System(image, Config()).run(), System(plain, Config()).run()
    assert (r.exit_status, p.exit_status) == (1, 1)
    assert r.registers["eflags"] == p.registers["eflags"]
    assert (r.instructions, r.cycles) == (p.instructions, p.cycles)
    assert r.stats["mmu"]["dtlb"] == p.stats["mmu"]["dtlb"]
