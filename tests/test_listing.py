"""``emu asm``: every source line beside the address and bytes it made.

Instructions show their bytes, data shows its bytes (never decoded as
instructions), a constant shows its value after ``=`` (it is not an
address), a line made by a macro is marked with its depth, and the sections
and the entry point close the listing.  The bytes of instructions come from
the ISA table (``op``), the rest is written out by hand.
"""

from __future__ import annotations

import textwrap

from emu import isa
from emu.asm import assemble, source_listing
from emu.cli import main

SOURCE = """\
; demo listing
bits 32
N equ 3
%macro twice 1
    db %1, %1
%endmacro
org 0x1000
_start:
    mov eax, N
.loop: dec eax
    jnz .loop
msg: db "hi", 0
    twice 7
    times 20 db 0xAB
section .bss
buf: resb 64
"""


def op(mnemonic: str, *kinds: str) -> str:
    return f"{isa.BY_KEY[(mnemonic, kinds)].opcode:02x}"


def expected(name: str) -> str:
    mov, dec, jne = op("mov", "r", "i"), op("dec", "r"), op("jne", "rel")
    return textwrap.dedent(f"""\
             1                                       ; demo listing
             2                                       bits 32
             3              = 0x00000003             N equ 3
             4                                       %macro twice 1
             5                                           db %1, %1
             6                                       %endmacro
             7                                       org 0x1000
             8     00001000                          _start:
             9     00001000 {mov} 00 03 00 00 00            mov eax, N
            10     00001006 {dec} 00                    .loop: dec eax
            11     00001008 {jne} f9 ff ff ff               jnz .loop
            12     0000100d 68 69 00                 msg: db "hi", 0
            13                                           twice 7
             5 <1> 00001010 07 07                        db 7, 7
            14     00001012 ab ab ab ab ab ab ab ab      times 20 db 0xAB
                   0000101a ab ab ab ab ab ab ab ab
                   00001022 ab ab ab ab
            15                                       section .bss
            16     00001028 <res 0x40>               buf: resb 64

        ;; section .text at 0x00001000: 0x26 bytes (progbits)
        ;; section .bss at 0x00001028: 0x40 bytes (nobits)
        ;; entry _start = 0x00001000
        """)


def test_listing_of_a_program():
    assert source_listing(assemble(SOURCE, "demo.s", listing=True)) == expected("demo.s")


def test_emu_asm_prints_the_listing(tmp_path, capsys):
    src = tmp_path / "demo.s"
    src.write_text(SOURCE)
    assert main(["asm", str(src)]) == 0
    assert capsys.readouterr().out == expected(str(src))


def test_a_long_data_line_is_cut_after_four_rows():
    text = source_listing(assemble("_start: times 100 db 1\n", "x.s", listing=True))
    rows = text.splitlines()
    assert rows[0] == f"{1:>6}     00000000 {'01 ' * 7}01  _start: times 100 db 1"
    assert rows[3] == f"{'':10} 00000018 {'01 ' * 7}01"
    assert rows[4] == f"{'':10} {'':8} ... 100 bytes"


def test_an_included_file_is_named_where_its_lines_start(tmp_path):
    (tmp_path / "k.inc").write_text("K equ 1\n")
    src = tmp_path / "main.s"
    src.write_text('%include "k.inc"\n_start: db K\n')
    text = source_listing(assemble(src.read_text(), str(src), listing=True))
    assert text.splitlines()[:4] == [
        f"{1:>6}{'':39}%include \"k.inc\"",
        f";; {tmp_path}/k.inc",
        f"{1:>6}              = 0x00000001             K equ 1",
        f";; {src}",
    ]


def test_a_package_of_use_is_not_listed_as_in_nasm():
    text = source_listing(assemble("%use ifunc\n_start: db ilog2(64)\n", "u.s",
                                   listing=True))
    assert text.splitlines()[:2] == [
        f"{1:>6}{'':39}%use ifunc",
        f"{2:>6}     00000000 06{'':23}_start: db ilog2(64)",
    ]


def test_a_section_loaded_elsewhere_names_both_addresses():
    text = source_listing(assemble(
        "_start: nop\nsection hi start=0x2000 vstart=0x400000\nx: dd x\n", "v.s",
        listing=True))
    assert ";; section hi at 0x00002000, labels from 0x00400000: 0x4 bytes (progbits)" \
        in text.splitlines()
    assert f"{3:>6}     00400000 00 00 40 00{'':14}x: dd x" in text.splitlines()


def test_a_listing_stops_at_its_limit_and_says_so(monkeypatch):
    from emu.asm import preproc
    monkeypatch.setattr(preproc, "MAX_ROWS", 3)
    image = assemble("_start:\nnop\nnop\nnop\nnop\n", "x.s", listing=True)
    assert image.size == 4
    assert source_listing(image).splitlines()[3:5] == [
        ";; the listing stops after 3 lines (the rest was assembled)", ""]


def test_a_struc_lists_each_fields_offset_and_the_size():
    source = ("struc proc, 4\n"
              ".pid: resd 1\n"
              ".name: resb 5\n"
              "       alignb 4\n"
              ".state resd 1\n"
              "endstruc\n"
              "_start: dd proc.state\n")
    text = source_listing(assemble(source, "s.s", listing=True))
    assert [line[:40].split() for line in text.splitlines()[:6]] == [
        ["1", "=", "0x00000004"], ["2", "=", "0x00000004"], ["3", "=", "0x00000008"],
        ["4"], ["5", "=", "0x00000010"], ["6", "=", "0x00000010"]]
