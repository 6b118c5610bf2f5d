"""``emu asm PROG --elf OUT``: an ELF32 i386 file that debuggers read.

Checked with an independent reader (pyelftools) against the image the
assembler made, and with the real GDB (``gdb -batch``).
"""

from __future__ import annotations

import subprocess

import pytest
from elftools.elf.elffile import ELFFile

from emu.asm import assemble
from emu.asm.elf import elf_bytes
from emu.cli import load, main

SOURCE = """\
; a tiny kernel for the ELF tests
COUNT equ 3
org 0x1000
_start:
    mov ecx, COUNT
.loop:
    call bump
    dec ecx
    jne .loop
    mov eax, [total]
    out 0xF4, eax
bump:
    add dword [total], 2
    ret
align 4
total: dd 0
section user start=0x400000
user_main:
    mov eax, 1
    hlt
"""


@pytest.fixture()
def program(tmp_path):
    path = tmp_path / "tiny.s"
    path.write_text(SOURCE)
    return path


def elf_of(path, tmp_path):
    out = tmp_path / "tiny.elf"
    assert main(["asm", str(path), "--elf", str(out)]) == 0
    return out


def test_the_header_and_segments_are_the_images(program, tmp_path, capsys):
    out = elf_of(program, tmp_path)
    image = load(str(program))
    line = capsys.readouterr().out
    assert line == (f"{out}: ELF32 i386, 2 segments, 5 labels, 11 source lines, "
                    "entry 0x1000\n")
    with open(out, "rb") as fh:
        elf = ELFFile(fh)
        assert (elf.elfclass, elf.little_endian) == (32, True)
        assert elf["e_machine"] == "EM_386" and elf["e_type"] == "ET_EXEC"
        assert elf["e_entry"] == 0x1000
        loads = [seg for seg in elf.iter_segments() if seg["p_type"] == "PT_LOAD"]
        assert [(s["p_vaddr"], s.data()) for s in loads] == \
            [(a, bytes(d)) for a, d in image.segments]
        for seg in loads:
            assert seg["p_offset"] % 0x1000 == seg["p_vaddr"] % 0x1000
        assert [s.name for s in elf.iter_sections()][1:3] == [".text", ".user"]


def test_labels_are_functions_or_objects_and_constants_absolute(program, tmp_path):
    out = elf_of(program, tmp_path)
    with open(out, "rb") as fh:
        elf = ELFFile(fh)
        symtab = elf.get_section_by_name(".symtab")
        syms = {s.name: (s["st_value"], s["st_size"], s["st_info"]["type"],
                         s["st_info"]["bind"], s["st_shndx"]) for s in symtab.iter_symbols()
                if s.name}
    assert syms == {
        "_start": (0x1000, 0x1C, "STT_FUNC", "STB_GLOBAL", 1),     # up to bump
        "_start.loop": (0x1006, 0, "STT_NOTYPE", "STB_LOCAL", 1),
        "bump": (0x101C, 0xC, "STT_FUNC", "STB_GLOBAL", 1),        # its align padding too
        "total": (0x1028, 4, "STT_OBJECT", "STB_GLOBAL", 1),
        "user_main": (0x400000, 7, "STT_FUNC", "STB_GLOBAL", 2),
        "COUNT": (3, 0, "STT_NOTYPE", "STB_LOCAL", "SHN_ABS"),
    }


def decoded_lines(path) -> dict[int, tuple[str, int]]:
    """address -> (file, line) as pyelftools decodes the line program."""
    out = {}
    with open(path, "rb") as fh:
        elf = ELFFile(fh)
        dwarf = elf.get_dwarf_info()
        cus = list(dwarf.iter_CUs())
        assert len(cus) == 1
        top = cus[0].get_top_DIE()
        assert top.tag == "DW_TAG_compile_unit"
        assert top.attributes["DW_AT_stmt_list"].value == 0
        prog = dwarf.line_program_for_CU(cus[0])
        files = [f.name.decode() for f in prog["file_entry"]]
        for entry in prog.get_entries():
            st = entry.state
            if st is not None and not st.end_sequence:
                out[st.address] = (files[st.file - 1], st.line)
    return out


@pytest.mark.parametrize("guest", ["tiny", "demand", "syscalls"])
def test_the_line_table_gives_every_instruction_its_source_line(guest, program, tmp_path):
    path = str(program) if guest == "tiny" else guest
    image = load(path)
    out = tmp_path / "x.elf"
    out.write_bytes(elf_bytes(image))
    assert decoded_lines(out) == {a: (s.file, s.line) for a, s in image.lines.items()}
    assert len(image.lines) > 5


def test_gdb_knows_the_labels_and_the_source_lines(program, tmp_path):
    out = elf_of(program, tmp_path)
    p = subprocess.run(["gdb", "-nx", "-batch", str(out), "-ex", "info line *0x1006",
                        "-ex", "info symbol 0x101e", "-ex", "info line bump",
                        "-ex", "info address total", "-ex", "info line *0x400006"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        f'Line 7 of "{program}" starts at address 0x1006 <_start+6> '
        "and ends at 0x100b <_start+11>.",
        "bump + 2 in section .text",
        f'Line 13 of "{program}" starts at address 0x101c <bump> and ends at 0x1026 <bump+10>.',
        'Symbol "total" is at 0x1028 in a file compiled without debugging.',
        f'Line 20 of "{program}" starts at address 0x400006 <user_main+6> '
        "and ends at 0x400007.",
    ]


def test_an_empty_program_or_a_bad_path_is_one_line(tmp_path, capsys):
    empty = tmp_path / "empty.s"
    empty.write_text("; nothing\n")
    assert main(["asm", str(empty), "--elf", str(tmp_path / "e.elf")]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["asm", "hello", "--elf", str(tmp_path / "no" / "such" / "x.elf")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("emu: error: cannot write ") and err.count("\n") == 1


def test_a_program_without_code_has_an_empty_line_table(tmp_path):
    image = assemble("org 0x2000\n_start: dd 1, 2\n", "data.s")
    assert not image.lines
    out = tmp_path / "data.elf"
    out.write_bytes(elf_bytes(image))
    assert decoded_lines(out) == {}
    with open(out, "rb") as fh:
        elf = ELFFile(fh)
        assert elf["e_entry"] == 0x2000
        sym = elf.get_section_by_name(".symtab").get_symbol_by_name("_start")[0]
        assert sym["st_info"]["type"] == "STT_OBJECT"
