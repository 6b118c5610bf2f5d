"""``emu isa``: the instruction set printed from the ISA table, and
docs/isa.md equal to it."""

from __future__ import annotations

import pathlib

from emu import isadoc
from emu.cli import main

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "isa.md"


def test_docs_isa_md_is_what_emu_isa_prints():
    assert DOC.read_text() == isadoc.markdown(), "regenerate: emu isa --markdown > docs/isa.md"


def test_emu_isa_prints_every_mnemonic_with_forms_flags_and_cycles(capsys):
    assert main(["isa"]) == 0
    out = capsys.readouterr().out
    assert out == isadoc.render()
    entry = out[out.index("\nadd -- "):].split("\n\n")[0].strip("\n")
    assert entry == "\n".join([
        "add -- dst += src",
        "    add r32, r/m32                     1 cycle",
        "    add r/m32, r32                     1 cycle",
        "    add r/m32, imm32                   1 cycle",
        "    add r8, r/m8                       1 cycle",
        "    add r/m8, r8                       1 cycle",
        "    add r/m8, imm8                     1 cycle",
        "    flags: sets CF PF AF ZF SF OF"])
    shl = out[out.index("\nshl -- "):].split("\n\n")[0].strip("\n").splitlines()
    assert shl[5:] == [
        "    flags: sets CF PF ZF SF OF",
        "    flags: undefined AF",
        "    flags: undefined OF unless the count is 1",
        "    flags: undefined CF when the count is at least the operand's width",
        "    flags: a count of 0 changes no flag",
        "    also written: sal"]
    div = out[out.index("\ndiv -- "):].split("\n\n")[0].strip("\n").splitlines()
    assert div[1:] == ["    div r/m32                          20 cycles",
                       "    flags: sets none",
                       "    flags: undefined CF PF AF ZF SF OF"]
    assert "    not as on x86: sets the TSS base for ring switches; no segment state" in out
