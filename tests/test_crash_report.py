"""A triple fault is reported from its first exception, the same in every mode.

The report names the first event, the eip and source line of its
instruction, why its delivery failed, then each event that followed::

    #DE divide error at eip 0x00001012 (crash.s:9: `div ecx`) with no IDT
    loaded -> double fault -> triple fault: the machine shut down

A reason is repeated only when it changes.  Each guest below is written
for one chain of the SDM's rules (vol. 3A, 6.15, "Interrupt 8 -- Double
Fault Exception"); the expected text follows from the program alone.
"""

from __future__ import annotations

import textwrap

import pytest

from emu.asm import assemble
from emu.cli import main
from emu.system import MODES, Config, System

HEADER = "; a guest that crashes\nbits 32\norg 0x1000\n_start:\n    mov esp, 0x80000\n"


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


def crash(mode: str, body: str, data: str = "") -> tuple[str, object]:
    image = assemble(HEADER + textwrap.dedent(body) + textwrap.dedent(data), "crash.s")
    r = System(image, Config(mode=mode, mem_mib=1)).run()
    assert r.outcome == "crash"
    return r.message, image


def line_of(image, text: str) -> int:
    """The eip of the instruction written as ``text``."""
    return next(a for a, src in image.lines.items() if src.text == text)


def test_divide_error_with_no_idt(mode):
    message, image = crash(mode, """\
        mov eax, 10
        mov edx, 0
        mov ecx, 0
        div ecx
    """)
    assert line_of(image, "div ecx") == 0x1018
    assert message == ("#DE divide error at eip 0x00001018 (crash.s:9: `div ecx`) with no "
                       "IDT loaded -> double fault -> triple fault: the machine shut down")


def test_the_cli_prints_the_report_in_every_mode(tmp_path, capsys, mode):
    src = tmp_path / "demo.s"
    src.write_text(HEADER + "    mov ecx, 0\n    div ecx\n    out 0xf4, eax\n")
    assert main(["run", str(src), "--quiet", "--mode", mode]) == 3
    assert capsys.readouterr().err == (
        "emu: crash: #DE divide error at eip 0x0000100c (demo.s:7: `div ecx`) with no IDT "
        "loaded -> double fault -> triple fault: the machine shut down\n")


GATES = """\
    align 8
    idt_desc: dw 8 * 15 - 1
        dd idt
    idt: times 15 dd handler, 0x8E00
    handler: out 0xf4, eax
"""


def test_gates_not_present_name_each_gate(mode):
    # The bundled bad_triple in small: a contributory exception whose gate is
    # not present (#NP, contributory too: double fault), and no #DF gate.
    message, image = crash(mode, """\
        lidt [idt_desc]
        mov dword [idt + 0*8 + 4], 0x0E00
        mov dword [idt + 8*8 + 4], 0x0E00
        mov ecx, 0
        div ecx
    """, GATES)
    eip = line_of(image, "div ecx")
    assert message == (
        f"#DE divide error at eip {eip:#010x} (crash.s:10: `div ecx`) with IDT gate 0 not "
        "present -> double fault with IDT gate 8 not present -> triple fault: the machine "
        "shut down")


def test_a_vector_beyond_the_idt_limit(mode):
    # ud2's gate (6) is past the limit 6*8 - 1; so are the gates of the #GP
    # that follows (a benign #UD: delivered serially) and of the #DF.
    message, image = crash(mode, """\
        lidt [small_idt]
        ud2
    """, "small_idt: dw 6*8 - 1\n    dd 0\n")
    eip = line_of(image, "ud2")
    assert message == (
        f"#UD invalid opcode at eip {eip:#010x} (crash.s:7: `ud2`) with vector 6 beyond "
        "the IDT limit 0x2f -> #GP general protection (error code 0x33) with vector 13 "
        "beyond the IDT limit 0x2f -> double fault with vector 8 beyond the IDT limit "
        "0x2f -> triple fault: the machine shut down")


PAGING_READ_ONLY = """\
    lidt [idt_desc]
    mov eax, cr4
    or eax, 0x10                ; PSE
    mov cr4, eax
    mov eax, pgdir
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80010000          ; PG | WP
    mov cr0, eax
"""


def test_a_page_fault_while_pushing_the_frame(mode):
    # One 4 MiB page, present but read-only, and CR0.WP: the write faults,
    # the #PF's frame cannot be pushed (#PF + #PF: double fault) and neither
    # can the double fault's, at the same place (the reason is not repeated).
    message, image = crash(mode, PAGING_READ_ONLY + """\
        mov dword [0x2000], 1
    """, GATES + """\
    align 4096
    pgdir: dd 0x81              ; P | PS, not writable
        times 1023 dd 0
    """)
    eip = line_of(image, "mov dword [0x2000], 1")
    assert message == (
        f"#PF page fault (va 0x00002000, error code 0x3) at eip {eip:#010x} (crash.s:15: "
        "`mov dword [0x2000], 1`) while pushing its frame: #PF page fault error code 0x3 at "
        "va 0x0007fff0 -> double fault -> triple fault: the machine shut down")


def test_the_chain_starts_after_the_last_delivery_that_worked(mode):
    # #DE with its gate not present becomes a #DF, which is delivered; the
    # #DF handler then takes away the #DF gate and divides by zero again:
    # the report starts at the second div.
    message, image = crash(mode, """\
        lidt [idt_desc]
        mov dword [idt + 0*8 + 4], 0x0E00
        mov dword [idt + 8*8], df_handler
        mov ecx, 0
        div ecx
    df_handler:
        mov dword [idt + 8*8 + 4], 0x0E00
        div ecx
    """, GATES)
    eip = max(a for a, src in image.lines.items() if src.text == "div ecx")
    assert eip > image.labels["df_handler"]
    assert message == (
        f"#DE divide error at eip {eip:#010x} (crash.s:13: `div ecx`) with IDT gate 0 not "
        "present -> double fault with IDT gate 8 not present -> triple fault: the machine "
        "shut down")


def test_a_timer_interrupt_with_no_idt(mode):
    message, image = crash(mode, """\
        mov eax, 3
        out 0x40, eax
        sti
    spin:
        jmp spin
    """)
    eip = image.labels["spin"]
    assert message == (
        f"timer interrupt at eip {eip:#010x} (crash.s:10: `jmp spin`) with no IDT loaded -> "
        "#GP general protection (error code 0x103) -> double fault -> triple fault: the "
        "machine shut down")
