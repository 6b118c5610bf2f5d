"""Tests of the assembler (emu.asm): encodings, the language, errors, fuzzing.

Expected bytes are written out in full; only the opcode byte is looked up in
the ISA table (``op(...)``), since it is the row's position there.
"""

from __future__ import annotations

import random
import textwrap

import pytest

from emu import isa
from emu.asm import Image, assemble, assemble_file
from emu.errors import AsmError


def op(mnemonic: str, *kinds: str) -> int:
    """The opcode byte of the row (mnemonic, kinds)."""
    return isa.BY_KEY[(mnemonic, kinds)].opcode


def asm(source: str, **kw) -> Image:
    return assemble(textwrap.dedent(source), **kw)


def code(source: str) -> bytes:
    """The bytes of a program that makes one segment."""
    img = asm(source)
    assert len(img.segments) == 1
    return img.segments[0][1]


def error(source: str, **kw) -> AsmError:
    with pytest.raises(AsmError) as info:
        asm(source, **kw)
    return info.value


def d32(v: int) -> bytes:
    return (v & 0xFFFFFFFF).to_bytes(4, "little")


# --- encodings: registers and immediates ------------------------------------

def test_mov_reg_reg_packs_both_registers_in_one_byte():
    assert code("mov ecx, edx") == bytes([op("mov", "r", "r"), 0x12])


def test_mov_reg_imm32_is_little_endian():
    assert code("mov eax, 0x12345678") == bytes([op("mov", "r", "i"), 0x00]) + d32(0x12345678)


def test_negative_imm32_is_twos_complement():
    assert code("mov edi, -2") == bytes([op("mov", "r", "i"), 0x70]) + d32(0xFFFFFFFE)


def test_mnemonics_and_registers_ignore_case():
    assert code("MOV EcX, EDX") == code("mov ecx, edx")


def test_byte_registers_select_the_byte_form():
    assert code("mov bh, al") == bytes([op("mov", "b", "b"), 0x70])


def test_imm8_with_byte_register():
    assert code("mov al, 0xFF") == bytes([op("mov", "b", "i8"), 0x00, 0xFF])


def test_negative_imm8_is_masked_to_a_byte():
    assert code("mov dl, -1") == bytes([op("mov", "b", "i8"), 0x20, 0xFF])


def test_int_takes_an_imm8():
    assert code("int 0x80") == bytes([op("int", "i8"), 0x80])


def test_push_imm32():
    assert code("push 0x10") == bytes([op("push", "i")]) + d32(0x10)


def test_dword_before_an_immediate_changes_nothing():
    assert code("push dword 0x10") == code("push 0x10")


def test_a_size_before_a_register_of_that_size_changes_nothing():
    # NASM accepts the size a register already has ("push dword eax").
    assert code("push dword eax") == code("push eax")
    assert code("mov dword ptr ebx, dword ecx") == code("mov ebx, ecx")
    assert code("mov byte al, 5") == code("mov al, 5")
    assert code("add byte [eax], byte bl") == code("add [eax], bl")
    assert str(error("push dword al")) == \
        "<input>:1:12: error: 'dword' does not fit register 'al'"


def test_esp_is_never_an_index():
    # x86 cannot encode esp as an index: unscaled it is the base, as NASM
    # assembles it; scaled (or esp+esp) NASM refuses the address, and so do we.
    assert code("mov eax, [eax+esp]") == code("mov eax, [esp+eax]")
    # [esp*1+8] is [esp+8] (encoded as esp times 1: the length its syntax gives)
    star, plain = (isa.decode(code(t).__getitem__, 0).args[1]
                   for t in ("mov eax, [esp*1+8]", "mov eax, [esp+8]"))
    assert ({star.base, star.index} - {None}, star.scale, star.disp) == (
        {plain.base, plain.index} - {None}, plain.scale, plain.disp) == ({isa.ESP}, 1, 8)
    for bad in ("[eax+esp*2]", "[esp*4]", "[esp+esp]"):
        assert str(error(f"mov eax, {bad}")) == (
            "<input>:1:10: error: bad memory operand: esp cannot be an index register "
            "(scaled, or added to itself): x86 has no such address")


def test_a_sized_immediate_as_nasm_reads_it():
    # 'byte' on an immediate: NASM's sign-extended imm8 in a 32-bit operation;
    # a size on the immediate sizes an unsized memory operand.
    assert code("push byte -1") == code("push 0xffffffff")
    assert code("add eax, byte 5") == code("add eax, 5")
    assert code("add dword [eax], byte -2") == code("add dword [eax], -2")
    assert code("mov al, byte 5") == code("mov al, 5")
    assert code("mov [eax], byte 5") == code("mov byte [eax], 5")
    assert code("cmp [eax], byte 5") == code("cmp byte [eax], 5")
    assert code("mov [eax], dword 5") == code("mov dword [eax], 5")


def test_short_and_near_are_a_branch_target_s_reach():
    # Every branch reaches everywhere here (rel32): NASM's 'short' and 'near'
    # change nothing on a branch, and are no immediate elsewhere.
    src = "org 0x1000\n_start: jmp {}_start\njz {}_start\ncall {}_start\n"
    assert code(src.format("short ", "short ", "near ")) == code(src.format("", "", ""))
    assert str(error("mov eax, short 5")).startswith(
        "<input>:1:1: error: no form of 'mov' takes (r32, short imm); forms: ")


def test_a_short_branch_out_of_reach_is_an_error_as_in_nasm():
    # 'short' says the target is near: -128..127 bytes from the next
    # instruction, both ends included (a jmp is 5 bytes here).
    near = "org 0x1000\n_start: jmp short there\ntimes {} nop\nthere: hlt\n"
    assert code(near.format(127)) == code(near.replace("short ", "").format(127))
    e = error(near.format(128))
    assert str(e) == ("<input>:2:19: error: short jump is out of range: the target is 128 "
                      "bytes from the next instruction (a short branch reaches -128..127)")
    back = "org 0x1000\n_start: hlt\nhere: times {} nop\njz short here\n"
    jz = len(code("jz 0"))
    code(back.format(128 - jz))
    assert "the target is -129 bytes" in str(error(back.format(129 - jz)))
    # without 'short' any distance is fine; 'near' never limits it
    code(near.replace("short", "near").format(5000))


def test_iretd_is_iret():
    assert code("iretd") == code("iret")


def test_control_register_read_and_write():
    assert code("mov cr3, eax\nmov ebx, cr0") == bytes(
        [op("mov", "c", "r"), 0x30, op("mov", "r", "c"), 0x30])


def test_shift_by_cl_uses_the_cl_form():
    assert code("shl esi, cl") == bytes([op("shl", "r", "cl"), 0x60])


def test_shift_by_constant_uses_imm8():
    assert code("shr ebx, 3") == bytes([op("shr", "r", "i8"), 0x30, 0x03])


def test_in_from_dx_and_out_to_imm8_port():
    assert code("in eax, dx\nout 0xE9, ecx") == bytes(
        [op("in", "r", "dx"), 0x00, op("out", "i8", "r"), 0x10, 0xE9])


def test_out_to_dx():
    assert code("out dx, eax") == bytes([op("out", "dx", "r"), 0x00])


def test_no_operand_instruction():
    assert code("nop\nret\nhlt") == bytes([op("nop"), op("ret"), op("hlt")])


def test_rep_prefix_makes_the_rep_row():
    assert code("rep movsd\nREP STOSB") == bytes([op("rep movsd"), op("rep stosb")])


@pytest.mark.parametrize("insn", ["cmpsb", "cmpsd", "scasb", "scasd"])
def test_repeat_prefixes_of_cmps_and_scas(insn):
    # NASM: rep, repe and repz are the one prefix F3 (on cmps and scas, repe);
    # repne and repnz are F2.
    repe, repne = isa.BY_KEY[(f"repe {insn}", ())].code, isa.BY_KEY[(f"repne {insn}", ())].code
    assert code(f"rep {insn}\nrepe {insn}\nRepZ {insn.upper()}") == repe * 3
    assert code(f"repne {insn}\nrepnz {insn}") == repne * 2
    assert code(insn) == isa.BY_KEY[(insn, ())].code
    assert len({repe, repne, code(insn)}) == 3


def row_code(mnemonic: str, *kinds: str) -> bytes:
    """The opcode bytes of a row (two on page 2)."""
    return isa.BY_KEY[(mnemonic, kinds)].code


def test_bit_scans_take_a_register_or_memory_source():
    assert code("bsf ecx, edx\nBSR eax, [ebx + 4]") == (
        row_code("bsf", "r", "r") + bytes([0x12])
        + row_code("bsr", "r", "m") + bytes([0x00, 0xB0]) + d32(4))


def test_double_shifts_take_an_imm8_or_cl_count():
    assert code("shld eax, ebx, 3\nshrd [esi], edi, cl\nshrd dword [esi], edi, 0x1F") == (
        row_code("shld", "r", "r", "i8") + bytes([0x03, 3])
        + row_code("shrd", "m", "r", "cl") + bytes([0x70, 0xE0]) + d32(0)
        + row_code("shrd", "m", "r", "i8") + bytes([0x70, 0xE0]) + d32(0) + bytes([0x1F]))


def test_rotates_through_carry_have_the_forms_of_rol():
    assert code("rcl edx, 1\nrcr bh, cl\nrcl byte [eax], 9\nrcr dword [eax], cl") == (
        row_code("rcl", "r", "i8") + bytes([0x20, 1])
        + row_code("rcr", "b", "cl") + bytes([0x70])
        + row_code("rcl", "mb", "i8") + bytes([0x80]) + d32(0) + bytes([9])
        + row_code("rcr", "m", "cl") + bytes([0x80]) + d32(0))
    assert {r.operands for r in isa.FORMS["rcl"]} == {r.operands for r in isa.FORMS["rol"]}


def test_cbw_cwde_pause_and_int3_are_their_own_rows():
    assert code("cbw\ncwde\npause\nint3") == b"".join(
        row_code(mn) for mn in ("cbw", "cwde", "pause", "int3"))
    assert code("int 3") == bytes([op("int", "i8"), 3])       # the same effect, two rows


# --- encodings: memory operands ---------------------------------------------

def test_mem_absolute():
    # M byte 0x00: no base, no index
    assert code("mov eax, [0x2000]") == bytes([op("mov", "r", "m"), 0x00, 0x00]) + d32(0x2000)


def test_mem_base_register():
    # M = 0x80 | ebx << 4
    assert code("mov eax, [ebx]") == bytes([op("mov", "r", "m"), 0x00, 0xB0]) + d32(0)


def test_mem_base_plus_disp():
    assert code("mov eax, [ebp + 8]") == bytes([op("mov", "r", "m"), 0x00, 0xD0]) + d32(8)


def test_mem_base_minus_disp():
    assert code("mov eax, [ebp - 4]") == bytes([op("mov", "r", "m"), 0x00, 0xD0]) + d32(-4)


def test_mem_base_index_scale_disp():
    # M = 0x80 | ebx << 4 | 0x08 | esi ; S = log2(4)
    want = bytes([op("mov", "r", "m"), 0x00, 0xBE, 0x02]) + d32(0x10)
    assert code("mov eax, [ebx + esi*4 + 0x10]") == want


@pytest.mark.parametrize("mem", ["[0x10 + esi*4 + ebx]", "[4*esi + ebx + 0x10]",
                                 "[ebx + 0x8 + esi*4 + 8]", "[ESI*4 + EBX + 16]"])
def test_mem_terms_in_any_order(mem):
    assert code(f"mov eax, {mem}") == code("mov eax, [ebx + esi*4 + 0x10]")


def test_mem_two_plain_registers_are_base_and_index():
    # M = 0x80 | eax << 4 | 0x08 | ecx ; S = 0 (scale 1)
    assert code("mov edx, [eax + ecx]") == bytes([op("mov", "r", "m"), 0x20, 0x89, 0x00]) + d32(0)


def test_mem_index_without_base():
    assert code("lea eax, [esi*8 + 3]") == bytes([op("lea", "r", "m"), 0x00, 0x0E, 0x03]) + d32(3)


def test_mem_scale_may_be_a_constant_expression():
    assert code("S equ 2\nmov eax, [ebx + esi*S]") == code("mov eax, [ebx + esi*2]")


def test_mem_store_register():
    assert code("mov [edi], ecx") == bytes([op("mov", "m", "r"), 0x10, 0xF0]) + d32(0)


def test_mem_immediate_store_needs_a_size():
    assert code("mov dword [eax], 5") == bytes([op("mov", "m", "i"), 0x80]) + d32(0) + d32(5)
    assert error("mov [eax], 5").message == "operation size not specified; write `dword [eax]`"


def test_byte_size_selects_the_byte_form():
    assert code("mov byte [eax], 5") == bytes([op("mov", "mb", "i8"), 0x80]) + d32(0) + b"\x05"


@pytest.mark.parametrize("prefix", ["byte ptr", "BYTE", "Byte Ptr"])
def test_byte_ptr_spellings(prefix):
    assert code(f"mov {prefix} [eax], 5") == code("mov byte [eax], 5")


def test_dword_ptr_is_dword():
    assert code("mov dword ptr [eax], 5") == code("mov dword [eax], 5")


def test_unsized_memory_with_a_byte_register_is_a_byte():
    assert code("mov [eax], cl") == bytes([op("mov", "mb", "b"), 0x10, 0x80]) + d32(0)
    assert code("mov al, [ecx]") == bytes([op("mov", "b", "mb"), 0x00, 0x90]) + d32(0)


def test_movzx_from_byte_memory():
    assert code("movzx eax, byte [ebx]") == bytes([op("movzx", "r", "mb"), 0x00, 0xB0]) + d32(0)


def test_memory_displacement_may_be_a_label():
    want = bytes([op("mov", "r", "m"), 0x00, 0x09, 0x02]) + d32(0x2000)
    assert asm("org 0x2000\ntable:\nmov eax, [table + ecx*4]").segments[0][1] == want


# --- branches -----------------------------------------------------------------

def test_jump_to_itself_is_minus_five():
    assert code("jmp $") == bytes([op("jmp", "rel")]) + d32(-5)


def test_backward_label():
    # top: nop ; jmp top  -> rel = 0 - 6
    assert code("top: nop\njmp top") == bytes([op("nop"), op("jmp", "rel")]) + d32(-6)


def test_forward_label():
    # call f ; nop ; f: ret  -> rel = 6 - 5
    assert code("call f\nnop\nf: ret") == bytes(
        [op("call", "rel")]) + d32(1) + bytes([op("nop"), op("ret")])


def test_jcc_aliases_encode_like_their_target():
    assert code("x: jz x\njnc x") == code("x: je x\njae x")


def test_loop_takes_a_rel():
    assert code("l: loop l") == bytes([op("loop", "rel")]) + d32(-5)


def test_loope_and_loopne_take_a_rel_and_their_z_names():
    page2 = isa.BY_KEY[("loope", ("rel",))].code
    assert code("l: loope l") == page2 + d32(-6)
    assert code("l: loopz l\nloopnz l") == code("l: loope l\nloopne l")


def test_jump_through_register_and_memory():
    assert code("jmp eax\njmp [ebx]") == bytes(
        [op("jmp", "r"), 0x00, op("jmp", "m"), 0xB0]) + d32(0)


# --- labels, symbols, constants -------------------------------------------------

def test_labels_get_their_addresses_and_entry_is_start():
    img = asm("""
        org 0x1000
        data: dd 0
        _start: nop
    """)
    assert img.labels == {"data": 0x1000, "_start": 0x1004}
    assert img.entry == 0x1004


def test_entry_defaults_to_the_lowest_segment():
    assert asm("section b start=0x3000\nnop\nsection a start=0x2000\nnop").entry == 0x2000


def test_local_labels_are_scoped_to_the_previous_label():
    img = asm("""
        f:  jmp .done
        .done: ret
        g:  jmp .done
        .done: ret
            jmp f.done
    """)
    assert img.labels == {"f": 0, "f.done": 5, "g": 6, "g.done": 11}
    assert img.segments[0][1][12:17] == bytes([op("jmp", "rel")]) + d32(5 - 17)


def test_label_alone_or_before_a_statement():
    img = asm("a: nop\nb:\n  nop")
    assert img.labels == {"a": 0, "b": 1}
    assert img.segments == ((0, bytes([op("nop")] * 2)),)


def test_a_label_may_be_named_like_a_mnemonic():
    assert asm("loop: loop loop").labels == {"loop": 0}


def test_equ_does_not_open_a_local_scope():
    assert asm("f: nop\nK equ 1\n.x: nop").labels == {"f": 0, "f.x": 1}


def test_semicolon_in_a_string_is_not_a_comment():
    assert code('db ";", 1 ; a comment') == b";\x01"


def test_symbols_are_case_sensitive():
    img = asm("Foo: nop\nfoo: nop")
    assert img.labels == {"Foo": 0, "foo": 1}


def test_equ_may_refer_to_a_later_label():
    img = asm("""
        SIZE equ end - start
        start: dd SIZE
        end:
    """)
    assert img.symbols["SIZE"] == 4
    assert img.segments[0][1] == d32(4)
    assert "SIZE" not in img.labels


def test_equ_with_dollar_measures_a_string():
    img = asm('msg: db "hello"\nlen equ $ - msg\ndd len')
    assert img.symbols["len"] == 5
    assert img.segments[0][1][5:] == d32(5)


def test_equ_after_a_label_colon():
    assert asm("N: equ 7").symbols == {"N": 7}


def test_equ_constants_chain():
    assert asm("a equ b + 1\nb equ c * 2\nc equ 3").symbols == {"a": 7, "b": 6, "c": 3}


# --- expressions --------------------------------------------------------------

@pytest.mark.parametrize("expr, value", [
    ("1 + 2 * 3", 7),
    ("(1 + 2) * 3", 9),
    ("1 << 2 + 1", 8),            # + binds tighter than <<
    ("6 & 3 | 8", 10),
    ("2 ^ 3 & 1", 3),             # & before ^
    ("1 | 2 ^ 3", 1),             # ^ before |
    ("10 - 4 - 3", 3),            # left associative
    ("100 / 10 / 5", 2),
    ("-7 // 2", -3),              # signed: truncates toward zero, like C
    ("-7 %% 2", -1),
    ("7 %% -2", 1),
    ("-7 / 2", ((1 << 64) - 7) // 2),     # / and % are unsigned, on 64 bits
    ("-7 % 2", 1),
    ("~0", -1),
    ("-(2 + 3)", -5),
    ("+4", 4),
    ("0x10 >> 2", 4),
    ("-16 >>> 2", -4),            # >>> keeps the sign, >> shifts in zeros
    ("-16 >> 2", ((1 << 64) - 16) >> 2),
    ("0FFh", 255),
    ("0b1010", 10),
    ("1_000", 1000),
    ("'A' + 1", 66),
    ("`\\n`", 10),
    ("'\\n'", 0x6E5C),             # no escapes in '...': a backslash and an n
])
def test_expression_values(expr, value):
    assert asm(f"X equ {expr}").symbols["X"] == value


def test_dollar_is_the_statement_address_and_double_dollar_the_segment_start():
    assert code("org 0x100\nnop\ndd $, $$, $ - $$") == bytes(
        [op("nop")]) + d32(0x101) + d32(0x100) + d32(1)


def test_big_intermediate_values_are_fine_when_the_result_fits():
    assert code("dd (1 << 40) >> 20") == d32(1 << 20)


# --- data directives ----------------------------------------------------------

def test_db_dw_dd_little_endian():
    assert code("db 1, -1\ndw 0x1234, -2\ndd 0xDEADBEEF") == bytes(
        [1, 0xFF, 0x34, 0x12, 0xFE, 0xFF, 0xEF, 0xBE, 0xAD, 0xDE])


def test_db_strings_and_escapes():
    assert code(r'db `a\n\t\r\0\\\"\x41`, 0') == b'a\n\t\r\0\\"A\0'
    assert code(r'db "a\n", 0') == b"a\\n\0"      # '...' and "..." are taken literally


def test_db_single_quoted_string_and_char():
    assert code("db 'hi', 'x' + 1, \"\"") == b"hiy"


def test_db_utf8_text_is_encoded_as_utf8():
    assert code('db "é"') == "é".encode()


def test_dd_char_literal():
    assert code("dd 'A'") == d32(65)


def test_dd_label_address():
    assert code("org 0x400\nhere: dd here") == d32(0x400)


# --- times and align ------------------------------------------------------------

def test_times_data():
    assert code("times 3 db 0xAA") == b"\xAA" * 3


def test_times_instruction():
    assert code("times 2 nop") == bytes([op("nop")] * 2)


def test_times_zero_emits_nothing():
    assert asm("times 0 nop").segments == ()


def test_times_dollar_is_the_address_of_the_line():
    # As in NASM: every repetition sees the same $.
    assert code("org 0x10\ntimes 2 dd $") == d32(0x10) * 2


def test_times_jumps_each_to_the_start_of_the_line():
    jmp = bytes([op("jmp", "rel")])
    assert code("times 2 jmp $") == jmp + d32(-5) + jmp + d32(-10)


def test_times_pads_a_boot_sector():
    img = asm("org 0x7C00\nnop\ntimes 510 - ($ - $$) db 0\ndw 0xAA55")
    assert img.size == 512 and img.segments[0][1][-2:] == b"\x55\xAA"


def test_times_records_a_line_per_instruction():
    img = asm("org 0x10\ntimes 3 nop")
    src = ("<input>", 2, "times 3 nop")
    assert img.lines == {0x10: src, 0x11: src, 0x12: src}


def test_align_pads_with_nop():
    assert code("db 1\nalign 4\ndb 2") == b"\x01" + bytes([op("nop")] * 3) + b"\x02"


def test_align_with_a_statement_to_repeat():
    assert code("db 1\nalign 8, db 0x90") == b"\x01" + b"\x90" * 7


def test_align_when_already_aligned_adds_nothing():
    assert code("dd 1\nalign 4") == d32(1)


# --- segments -----------------------------------------------------------------

def test_sections_with_start_make_sorted_segments():
    img = asm("section b start=0x2000\ndb 2\nsection a start=0x1000\ndb 1, 1")
    assert img.segments == ((0x1000, b"\x01\x01"), (0x2000, b"\x02"))
    assert img.size == 3


def test_a_section_after_text_makes_a_new_segment():
    img = asm("org 0x100\ndb 1\nsection s start=0x104\ndb 2")
    assert img.segments == ((0x100, b"\x01"), (0x104, b"\x02"))


def test_a_section_without_output_makes_no_segment():
    assert asm("org 0x200\nsection .data\nsection .text\nnop").segments == (
        (0x200, bytes([op("nop")])),)


def test_default_origin_is_zero():
    assert asm("nop").segments == ((0, bytes([op("nop")])),)


# --- the Image ----------------------------------------------------------------

def test_image_lines_map_instructions_to_source():
    img = asm("org 0x10\n; comment\nnop\ndb 1\nret")
    assert img.lines == {0x10: ("<input>", 3, "nop"), 0x12: ("<input>", 5, "ret")}


def test_symbol_at_prefers_non_local_labels():
    img = asm("f:\n.a: nop\n.b: nop")
    assert img.symbol_at(0) == "f" and img.symbol_at(1) == "f.b"
    assert img.symbol_at(2) is None


def test_nearest_label():
    img = asm("org 0x100\nf: nop\nnop\ng: nop")
    assert img.nearest_label(0x101) == ("f", 1)
    assert img.nearest_label(0x105) == ("g", 3)
    assert img.nearest_label(0xFF) is None


def test_labels_at_and_byte_at():
    img = asm("org 0x10\nb:\na: db 7")
    assert img.labels_at(0x10) == ["a", "b"]
    assert img.byte_at(0x10) == 7 and img.byte_at(0x11) is None


def test_image_is_frozen():
    with pytest.raises(AttributeError):
        asm("nop").entry = 5  # type: ignore[misc]


# --- include -------------------------------------------------------------------

def test_include_relative_to_the_including_file(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "a.inc").write_text('%include "b.inc"\nA equ 1\n')
    (tmp_path / "lib" / "b.inc").write_text("B: db 2\n")
    main = tmp_path / "main.asm"
    main.write_text('%include "lib/a.inc"\ndb A\n')
    img = assemble_file(main, require_start=False)
    assert img.segments == ((0, b"\x02\x01"),)
    assert img.labels == {"B": 0}


def test_include_searches_include_dirs(tmp_path):
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc" / "k.inc").write_text("K equ 9\n")
    img = assemble('%include "k.inc"\ndb K', "<input>", [str(tmp_path / "inc")])
    assert img.segments == ((0, b"\x09"),)


def test_error_in_an_included_file_names_that_file(tmp_path):
    inc = tmp_path / "bad.inc"
    inc.write_text("nop\n  bogus eax\n")
    (tmp_path / "main.asm").write_text('%include "bad.inc"\n')
    with pytest.raises(AsmError) as info:
        assemble_file(tmp_path / "main.asm")
    e = info.value
    assert (e.file, e.line, e.column) == (str(inc), 2, 3)
    assert e.message == "unknown mnemonic 'bogus'"


def test_include_not_found(tmp_path):
    (tmp_path / "main.asm").write_text('nop\n%include "missing.inc"\n')
    with pytest.raises(AsmError) as info:
        assemble_file(tmp_path / "main.asm")
    e = info.value
    assert e.message.startswith("include file 'missing.inc' not found (searched: ")
    assert (e.line, e.column) == (2, 10)


def test_include_loop_names_the_chain(tmp_path):
    (tmp_path / "a.asm").write_text('%include "b.asm"\n')
    (tmp_path / "b.asm").write_text('\n%include "a.asm"\n')
    with pytest.raises(AsmError) as info:
        assemble_file(tmp_path / "a.asm")
    e = info.value
    a, b = str(tmp_path / "a.asm"), str(tmp_path / "b.asm")
    assert e.message == f"include loop: {a} -> {b} -> {a}"
    assert (e.file, e.line, e.column) == (b, 2, 10)


def test_include_depth_limit(tmp_path):
    for i in range(20):
        (tmp_path / f"f{i}.inc").write_text(f'%include "f{i + 1}.inc"\n')
    (tmp_path / "f20.inc").write_text("nop\n")
    with pytest.raises(AsmError) as info:
        assemble_file(tmp_path / "f0.inc")
    assert info.value.message == "includes nested too deeply (limit 16)"
    assert info.value.file == str(tmp_path / "f16.inc")


def test_include_of_a_directory(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "main.asm").write_text('%include "d"\n')
    with pytest.raises(AsmError) as info:
        assemble_file(tmp_path / "main.asm")
    assert "is a directory" in info.value.message
    assert info.value.line == 1


# --- assemble_file on bad files ---------------------------------------------------

def test_assemble_file_missing(tmp_path):
    with pytest.raises(AsmError) as info:
        assemble_file(tmp_path / "nope.asm")
    assert info.value.message == f"cannot open '{tmp_path / 'nope.asm'}': no such file"


def test_assemble_file_directory(tmp_path):
    with pytest.raises(AsmError) as info:
        assemble_file(tmp_path)
    assert info.value.message == f"'{tmp_path}' is a directory, not a source file"


def test_assemble_file_refuses_a_device():
    with pytest.raises(AsmError) as info:
        assemble_file("/dev/null")
    assert info.value.message == "'/dev/null' is not a regular file"


def test_assemble_file_not_utf8_points_at_the_byte(tmp_path):
    p = tmp_path / "x.asm"
    p.write_bytes(b"nop\n  db \xff\n")
    with pytest.raises(AsmError) as info:
        assemble_file(p)
    e = info.value
    assert e.message == "source is not UTF-8 text (byte 0xff)"
    assert (e.line, e.column) == (2, 6)


def test_assemble_file_nul_byte(tmp_path):
    p = tmp_path / "x.asm"
    p.write_bytes(b"nop\0")
    with pytest.raises(AsmError) as info:
        assemble_file(p)
    assert info.value.message == "source contains a NUL byte (is this a binary file?)"
    assert (info.value.line, info.value.column) == (1, 4)


def test_assemble_file_accepts_crlf_and_bom(tmp_path):
    p = tmp_path / "x.asm"
    p.write_bytes(b"\xef\xbb\xbfnop\r\nret\r\n")
    assert assemble_file(p, require_start=False).segments == (
        (0, bytes([op("nop"), op("ret")])),)


# --- error messages: text, line and column -------------------------------------------

@pytest.mark.parametrize("source, message, line, column", [
    ("nop\n  frob eax", "unknown mnemonic 'frob'", 2, 3),
    ("foo", "unknown mnemonic 'foo' (a label needs a ':' after its name)", 1, 1),
    ("mov [eax], [ebx]", "no form of 'mov' takes (m, m); forms: mov r32, r/m32 | "
     "mov r/m32, r32 | mov r/m32, imm32 | mov r8, r/m8 | mov r/m8, r8 | mov r/m8, imm8 | "
     "mov r32, cr | mov cr, r32", 1, 1),
    ("nop eax", "no form of 'nop' takes (r32); forms: nop", 1, 1),
    ("bsf eax, 5", "no form of 'bsf' takes (r32, imm); forms: bsf r32, r/m32", 1, 1),
    ("bsr [eax], ebx", "no form of 'bsr' takes (m, r32); forms: bsr r32, r/m32", 1, 1),
    ("shld eax, ebx", "no form of 'shld' takes (r32, r32); forms: shld r/m32, r32, imm8 | "
     "shld r/m32, r32, cl", 1, 1),
    ("shrd eax, ebx, edx", "no form of 'shrd' takes (r32, r32, r32); forms: "
     "shrd r/m32, r32, imm8 | shrd r/m32, r32, cl", 1, 1),
    ("shld eax, ebx, 256", "value 256 out of range for shld's 8-bit immediate (0..255)",
     1, 16),
    ("rcl eax, edx", "no form of 'rcl' takes (r32, r32); forms: rcl r/m32, imm8 | "
     "rcl r/m32, cl | rcl r/m8, imm8 | rcl r/m8, cl", 1, 1),
    ("rcr [eax], 1", "operation size not specified; write `dword [eax]`", 1, 5),
    ("int3 3", "no form of 'int3' takes (imm); forms: int3", 1, 1),
    ("movzx eax, dword [ebx]", "no form of 'movzx' takes (r32, m32); forms: "
     "movzx r32, r/m8", 1, 1),
    ("mov eax, nowhere", "undefined symbol 'nowhere'", 1, 10),
    ("mov eax, [ebx + 4 * nowhere]", "undefined symbol 'nowhere'", 1, 21),
    ("f: nop\n jmp .x", "undefined symbol 'f.x'", 2, 6),
    ("a: nop\na: nop", "duplicate label 'a' (first defined at <input>:1, with another "
     "value)", 2, 1),
    ("a equ 1\na equ 2", "duplicate symbol 'a' (first defined at <input>:1, with another "
     "value)", 2, 1),
    ("section .data\nx:\nsection .text\nx:", "duplicate label 'x' (first defined at "
     "<input>:2, with another value)", 4, 1),
    ("mov al, 256", "value 256 out of range for an 8-bit immediate (-256..255)", 1, 9),
    ("mov al, -257", "value -257 out of range for an 8-bit immediate (-256..255)", 1, 9),
    ("int -1", "value -1 out of range for int's 8-bit immediate (0..255)", 1, 5),
    ("shl eax, -1", "value -1 out of range for shl's 8-bit immediate (0..255)", 1, 10),
    ("ret -65537", "value -0x10001 out of range for a 16-bit immediate (-65536..65535)", 1, 5),
    ("out 0x100, al", "port 256 out of range for out's immediate port (0..255): put a "
     "higher port in dx", 1, 5),
    ("in eax, -1", "port -1 out of range for in's immediate port (0..255): put a "
     "higher port in dx", 1, 9),
    ("mov eax, 1 << 32", "value 0x100000000 out of range for a 32-bit immediate "
     "(-4294967295..4294967295)", 1, 10),
    ("jmp -1", "value -1 out of range for a branch target (0x0..0xffffffff)", 1, 5),
    ("db 1, 256", "value 256 out of range for db (-256..255)", 1, 7),
    ("db -257", "value -257 out of range for db (-256..255)", 1, 4),
    ("dw 65536", "value 65536 out of range for dw (-65536..65535)", 1, 4),
    ("dd 0x1_0000_0000", "value 4294967296 out of range for dd "
     "(-4294967296..4294967295)", 1, 4),
    ("mov eax, [0x100000000]", "value 0x100000000 out of range for a displacement "
     "(-4294967295..4294967295)", 1, 10),
    ("dd 12ab", "bad number '12ab'", 1, 4),
    ("dd 0xg", "bad number '0xg'", 1, 4),
    ("dd 0b102", "bad number '0b102'", 1, 4),
    ("dd 0x1" + "0" * 16, "number '0x10000000000000000' too large "
     "(literals must be below 2**64)", 1, 4),
    ('db "abc', "unterminated string", 1, 4),
    ("dd 'a", "unterminated string", 1, 4),
    (r'db `\q`', "unknown escape '\\q'", 1, 5),
    (r'db `\u12`', "bad escape: \\u needs 4 hex digits", 1, 5),
    ("dd 'abcdefghi' + 1", "a character constant holds at most 8 bytes "
     "(longer strings only in db, dw, dd and dq)", 1, 4),
    ("mov eax, [ebx", "expected ']' to close the memory operand, found end of line", 1, 14),
    ("mov eax, [eax + ebx + ecx]", "bad memory operand: at most two registers", 1, 23),
    ("mov eax, [eax*2 + ebx*4]", "bad memory operand: only one register can be scaled",
     1, 19),
    ("mov eax, [ebx - ecx]", "bad memory operand: a register cannot be subtracted", 1, 17),
    ("mov eax, [ebx * ecx]", "bad memory operand: registers can only be added, or "
     "multiplied by a scale", 1, 17),
    ("mov eax, [al]", "bad memory operand: 'al' is not a 32-bit register", 1, 11),
    ("mov eax, [ebx*7]", "scale must be 1, 2, 4 or 8 (or 3, 5 or 9: [r + r*2], [r + r*4], "
     "[r + r*8]), not 7", 1, 15),
    ("mov eax, [ebx + eax*7]", "scale must be 1, 2, 4 or 8, not 7", 1, 21),
    ("mov eax, [eax*3 + ebx]", "scale must be 1, 2, 4 or 8, not 3", 1, 15),
    ("mov eax, [eax - eax + 5]", "bad memory operand: its registers cancel out (write the "
     "number alone)", 1, 11),
    ("mov eax, [eax*2 - eax*3]", "bad memory operand: a register cannot be subtracted", 1, 19),
    ("mov eax, [esp*3]", "bad memory operand: esp cannot be an index register (scaled, or "
     "added to itself): x86 has no such address", 1, 10),
    ("mov eax, ebx + 1", "register 'ebx' cannot be used in an expression", 1, 10),
    ("mov ds, eax", "register 'ds' is not supported (segment registers are fixed)", 1, 5),
    ("mov cr1, eax", "register 'cr1' is not supported "
     "(the control registers are cr0 cr2 cr3 cr4)", 1, 5),
    ("mov byte eax, 1", "'byte' does not fit register 'eax'", 1, 10),
    ("push byte 200", "value 200 out of range for a sign-extended 8-bit immediate "
     "(-128..127)", 1, 11),
    ("push word 1", "'word' is not supported (sizes are byte and dword)", 1, 6),
    ("align 6", "align 6 is not a power of two", 1, 7),
    ("align 0", "align 0 is not a power of two", 1, 7),
    ("align 4, 256", "expected a mnemonic or directive, found '256'", 1, 10),
    ("section a start=0x100\ndb 1, 2\nsection b start=0x101\ndb 3", "sections 'a' "
     "(0x100..0x101) and 'b' (0x101..0x101) overlap", 3, 1),
    ("section a start=0x10\nnop\nsection b start=0x10\ndb 1", "sections 'a' "
     "(0x10..0x10) and 'b' (0x10..0x10) overlap", 3, 1),          # (the same span)
    ("section x nobits start=0x100\nresb 4\nsection y nobits start=0x100\nresb 4",
     "sections 'x' (0x100..0x103) and 'y' (0x100..0x103) overlap", 3, 1),
    ("nop\nsection a follows=b\ndb 1\nsection b follows=a\ndb 2",
     "sections follow one another in a loop: 'a' follows 'b' follows 'a'", 2, 1),
    ("nop\nsection a follows=a\ndb 1", "section 'a' follows itself", 2, 1),
    ("org 0x100\ndb 1\norg 0x200", "program origin redefined: a program has one org "
     "(0x100); place code elsewhere with 'section NAME start=ADDR'", 3, 1),
    ("org 1 << 32", "org address 0x100000000 out of range (0..0xffffffff)", 1, 5),
    ("org 0xffffffff\ndb 1, 2", "section '.text' goes past address 0xffffffff", 1, 1),
    ("times -1 nop", "times count -1 is negative", 1, 7),
    ("times n nop\nn equ 2", "a times count must be known in pass 1, but 'n' is not "
     "defined above this line", 1, 7),
    ("times 1 + later nop\nlater:", "a times count must be known in pass 1, but 'later' "
     "is not defined above this line", 1, 11),
    ("times 1048577 nop", "times count 1048577 too large (limit 1048576)", 1, 7),
    ("times 2 times 2 nop", "times cannot repeat times", 1, 9),
    ("times 2 org 5", "times can only repeat an instruction, data or resb ... resz",
     1, 9),
    ("org x\nx:", "an org address must be known in pass 1, but 'x' is not defined "
     "above this line", 1, 5),
    ("times 1 << 20 dd 1, 2, 3, 4, 5", "image larger than 16 MiB", 1, 1),
    ("db 1\nalign 1 << 31", "image larger than 16 MiB", 2, 1),
    ("dd 1 / 0", "division by zero", 1, 6),
    ("dd 1 % (2 - 2)", "division by zero", 1, 6),
    ("dd " + "(" * 40 + "1" + ")" * 40, "expression nested too deeply (limit 32)", 1, 36),
    ("dd " + "-" * 40 + "1", "expression nested too deeply (limit 32)", 1, 36),
    ("dd " + "+".join(["1"] * 300), "expression too complex (limit 256 levels)", 1, 515),
    ("a equ b\nb equ a", "circular definition: 'a' depends on itself", 2, 7),
    ("rep nop", "expected movsd, stosd, movsb, stosb, scasb, scasd, cmpsb or cmpsd after "
     "'rep', found 'nop'", 1, 5),
    ("mov eax,", "unexpected end of line", 1, 9),
    ("mov eax, 1 2", "expected end of line, found '2'", 1, 12),
    ("db", "'db' needs at least one value", 1, 1),
    ("eax: nop", "'eax' is a reserved word, not a symbol name", 1, 1),
    ("nop\n\tmov eax, @", "undefined symbol '@'", 2, 11),
    ("mov eax, #", "unexpected character '#'", 1, 10),
    ("%frob X", "unknown preprocessor directive '%frob'", 1, 1),
    ("%clear", "'%clear' is not supported (see the language reference, "
     "docs/language.md)", 1, 1),
    ('%include 5', "expected a file name in quotes after include, found '5'", 1, 10),
    ("equ 5", "'equ' cannot be used here", 1, 1),
])
def test_error_message_and_position(source, message, line, column):
    e = error(source)
    assert (e.message, e.line, e.column) == (message, line, column)
    assert e.file == "<input>"
    assert e.text == source.split("\n")[line - 1]


def test_error_str_and_excerpt():
    e = error("nop\n  frob eax", filename="k.asm")
    assert str(e) == "k.asm:2:3: error: unknown mnemonic 'frob'"
    assert e.excerpt() == "      frob eax\n      ^"


def test_undefined_symbol_inside_an_equ_is_reported_at_the_equ():
    e = error("nop\nX equ Y + 1\ndd X")
    assert (e.message, e.line, e.column) == ("undefined symbol 'Y'", 2, 7)


def test_long_tokens_are_clipped_in_messages():
    e = error("x" * 10_000)
    assert e.message == "unknown mnemonic '" + "x" * 37 + "...' (a label needs a ':' " \
        "after its name)"


# --- fuzzing: nothing but AsmError or an Image -------------------------------------------

_SAMPLE = """\
org 0x1000
_start:
    mov eax, [ebx + esi*4 - 8]   ; load
    mov byte [msg + 1], 'A'
.loop:
    dec ecx
    jnz .loop
    times 2 db 0x90
    align 4, db 0xCC
    rep movsd
    out dx, eax
msg: db "hi\\n", 0
len equ $ - msg
    dd len, $$
"""
_PIECES = ["mov", "eax", "al", "cr3", "dx", "[", "]", ",", "+", "-", "*", "/", "%",
           "<<", "(", ")", "$", "$$", "times", "org", "align", "db", "dw", "dd",
           '"', "'", "\\", ":", ".x", "equ", "1 << 63", "%include", "include",
           "byte", "ptr", "\n", ";", "0FFh", "0x", "rep", "9" * 30, "\t", "\x00",
           "é", "_start", "msg", "-1", "1048577", "jmp", "loop", "?", "incbin", '"x.bin"',
           "%[", "%00", "%{1:2}", "nosplit", "strict", "retn", "%warning", "<=>", "resz",
           "%eval(", "%num(", "%str(", "%sel(", "%cond(", "%isdef(", "%tok("]


def _fuzz_inputs(seed: int, count: int):
    rng = random.Random(seed)
    for _ in range(count):
        kind = rng.randrange(4)
        if kind == 0:       # random bytes, read as a file would be
            yield bytes(rng.randrange(256) for _ in range(rng.randrange(120)))
        elif kind == 1:     # random token soup
            yield " ".join(rng.choice(_PIECES) for _ in range(rng.randrange(30)))
        else:               # small mutations of a valid program
            s = list(_SAMPLE)
            for _ in range(rng.randrange(1, 6)):
                pos = rng.randrange(len(s))
                what = rng.randrange(3)
                if what == 0:
                    del s[pos]
                elif what == 1:
                    s.insert(pos, rng.choice(_PIECES))
                else:
                    s[pos] = chr(rng.randrange(1, 128))
            yield "".join(s)


def test_fuzz_only_asm_errors_or_images(tmp_path):
    path = tmp_path / "fuzz.asm"
    outcomes = {"image": 0, "error": 0}
    for i, case in enumerate(_fuzz_inputs(seed=20240601, count=400)):
        try:
            if isinstance(case, bytes):
                path.write_bytes(case)
                result = assemble_file(path)
            else:
                result = assemble(case)
        except AsmError as e:
            assert e.line >= 0 and e.column >= 0, (i, case)
            outcomes["error"] += 1
        else:
            assert isinstance(result, Image), (i, case)
            outcomes["image"] += 1
    assert outcomes["image"] > 0 and outcomes["error"] > 0


@pytest.mark.parametrize("source", [
    "x" * 1_000_000,
    "dd " + "(" * 5000,
    "dd " + "~" * 5000 + "1",
    "mov eax, [" + "[" * 100,
    "db " + '"' * 1001,
    "dd " + "9" * 100_000,
    "dd " + "*".join(["0xffffffff"] * 200),
    "\n".join(f"l{i}: jmp l{(i * 7) % 500}" for i in range(500)),
])
def test_hostile_inputs_end_in_an_image_or_an_asm_error(source):
    try:
        assert isinstance(assemble(source), Image)
    except AsmError:
        pass


def test_include_dirs_may_be_pathlike(tmp_path):
    (tmp_path / "z.inc").write_text("db 3\n")
    img = assemble('%include "z.inc"', include_dirs=(tmp_path,))
    assert img.segments == ((0, b"\x03"),)


@pytest.mark.parametrize("operand", ["[esp*1]", "[esp*1 + 4]", "[esp + eax - eax]",
                                     "[4 + 1*esp]"])
def test_esp_written_with_a_factor_keeps_the_length_pass_1_gave_it(operand):
    # [esp*1] is [esp]: encoded as esp times 1 (an index), the length the
    # layout counted -- encoded as a base, it was a byte shorter than the
    # layout, and every label after it was one byte off.
    code = assemble(f"_start: lea eax, {operand}\nnext_: dd next_").segments[0][1]
    d = isa.decode(code.__getitem__, 0)
    assert code[d.length:] == d.length.to_bytes(4, "little")
    assert (d.args[1].base, d.args[1].index) in ((None, isa.ESP), (isa.ESP, None))
    # written back as it was encoded: assembled again, the same bytes
    again = assemble(f"_start: {isa.format_insn(d, 0)}").segments[0][1]
    assert again == code[:d.length]
