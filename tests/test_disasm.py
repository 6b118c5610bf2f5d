"""Tests of the disassembler and listing (emu.asm.disasm), and the round trip
encode -> decode -> format_insn -> assemble for every row of the ISA table."""

from __future__ import annotations

import textwrap

import pytest

from emu import isa
from emu.asm import Line, assemble, disassemble, format_listing

ADDR = 0x4000

# Sample values per operand kind, by operand position (first, second, third).
_SAMPLES = {
    "r": (isa.EBX, isa.ESI),
    "b": (isa.EDX, isa.EBX + 4),        # dl, bh
    "c": (3, 0),                        # cr3, cr0
    "w": (isa.ECX, isa.EDI),            # cx, di
    "i": (0x12345678, 0xFFFFFFF0, 0x80000001),
    "i16": (0xBEEF, 0x7F),
    "i8": (0xAB, 0x7F, 0x1F),
    "m": (isa.Mem(isa.EBX, isa.ESI, 4, -8),) * 2,
    "mb": (isa.Mem(isa.EBP, None, 1, 0x10, True),) * 2,
    "rel": (-0x20, 0x40),
    "cl": (isa.ECX,) * 3,
    "dx": (isa.EDX,) * 2,
    "al": (isa.EAX,) * 2,
}


def _reassemble(text: str, addr: int = ADDR) -> bytes:
    img = assemble(f"org {addr:#x}\n{text}\n")
    return img.segments[0][1] if img.segments else b""


def _decode(data: bytes, addr: int = ADDR) -> isa.Decoded:
    return isa.decode(lambda a: data[a - addr], addr)


@pytest.mark.parametrize("row", isa.TABLE, ids=lambda r: f"{r.mnemonic}({r.form})")
def test_round_trip_every_row(row):
    args = tuple(_SAMPLES[k][i] for i, k in enumerate(row.operands))
    data = isa.encode(row, args)
    d = _decode(data)
    assert d.insn == row and d.length == len(data)
    text = isa.format_insn(d, ADDR)
    assert _reassemble(text) == data, text


def test_prefixed_strings_and_loops_print_their_canonical_names():
    # What NASM accepts under other names comes back as one spelling, which
    # assembles to the same bytes.
    source = ("x: rep cmpsb\nrepz scasd\nrepnz cmpsd\nrepne scasb\nrepe movsd\n"
              "loopz x\nloopnz x\nscasb\ncmpsd\n")
    data = _reassemble(source)
    lines = disassemble(lambda a: data[a - ADDR], ADDR, ADDR + len(data), {"x": ADDR})
    texts = [line.text for line in lines]
    assert texts == ["repe cmpsb", "repe scasd", "repne cmpsd", "repne scasb", "rep movsd",
                     "loope x", "loopne x", "scasb", "cmpsd"]
    assert _reassemble("x: " + "\n".join(texts)) == data


def test_int3_pause_and_the_new_forms_print_as_nasm_writes_them():
    source = ("int3\nint 3\npause\ncbw\ncwde\nbsf eax, [ebx + 8]\nshld [esi], edi, cl\n"
              "shrd eax, edx, 31\nrcl dword [eax], 1\nrcr byte [eax], cl\nrcl bh, 9\n")
    data = _reassemble(source)
    lines = disassemble(lambda a: data[a - ADDR], ADDR, ADDR + len(data))
    assert [line.text for line in lines] == [
        "int3", "int 3", "pause", "cbw", "cwde", "bsf eax, [ebx + 0x8]",
        "shld [esi], edi, cl", "shrd eax, edx, 0x1f", "rcl dword [eax], 1",
        "rcr byte [eax], cl", "rcl bh, 9"]
    assert _reassemble("\n".join(line.text for line in lines)) == data


@pytest.mark.parametrize("mem", [
    isa.Mem(None, None, 1, 0x1234),
    isa.Mem(None, None, 1, -4),
    isa.Mem(isa.EAX, None, 1, 0),
    isa.Mem(isa.ESP, None, 1, 0x7FFFFFFF),
    isa.Mem(isa.EBP, None, 1, -0x80000000),
    isa.Mem(isa.EDI, isa.ECX, 1, 0),
    isa.Mem(isa.EDI, isa.ECX, 2, 4),
    isa.Mem(None, isa.EDX, 8, 0),
    isa.Mem(None, isa.EDX, 4, -12),
])
def test_round_trip_every_memory_form(mem):
    row = isa.BY_KEY[("mov", ("r", "m"))]
    data = isa.encode(row, (isa.EAX, mem))
    text = isa.format_insn(_decode(data), ADDR)
    assert _reassemble(text) == data, text


_PROGRAM = textwrap.dedent("""\
    org 0x1000
    _start:
        mov ecx, 3
    .again:
        dec ecx
        jnz .again
        call done
    done:
        hlt
""")


def _lines(source: str) -> list[Line]:
    img = assemble(source)
    start, data = img.segments[0]
    return disassemble(lambda a: data[a - start], start, start + len(data), img.labels)


def test_disassembly_names_branch_targets_and_labels():
    lines = _lines(_PROGRAM)
    assert [(ln.addr, ln.text, ln.label) for ln in lines] == [
        (0x1000, "mov ecx, 3", "_start"),
        (0x1006, "dec ecx", "_start.again"),
        (0x1008, "jne _start.again", None),
        (0x100D, "call done", None),
        (0x1012, "hlt", "done"),
    ]


def test_disassembly_keeps_the_instruction_bytes():
    line = _lines("mov eax, 0x11223344")[0]
    assert line.bytes == bytes([isa.BY_KEY[("mov", ("r", "i"))].opcode, 0x00,
                                0x44, 0x33, 0x22, 0x11])


def test_undecodable_bytes_are_db_lines():
    lines = disassemble(lambda a: 0x00, 0x10, 0x12)
    assert [(ln.addr, ln.bytes, ln.text) for ln in lines] == [
        (0x10, b"\x00", "db 0x00"), (0x11, b"\x00", "db 0x00")]


def test_an_instruction_cut_by_the_end_of_the_range_is_db():
    data = bytes([isa.BY_KEY[("push", ("i",))].opcode, 0, 0])
    lines = disassemble(lambda a: data[a], 0, len(data))
    assert [ln.text for ln in lines] == [f"db {data[0]:#04x}", "db 0x00", "db 0x00"]


def test_decoding_resynchronises_at_a_label():
    # The 0x02 byte would start a 6-byte "mov r, i" swallowing label "code".
    lines = _lines("db 2\ncode: nop")
    assert [(ln.text, ln.label) for ln in lines] == [("db 0x02", None), ("nop", "code")]


def test_disassembly_reads_only_the_range():
    seen = []

    def read(a):
        seen.append(a)
        return isa.BY_KEY[("nop", ())].opcode

    disassemble(read, 5, 7)
    assert min(seen) == 5 and max(seen) == 6


def test_listing_format():
    listing = format_listing(assemble(_PROGRAM + "section data start=0x2000\nmsg: db 0\nend:\n"))
    assert listing == textwrap.dedent("""\
        _start:
          0x00001000  02 10 03 00 00 00                 mov ecx, 3
        _start.again:
          0x00001006  41 10                             dec ecx
          0x00001008  69 f9 ff ff ff                    jne _start.again
          0x0000100d  72 00 00 00 00                    call done
        done:
          0x00001012  79                                hlt

        msg:
          0x00002000  00                                db 0x00
        end:
    """)


def test_listing_of_an_empty_image_is_empty():
    assert format_listing(assemble("; nothing")) == ""


def test_data_lines_are_one_line_each_unless_the_cpu_is_in_them():
    image = assemble(textwrap.dedent("""\
        org 0x1000
        _start: nop
        msg: db "0123456789abcdefghi", 0
        tail: dd 5
        """), "<d>")
    (start, blob), = image.segments
    lengths = image.data_lengths()
    assert lengths == {0x1001: 20, 0x1015: 4}

    def lines(**kw):
        return disassemble(lambda a: blob[a - start], start, start + len(blob),
                           image.labels, lengths, **kw)
    got = lines()
    assert [(ln.addr, ln.text, ln.label) for ln in got] == [
        (0x1000, "nop", "_start"),
        (0x1001, "db 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, ...", "msg"),
        (0x1015, "db 0x05, 0x00, 0x00, 0x00", "tail")]
    assert got[1].bytes == b"0123456789abcdefghi\0"
    # the bytes column keeps its width: the rest of a long data line is '...'
    wide = str(got[1])
    assert wide.index("db 0x30") == str(got[0]).index("nop")
    assert "..." in wide.split("db")[0]
    # where the CPU is inside a data line, its bytes are decoded as code
    kept = lines(keep=0x1003)
    assert got[1].text not in [ln.text for ln in kept]
    assert (0x1015, "db 0x05, 0x00, 0x00, 0x00") in [(ln.addr, ln.text) for ln in kept]
    # a data line that does not end inside the range is decoded too
    assert disassemble(lambda a: blob[a - start], start, start + 5, image.labels,
                       lengths)[1].text != got[1].text
