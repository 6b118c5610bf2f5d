"""The stepper's code pane shows the source of the code around eip.

An instruction whose bytes are still the image's is shown as its source
wrote it -- constants by name, so a constant equal to an address is never
taken for a label -- and the pane names the file and line of eip; code the
image did not put there is disassembled.
"""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from emu.asm import assemble
from emu.system import MODES, Config
from emu.ui.screen import code_lines, code_panel
from emu.ui.session import Session

SOURCE = """\
bits 32
PAGE equ 0x1000                 ; the value of _start too
org 0x1000
_start:
    mov eax, PAGE
.next: add eax, PAGE            ; (the label is on a line of its own in the pane)
    mov byte [patched], 0x76    ; a nop over the next instruction's first byte
patched:
    inc eax
    out 0xf4, eax
"""


@pytest.mark.parametrize("mode", MODES)
def test_the_code_pane_shows_source_lines_and_names_eip_s_line(mode):
    s = Session(assemble(SOURCE, "pane.s"), Config(mode=mode, mem_mib=1))
    assert code_lines(s, 4) == [(None, "_start:"), (0x1000, "mov eax, PAGE"),
                                (None, "_start.next:"), (0x1006, "add eax, PAGE")]
    out = io.StringIO()
    Console(file=out, width=60, color_system=None).print(code_panel(s, 4))
    assert out.getvalue().splitlines()[-1].endswith(" pane.s:5 ─╯")
    s.step(1)
    out = io.StringIO()
    Console(file=out, width=60, color_system=None).print(code_panel(s, 4))
    assert out.getvalue().splitlines()[-1].endswith(" pane.s:6 ─╯")


@pytest.mark.parametrize("mode", MODES)
def test_code_that_changed_is_disassembled(mode):
    s = Session(assemble(SOURCE, "pane.s"), Config(mode=mode, mem_mib=1))
    s.step(3)                   # the mov byte has written a nop over 'inc eax'
    patched = s.image.labels["patched"]
    assert s.system.cpu.eip == patched
    assert code_lines(s, 3) == [(None, "patched:"), (patched, "nop"),
                                (patched + 1, "db 0x00")]     # (opcode 0: none)


DATA = """\
bits 32
org 0x1000
_start:
    mov byte [msg + 1], 'E'     ; the guest changes its own string
    mov eax, table
    jmp eax                     ; runs the table's bytes as code
msg:    db "hello", 0
table:  dd 0xf4e6, 7            ; (as code: whatever it decodes to)
pad:    times 3 db 0x90
"""


@pytest.mark.parametrize("mode", MODES)
def test_data_lines_are_shown_as_the_source_wrote_them(mode):
    image = assemble(DATA, "data.s")
    msg, table, pad = (image.labels[n] for n in ("msg", "table", "pad"))
    assert image.data == {msg: (("data.s", 7, 'msg:    db "hello", 0'), 6),
                          table: (("data.s", 8, "table:  dd 0xf4e6, 7"), 8),
                          pad: (("data.s", 9, "pad:    times 3 db 0x90"), 3)}
    s = Session(image, Config(mode=mode, mem_mib=1))
    rows = code_lines(s, 12)
    at = rows.index((None, "msg:"))
    assert rows[at:at + 6] == [(None, "msg:"), (msg, 'db "hello", 0'),
                         (None, "table:"), (table, "dd 0xf4e6, 7"),
                         (None, "pad:"), (pad, "times 3 db 0x90")]
    s.step(1)                   # "hello" is "hEllo" now: its bytes, disassembled
    assert (msg, "db 0x68, 0x45, 0x6c, 0x6c, 0x6f, 0x00") in code_lines(s, 12)
    s.step(2)                   # at the table: data run as code is decoded
    assert s.system.cpu.eip == table
    rows = code_lines(s, 12)
    assert (table, "dd 0xf4e6, 7") not in rows and any(a == table for a, _ in rows)
