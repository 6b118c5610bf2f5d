"""Assembling the same program again in one process reuses the Image only
while every file it read reads the same: an edited, removed or newly
shadowing include file is seen at once."""

from __future__ import annotations

import os

import pytest

from emu.asm.assembler import assemble, assemble_file
from emu.errors import AsmError


def _write(path, text: str) -> None:
    path.write_text(text)


def test_the_same_program_is_the_same_image(tmp_path):
    _write(tmp_path / "k.s", "org 0x1000\n_start:\n    mov eax, 7\n")
    first = assemble_file(tmp_path / "k.s")
    assert assemble_file(tmp_path / "k.s") is first
    assert assemble_file(tmp_path / "k.s", listing=True) is not first


def test_an_edited_include_is_read_again(tmp_path):
    _write(tmp_path / "k.s", '%include "v.inc"\norg 0x1000\n_start:\n    mov eax, V\n')
    _write(tmp_path / "v.inc", "V equ 1\n")
    one = assemble_file(tmp_path / "k.s")
    _write(tmp_path / "v.inc", "V equ 2\n")
    two = assemble_file(tmp_path / "k.s")
    assert one.symbols["V"] == 1 and two.symbols["V"] == 2
    assert one.segments != two.segments
    os.remove(tmp_path / "v.inc")
    with pytest.raises(AsmError, match="include file 'v.inc' not found"):
        assemble_file(tmp_path / "k.s")


def test_an_include_found_earlier_on_the_path_wins_at_once(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    _write(tmp_path / "k.s", '%include "v.inc"\norg 0x1000\n_start:\n    mov eax, V\n')
    _write(lib / "v.inc", "V equ 3\n")
    assert assemble_file(tmp_path / "k.s", [lib]).symbols["V"] == 3
    _write(tmp_path / "v.inc", "V equ 4\n")       # next to the program: searched first
    assert assemble_file(tmp_path / "k.s", [lib]).symbols["V"] == 4


def test_an_error_is_never_kept(tmp_path):
    source = "org 0\n    mov eax, NOPE\n"
    for _ in range(2):
        with pytest.raises(AsmError, match="undefined symbol 'NOPE'"):
            assemble(source, "bad.s")


def test_relative_names_depend_on_the_working_directory(tmp_path, monkeypatch):
    for sub, value in (("a", 5), ("b", 6)):
        (tmp_path / sub).mkdir()
        _write(tmp_path / sub / "v.inc", f"V equ {value}\n")
    source = '%include "v.inc"\norg 0\n    mov eax, V\n'
    monkeypatch.chdir(tmp_path / "a")
    assert assemble(source, "<input>").symbols["V"] == 5
    monkeypatch.chdir(tmp_path / "b")
    assert assemble(source, "<input>").symbols["V"] == 6
