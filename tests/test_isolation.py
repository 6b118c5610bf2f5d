"""Resource control: a guest that aims its page tables at everything it can
name -- every frame of its RAM, its own page tables, frames past its RAM
(where a VMM that used guest frame numbers as machine frames would keep its
own pages and other guests' memory) -- reaches nothing it was not given.

The scribbler stamps every frame of RAM above 2 MiB with 0xDEADBEEF through a
one-page window it remaps (with invlpg) frame by frame, reads its own page
tables through the window, then maps the first frame past RAM and reads it:
a bus error ends the run ("pa ... is outside memory") in every mode.  Run
beside another guest on one machine, the other guest's result and memory
are exactly what they are when it runs alone.
"""

from __future__ import annotations

import pytest

from emu import programs
from emu.asm import assemble
from emu.multi import run_many
from emu.system import Config, System

MEM_MIB = 8
SCRIBBLER = f"""
%include "kernel.inc"
PGDIR   equ 0x100000
PGTAB   equ 0x101000            ; identity 0..4 MiB
WINTAB  equ 0x102000            ; va 4..8 MiB: the window
WINDOW  equ 0x400000
FIRST   equ 0x200               ; frames below 2 MiB: the kernel and its tables
FRAMES  equ {MEM_MIB * 256}
org 0x1000
_start:
    mov esp, 0x80000
    mov edi, PGDIR
    mov ecx, 3 * 1024
    mov eax, 0
    rep stosd                   ; directory and both tables zeroed
    mov dword [PGDIR], PGTAB | PTE_P | PTE_W
    mov dword [PGDIR + 4], WINTAB | PTE_P | PTE_W
    mov ecx, 0
.map:
    mov eax, ecx
    shl eax, 12
    or eax, PTE_P | PTE_W
    mov [PGTAB + ecx*4], eax
    inc ecx
    cmp ecx, 1024
    jne .map
    mov eax, PGDIR
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax
    mov ebx, FIRST              ; fill every other frame of RAM
.scribble:
    mov eax, ebx
    shl eax, 12
    or eax, PTE_P | PTE_W
    mov [WINTAB], eax
    invlpg [WINDOW]
    mov edi, WINDOW
    mov ecx, 16                 ; the first 64 bytes of each frame
    mov eax, 0xDEADBEEF
    rep stosd
    inc ebx
    cmp ebx, FRAMES
    jne .scribble
    mov dword [WINTAB], PGTAB | PTE_P   ; its own page table, read-only
    invlpg [WINDOW]
    mov esi, [WINDOW + 4]               ; PTE 1: 0x1000 | P W, A set by now
    mov dword [WINTAB], FRAMES << 12 | PTE_P | PTE_W   ; past the end of RAM
    invlpg [WINDOW]
    mov edx, 0x5A5A5A5A
the_read:
    mov eax, [WINDOW]                   ; a bus error: the run ends here
    mov eax, 0
    out POWER, eax
"""

MODES = [("native", None), ("shadow", "trace-cache"), ("shadow", "trace-drop"),
         ("shadow", "oos-cache"), ("shadow", "oos-drop"), ("nested", None)]


def image(source: str, name: str):
    return assemble(source, name, include_dirs=[str(programs.include_dir())])


def config(mode, policy, **kw) -> Config:
    return Config(mode=mode, shadow_policy=policy or "trace-cache", mem_mib=MEM_MIB,
                  check_invariants=mode != "native", **kw)


@pytest.fixture(scope="module")
def native():
    return System(image(SCRIBBLER, "scribbler"), config("native", None)).run()


@pytest.mark.parametrize("mode, policy", MODES, ids=[f"{m}-{p}" if p else m for m, p in MODES])
def test_the_scribbler_ends_in_a_bus_error_everywhere(mode, policy, native):
    system = System(image(SCRIBBLER, "scribbler"), config(mode, policy))
    r = system.run()
    assert r.outcome == "crash"
    eip = system.image.symbols["the_read"]
    assert r.message == f"pa 0x00800000 is outside memory (8 MiB) (eip {eip:#010x})"
    assert r.registers["esi"] == 0x1000 | 0x23         # P W A: its own PTE, read back
    assert r.registers["edx"] == 0x5A5A5A5A
    assert r.guest_visible() == native.guest_visible()
    # every frame above 2 MiB holds the pattern, and nothing else changed
    assert system.guest_read(0x200000, 8) == bytes.fromhex("efbeadde" * 2)
    assert system.guest_read(MEM_MIB * 2**20 - 4096, 4) == bytes.fromhex("efbeadde")
    assert system.guest_read(MEM_MIB * 2**20 - 4, 4) == bytes(4)
    if mode != "native":
        assert system.vmm.invariant_checks > 1536      # one per invlpg exit at least


@pytest.mark.parametrize("mode", ["shadow", "nested"])
def test_a_neighbour_on_the_same_machine_cannot_tell(mode):
    hello = image(open(programs.resolve("hello"), encoding="utf-8").read(), "hello")
    alone = System(hello, config(mode, None)).run()
    multi = run_many([image(SCRIBBLER, "scribbler"), hello], ["scribbler", "hello"],
                     config(mode, None, machine_mib=2 * MEM_MIB + 8))
    results = dict(multi.results)
    assert results["scribbler"].outcome == "crash"
    assert results["hello"].outcome == "poweroff"
    assert results["hello"].guest_visible() == alone.guest_visible()
