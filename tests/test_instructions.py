"""The exact effect of every instruction form of the ISA table (emu.isa.TABLE).

Each test runs a snippet through ``tests/harness.py`` (a tiny ring-0 kernel
that powers off after the snippet) in every mode of ``emu.system.MODES`` and
checks registers, flags and memory with exact values.  Exceptions raised by
instructions are in ``test_exceptions.py``.

Semantics chosen where x86 leaves a flag undefined: mul/imul leave ZF and SF
unchanged; div/idiv leave every flag unchanged; a shift count of 0 changes
no flag; shl/shr/sar set OF for any count as if it were 1; rol/ror and
rcl/rcr change only CF and OF; shld/shrd set OF to the sign change; bsf/bsr
change only ZF (and keep dst when src is 0); logic ops clear CF and OF; not
changes no flag.
"""

from __future__ import annotations

import pytest
from harness import (
    PGDIR,
    PGTAB,
    STACK_TOP,
    TRAP_SETUP,
    enter_user,
    flag_value,
    flags,
    init,
    load_tr,
    paging_on,
    read32,
    regs,
    run_snippet,
    sym,
    trap_data,
    var,
    words,
)

from emu.system import MODES

ALL = "CF ZF SF OF"


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


def run(mode, body, **kw):
    """Run a snippet that must power off normally."""
    s, r = run_snippet(body, mode, **kw)
    assert r.outcome == "poweroff", r.message
    return s, r


def fl(names: str) -> set[str]:
    return set(names.split())


# --- two-operand arithmetic and logic --------------------------------------
# (mnemonic, dst, src, flags before, result, flags after); cmp and test keep dst.
ALU_CASES = [
    ("add", 1, 2, "", 3, ""),
    ("add", 0x7FFFFFFF, 1, "", 0x80000000, "SF OF"),
    ("add", 0xFFFFFFFF, 1, "", 0, "CF ZF"),
    ("add", 0x80000000, 0x80000000, "", 0, "CF ZF OF"),
    ("add", 0xFFFFFFFF, 0xFFFFFFFF, "ZF OF", 0xFFFFFFFE, "CF SF"),
    ("adc", 5, 5, "", 10, ""),
    ("adc", 1, 2, "CF", 4, ""),
    ("adc", 0xFFFFFFFF, 0, "CF", 0, "CF ZF"),
    ("adc", 0x7FFFFFFF, 0, "CF", 0x80000000, "SF OF"),
    ("adc", 0xFFFFFFFF, 0xFFFFFFFF, "CF", 0xFFFFFFFF, "CF SF"),
    ("sub", 3, 1, ALL, 2, ""),
    ("sub", 0, 1, "", 0xFFFFFFFF, "CF SF"),
    ("sub", 0x80000000, 1, "", 0x7FFFFFFF, "OF"),
    ("sub", 5, 5, "", 0, "ZF"),
    ("sub", 0x7FFFFFFF, 0xFFFFFFFF, "", 0x80000000, "CF SF OF"),
    ("sbb", 7, 2, "", 5, ""),
    ("sbb", 5, 3, "CF", 1, ""),
    ("sbb", 0, 0, "CF", 0xFFFFFFFF, "CF SF"),
    ("sbb", 0x80000000, 0, "CF", 0x7FFFFFFF, "OF"),
    ("sbb", 1, 0, "CF", 0, "ZF"),
    ("sbb", 0, 0xFFFFFFFF, "CF", 0, "CF ZF"),
    ("and", 0xFF00FF00, 0x0FF00FF0, "CF OF", 0x0F000F00, ""),
    ("and", 0x80000000, 0xFFFFFFFF, "", 0x80000000, "SF"),
    ("and", 0xF0, 0x0F, "CF OF", 0, "ZF"),
    ("or", 0, 0, "CF OF", 0, "ZF"),
    ("or", 0x80000000, 1, "CF", 0x80000001, "SF"),
    ("xor", 0x12345678, 0x12345678, "CF SF OF", 0, "ZF"),
    ("xor", 0xFFFFFFFF, 0x7FFFFFFF, "OF", 0x80000000, "SF"),
    ("cmp", 0, 1, "", 0, "CF SF"),
    ("cmp", 0x80000000, 1, "", 0x80000000, "OF"),
    ("cmp", 5, 5, "", 5, "ZF"),
    ("cmp", 0x7FFFFFFF, 0xFFFFFFFF, "", 0x7FFFFFFF, "CF SF OF"),
    ("cmp", 9, 4, ALL, 9, ""),
    ("test", 0xF0, 0x0F, "CF OF", 0xF0, "ZF"),
    ("test", 0x80000001, 0x80000000, "CF OF", 0x80000001, "SF"),
    ("test", 3, 1, ALL, 3, ""),
]
ALU_FORMS = ["r,r", "r,i", "r,m", "m,r", "m,i"]


def _alu_id(case):
    mn, a, b, fin, _, _ = case
    return f"{mn}-{a:#x}-{b:#x}-{fin.replace(' ', '') or 'noflags'}"


@pytest.mark.parametrize("form", ALU_FORMS)
@pytest.mark.parametrize("case", ALU_CASES, ids=[_alu_id(c) for c in ALU_CASES])
def test_alu_result_and_flags(mode, case, form):
    mn, a, b, fin, result, fout = case
    keep = mn in ("cmp", "test")
    data = ""
    if form == "r,r":
        body = init(fin, eax=a, ebx=b) + f"    {mn} eax, ebx\n"
    elif form == "r,i":
        body = init(fin, eax=a) + f"    {mn} eax, {b:#x}\n"
    elif form == "r,m":
        body = init(fin, eax=a) + f"    {mn} eax, [val]\n"
        data = f"val: dd {b:#x}"
    elif form == "m,r":
        body = init(fin, ebx=b) + f"    {mn} [val], ebx\n"
        data = f"val: dd {a:#x}"
    else:
        body = init(fin) + f"    {mn} dword [val], {b:#x}\n"
        data = f"val: dd {a:#x}"
    s, r = run(mode, body, data=data)
    expect = a if keep else result
    if form.startswith("m"):
        assert var(s, "val") == expect
    else:
        assert regs(r)["eax"] == expect
        if form == "r,m":
            assert var(s, "val") == b
    if form.endswith(",r"):
        assert regs(r)["ebx"] == b
    assert flags(r) == fl(fout)


def test_alu_same_register_both_operands(mode):
    s, r = run(mode, init("", eax=0x80000000) + "    add eax, eax\n")
    assert regs(r)["eax"] == 0
    assert flags(r) == fl("CF ZF OF")


def test_cmp_then_jcc_in_one_block_sees_the_flags(mode):
    # cmp and jl are translated together: the flags stay in locals.
    body = """
    mov eax, 0xFFFFFFFF
    mov ebx, 1
    mov ecx, 0
    cmp eax, ebx        ; -1 < 1 signed, above unsigned
    jl .signed_less
    mov ecx, 1
.signed_less:
    cmp eax, ebx
    ja .above
    mov edx, 7
    jmp .end
.above:
    mov edx, 9
.end:
"""
    s, r = run(mode, "x:\n" + body)
    assert regs(r)["ecx"] == 0
    assert regs(r)["edx"] == 9


def test_flags_of_an_overwritten_result_are_still_exact(mode):
    # add's flags are dead (sub writes them all): only sub's count.
    s, r = run(mode, init(ALL, eax=0xFFFFFFFF) + "    add eax, 1\n    sub eax, 0\n")
    assert regs(r)["eax"] == 0
    assert flags(r) == {"ZF"}


def test_adc_chain_adds_64_bit_numbers(mode):
    # 0x00000001_FFFFFFFF + 0x00000002_00000001 = 0x00000004_00000000
    body = init("", eax=0xFFFFFFFF, edx=1, ebx=1, ecx=2) + \
        "    add eax, ebx\n    adc edx, ecx\n"
    s, r = run(mode, body)
    assert (regs(r)["edx"], regs(r)["eax"]) == (4, 0)
    assert flags(r) == set()


def test_sbb_chain_subtracts_64_bit_numbers(mode):
    # 0x00000005_00000000 - 0x00000001_00000001 = 0x00000003_FFFFFFFF
    body = init("", eax=0, edx=5, ebx=1, ecx=1) + \
        "    sub eax, ebx\n    sbb edx, ecx\n"
    s, r = run(mode, body)
    assert (regs(r)["edx"], regs(r)["eax"]) == (3, 0xFFFFFFFF)
    assert flags(r) == set()


# --- one-operand arithmetic --------------------------------------------------
UNARY_CASES = [
    ("inc", 5, "CF ZF", 6, "CF"),
    ("inc", 0x7FFFFFFF, "CF", 0x80000000, "CF SF OF"),
    ("inc", 0xFFFFFFFF, "", 0, "ZF"),
    ("dec", 0x80000000, "", 0x7FFFFFFF, "OF"),
    ("dec", 1, "CF SF", 0, "CF ZF"),
    ("dec", 0, "", 0xFFFFFFFF, "SF"),
    ("neg", 0, ALL, 0, "ZF"),
    ("neg", 1, "", 0xFFFFFFFF, "CF SF"),
    ("neg", 0x80000000, "", 0x80000000, "CF SF OF"),
    ("neg", 0xFFFFFFFF, "ZF", 1, "CF"),
    ("not", 0x0F0F0F0F, "CF ZF OF", 0xF0F0F0F0, "CF ZF OF"),
    ("not", 0, "", 0xFFFFFFFF, ""),
    ("not", 0xFFFFFFFF, "SF", 0, "SF"),
]


@pytest.mark.parametrize("form", ["r", "m"])
@pytest.mark.parametrize("case", UNARY_CASES,
                         ids=[f"{c[0]}-{c[1]:#x}-{c[2].replace(' ', '') or 'noflags'}"
                              for c in UNARY_CASES])
def test_unary_result_and_flags(mode, case, form):
    mn, a, fin, result, fout = case
    if form == "r":
        s, r = run(mode, init(fin, ecx=a) + f"    {mn} ecx\n    mov eax, ecx\n")
        assert regs(r)["ecx"] == result
    else:
        s, r = run(mode, init(fin) + f"    {mn} dword [val]\n", data=f"val: dd {a:#x}")
        assert var(s, "val") == result
    assert flags(r) == fl(fout)


# --- shifts and rotates ------------------------------------------------------
# (mnemonic, value, count, flags before, result, flags after)
SHIFT_CASES = [
    ("shl", 0x80000001, 1, "", 2, "CF OF"),
    ("shl", 0x40000000, 1, "", 0x80000000, "SF OF"),
    ("shl", 0x80000000, 1, "", 0, "CF ZF OF"),
    ("shl", 1, 31, "", 0x80000000, "SF OF"),
    ("shl", 3, 31, "", 0x80000000, "CF SF"),
    ("shl", 0xFFFFFFFF, 4, "ZF OF", 0xFFFFFFF0, "CF SF"),
    ("shl", 0x12345678, 0, ALL, 0x12345678, ALL),
    ("shl", 0x12345678, 32, "CF OF", 0x12345678, "CF OF"),
    ("shl", 0x12345678, 33, "", 0x2468ACF0, ""),
    ("shr", 0x80000001, 1, "", 0x40000000, "CF OF"),
    ("shr", 0x80000000, 31, "", 1, "OF"),
    ("shr", 0xFFFFFFFF, 31, "", 1, "CF OF"),
    ("shr", 1, 1, "", 0, "CF ZF"),
    ("shr", 0x10, 4, ALL, 1, ""),
    ("shr", 0x12345678, 0, "ZF SF", 0x12345678, "ZF SF"),
    ("shr", 0x12345678, 32, "CF", 0x12345678, "CF"),
    ("sar", 0x80000000, 1, "", 0xC0000000, "SF"),
    ("sar", 0x80000000, 31, "OF", 0xFFFFFFFF, "SF"),
    ("sar", 0xFFFFFFFF, 31, "", 0xFFFFFFFF, "CF SF"),
    ("sar", 0x7FFFFFFF, 31, "", 0, "CF ZF"),
    ("sar", 5, 1, "OF SF", 2, "CF"),
    ("sar", 0x80000000, 0, "ZF", 0x80000000, "ZF"),
    ("sar", 0x80000000, 32, "", 0x80000000, ""),
    ("rol", 0x80000001, 1, "ZF SF", 3, "CF OF ZF SF"),
    ("rol", 0x12345678, 4, "", 0x23456781, "CF OF"),
    ("rol", 0x40000000, 1, "CF", 0x80000000, "OF"),
    ("rol", 1, 31, "", 0x80000000, "OF"),
    ("rol", 0x12345678, 0, "CF OF", 0x12345678, "CF OF"),
    ("rol", 0x12345678, 32, "SF", 0x12345678, "SF"),
    ("ror", 1, 1, "", 0x80000000, "CF OF"),
    ("ror", 0x12345678, 4, "", 0x81234567, "CF OF"),
    ("ror", 2, 1, "CF OF ZF", 1, "ZF"),
    ("ror", 0x80000000, 31, "CF OF SF", 1, "SF"),
    ("ror", 0, 0, "CF", 0, "CF"),
    ("ror", 0x12345678, 32, "", 0x12345678, ""),
]


@pytest.mark.parametrize("form", ["i8", "cl"])
@pytest.mark.parametrize("case", SHIFT_CASES,
                         ids=[f"{c[0]}-{c[1]:#x}-by{c[2]}-{c[3].replace(' ', '') or 'noflags'}"
                              for c in SHIFT_CASES])
def test_shift_result_and_flags(mode, case, form):
    mn, a, count, fin, result, fout = case
    if form == "i8":
        body = init(fin, eax=a, ecx=0x1234) + f"    {mn} eax, {count}\n"
    else:
        # only cl's low 5 bits count: the rest of ecx is noise
        body = init(fin, eax=a, ecx=0xABCD00 | count) + f"    {mn} eax, cl\n"
    s, r = run(mode, body)
    assert regs(r)["eax"] == result
    assert regs(r)["ecx"] == (0x1234 if form == "i8" else 0xABCD00 | count)
    assert flags(r) == fl(fout)


def test_shift_of_ecx_by_cl_uses_the_old_count(mode):
    s, r = run(mode, init("", ecx=4) + "    shl ecx, cl\n")
    assert regs(r)["ecx"] == 0x40


def test_shift_by_zero_in_a_block_keeps_earlier_flags(mode):
    # add sets CF ZF; a shift by cl=0 after it must not disturb them.
    body = init("", eax=0xFFFFFFFF, ebx=5, ecx=0) + \
        "    add eax, 1\n    shl ebx, cl\n    rol ebx, 0\n"
    s, r = run(mode, body)
    assert regs(r)["ebx"] == 5
    assert flags(r) == fl("CF ZF")


# --- multiply, divide ----------------------------------------------------------
@pytest.mark.parametrize("form", ["r", "m"])
def test_mul_big_product_sets_edx_cf_of_keeps_zf_sf(mode, form):
    src = "ebx" if form == "r" else "dword [val]"
    body = init("ZF SF", eax=0x80000000, ebx=4, edx=0x55) + f"    mul {src}\n"
    s, r = run(mode, body, data="val: dd 4")
    assert (regs(r)["edx"], regs(r)["eax"]) == (2, 0)
    assert flags(r) == fl("CF OF ZF SF")


@pytest.mark.parametrize("form", ["r", "m"])
def test_mul_small_product_clears_edx_cf_of(mode, form):
    src = "ebx" if form == "r" else "dword [val]"
    body = init("CF OF ZF", eax=3, ebx=5, edx=0x55) + f"    mul {src}\n"
    s, r = run(mode, body, data="val: dd 5")
    assert (regs(r)["edx"], regs(r)["eax"]) == (0, 15)
    assert flags(r) == {"ZF"}


def test_mul_eax_squares(mode):
    s, r = run(mode, init("", eax=0x10000) + "    mul eax\n")
    assert (regs(r)["edx"], regs(r)["eax"]) == (1, 0)
    assert flags(r) == fl("CF OF")


def test_mul_edx_uses_edx_before_overwriting_it(mode):
    s, r = run(mode, init("", eax=0xFFFFFFFF, edx=0xFFFFFFFF) + "    mul edx\n")
    assert (regs(r)["edx"], regs(r)["eax"]) == (0xFFFFFFFE, 1)


IMUL_CASES = [
    (0xFFFFFFFD, 5, "CF OF", 0xFFFFFFF1, ""),          # -3 * 5 = -15
    (0x10000, 0x10000, "ZF", 0, "CF OF ZF"),           # 2^32 truncated
    (0x40000000, 2, "", 0x80000000, "CF OF"),          # 2^31 overflows
    (0x80000000, 0xFFFFFFFF, "SF", 0x80000000, "CF OF SF"),  # -2^31 * -1
    (0xFFFFFFFF, 0xFFFFFFFF, "CF", 1, ""),              # -1 * -1
    (0xC0000000, 2, "", 0x80000000, ""),                # -2^30 * 2 = -2^31 fits
]


@pytest.mark.parametrize("form", ["r,r", "r,i"])
@pytest.mark.parametrize("case", IMUL_CASES, ids=[f"{c[0]:#x}x{c[1]:#x}" for c in IMUL_CASES])
def test_imul_truncates_and_flags_signed_overflow(mode, case, form):
    a, b, fin, result, fout = case
    src = "ecx" if form == "r,r" else f"{b:#x}"
    s, r = run(mode, init(fin, ebx=a, ecx=b, edx=0x77) + f"    imul ebx, {src}\n")
    assert regs(r)["ebx"] == result
    assert regs(r)["edx"] == 0x77       # the two-operand forms never touch edx
    assert flags(r) == fl(fout)


DIV_CASES = [
    (0, 100, 7, 14, 2),
    (1, 5, 0x10, 0x10000000, 5),
    (0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFE),
    (0, 0, 9, 0, 0),
]


@pytest.mark.parametrize("form", ["r", "m"])
@pytest.mark.parametrize("case", DIV_CASES,
                         ids=[f"{c[0]:#x}:{c[1]:#x}/{c[2]:#x}" for c in DIV_CASES])
def test_div_quotient_remainder_flags_unchanged(mode, case, form):
    hi, lo, d, q, rem = case
    src = "ebx" if form == "r" else "dword [val]"
    s, r = run(mode, init(ALL, edx=hi, eax=lo, ebx=d) + f"    div {src}\n",
               data=f"val: dd {d:#x}")
    assert (regs(r)["eax"], regs(r)["edx"]) == (q, rem)
    assert flags(r) == fl(ALL)


def test_div_eax_by_itself(mode):
    s, r = run(mode, init("", edx=0, eax=10) + "    div eax\n")
    assert (regs(r)["eax"], regs(r)["edx"]) == (1, 0)


IDIV_CASES = [
    (-7, 2, -3, -1),
    (7, -2, -3, 1),
    (-7, -2, 3, -1),
    (7, 2, 3, 1),
    (-100, 7, -14, -2),
    (-(1 << 31), 1, -(1 << 31), 0),
    (0x7FFFFFFF * 3, 3, 0x7FFFFFFF, 0),
]


@pytest.mark.parametrize("case", IDIV_CASES, ids=[f"{c[0]}/{c[1]}" for c in IDIV_CASES])
def test_idiv_truncates_toward_zero(mode, case):
    n, d, q, rem = case
    n64 = n & 0xFFFFFFFFFFFFFFFF
    body = init("CF SF", edx=n64 >> 32, eax=n64 & 0xFFFFFFFF, ecx=d) + "    idiv ecx\n"
    s, r = run(mode, body)
    assert regs(r)["eax"] == q & 0xFFFFFFFF
    assert regs(r)["edx"] == rem & 0xFFFFFFFF
    assert flags(r) == fl("CF SF")


def test_idiv_edx_divisor_read_before_written(mode):
    # edx:eax = -4, divided by edx = -1: quotient 4, remainder 0
    s, r = run(mode, init("", edx=0xFFFFFFFF, eax=0xFFFFFFFC) + "    idiv edx\n")
    assert (regs(r)["eax"], regs(r)["edx"]) == (4, 0)


@pytest.mark.parametrize("eax,edx", [(0x80000000, 0xFFFFFFFF), (0x7FFFFFFF, 0), (0, 0),
                                     (0xFFFFFFFF, 0xFFFFFFFF)])
def test_cdq_sign_extends_eax(mode, eax, edx):
    s, r = run(mode, init(ALL, eax=eax, edx=0x1234) + "    cdq\n")
    assert (regs(r)["eax"], regs(r)["edx"]) == (eax, edx)
    assert flags(r) == fl(ALL)


# --- data movement ---------------------------------------------------------------
REG_INIT = dict(eax=0x11223344, ebx=0x55667788, ecx=0x99AABBCC, edx=0xDDEEFF00)


def test_mov_r_r(mode):
    s, r = run(mode, init(ALL, **REG_INIT) + "    mov esi, ecx\n    mov eax, esi\n")
    assert regs(r)["esi"] == 0x99AABBCC and regs(r)["eax"] == 0x99AABBCC
    assert flags(r) == fl(ALL)


def test_mov_r_i(mode):
    s, r = run(mode, "    mov edi, 0xDEADBEEF\n    mov eax, -2\n")
    assert regs(r)["edi"] == 0xDEADBEEF and regs(r)["eax"] == 0xFFFFFFFE


def test_mov_r_m_absolute(mode):
    s, r = run(mode, "    mov ebx, [val]\n    mov eax, [0x20000]\n", data="val: dd 0xCAFEF00D")
    assert regs(r)["ebx"] == 0xCAFEF00D
    assert regs(r)["eax"] == 0


def test_mov_m_r_and_m_i(mode):
    body = init(ebx=0x01020304) + "    mov [val], ebx\n    mov dword [val + 4], 0xA5A5A5A5\n"
    s, r = run(mode, body, data="val: dd 0, 0, 0x77")
    assert words(s, sym(s, "val"), 3) == [0x01020304, 0xA5A5A5A5, 0x77]


ADDRESSING = [
    ("[ebx]", 0),
    ("[ebx + 8]", 8),
    ("[ebx + 12 - 4]", 8),
    ("[ebx + ecx]", 12),
    ("[ebx + ecx*2]", 24),
    ("[ebx + ecx*4 - 44]", 4),
    ("[ebx + ecx*8 - 92]", 4),
    ("[ecx*4 + tab - 36]", 12),
    ("[tab + 16]", 16),
    ("[esi - 4]", 28),
]


@pytest.mark.parametrize("operand,offset", ADDRESSING)
def test_memory_operand_addressing(mode, operand, offset):
    # ebx = tab, ecx = 12, esi = tab + 32; tab[i] = 0x100 + i (i a dword index)
    body = "    mov ebx, tab\n    mov ecx, 12\n    lea esi, [ebx + 32]\n" \
           f"    mov eax, {operand}\n    lea edx, {operand}\n"
    data = "tab: dd " + ", ".join(f"{0x100 + i:#x}" for i in range(10))
    s, r = run(mode, body, data=data)
    assert regs(r)["eax"] == 0x100 + offset // 4
    assert regs(r)["edx"] == sym(s, "tab") + offset


def test_memory_operand_address_wraps_at_4_gib(mode):
    s, r = run(mode, "    mov ebx, 0xFFFFFFFC\n    mov eax, [ebx + val + 4]\n",
               data="val: dd 0x5A5A")
    assert regs(r)["eax"] == 0x5A5A


BYTE_MOVES = [
    ("mov ah, bl", "eax", 0x11228844),
    ("mov bh, al", "ebx", 0x55664488),
    ("mov al, ah", "eax", 0x11223333),
    ("mov ch, dh", "ecx", 0x99AAFFCC),
    ("mov dl, ch", "edx", 0xDDEEFFBB),
    ("mov bh, bh", "ebx", 0x55667788),
    ("mov cl, dl", "ecx", 0x99AABB00),
    ("mov ah, 0xAB", "eax", 0x1122AB44),
    ("mov cl, 0xFF", "ecx", 0x99AABBFF),
    ("mov dh, byte [val]", "edx", 0xDDEE5A00),
    ("mov bl, byte [val + 1]", "ebx", 0x556677C3),
]


@pytest.mark.parametrize("insn,reg,value", BYTE_MOVES)
def test_mov_byte_register_forms(mode, insn, reg, value):
    s, r = run(mode, init(ALL, **REG_INIT) + f"    {insn}\n    mov esi, eax\n",
               data="val: db 0x5A, 0xC3")
    out = regs(r)
    out["eax"] = out["esi"]
    expect = dict(REG_INIT, **{reg: value})
    assert {k: out[k] for k in REG_INIT} == expect
    assert flags(r) == fl(ALL)


@pytest.mark.parametrize("insn,word", [
    ("mov byte [val + 1], ah", 0xAAAA33AA),
    ("mov byte [val], bl", 0xAAAAAA88),
    ("mov byte [val + 3], 0x7F", 0x7FAAAAAA),
    ("mov byte [esi + 2], 0", 0xAA00AAAA),
])
def test_mov_byte_memory_destinations(mode, insn, word):
    body = init(**REG_INIT) + f"    mov esi, val\n    {insn}\n"
    s, r = run(mode, body, data="val: dd 0xAAAAAAAA, 0xBBBBBBBB")
    assert words(s, sym(s, "val"), 2) == [word, 0xBBBBBBBB]


@pytest.mark.parametrize("insn,value", [
    ("movzx eax, bh", 0x77),
    ("movzx eax, cl", 0xCC),
    ("movzx eax, byte [val]", 0xF0),
    ("movzx eax, byte [val + 1]", 0x01),
])
def test_movzx(mode, insn, value):
    s, r = run(mode, init(ALL, **REG_INIT) + f"    {insn}\n", data="val: db 0xF0, 0x01")
    assert regs(r)["eax"] == value
    assert flags(r) == fl(ALL)


def test_lea_computes_without_touching_memory_or_flags(mode):
    body = init(ALL, ebx=0x1000, ecx=3) + "    lea eax, [ebx + ecx*4 + 8]\n" \
           "    lea edx, [0xFFFFF000 + ebx*1 - 1]\n    lea esi, [ecx*8]\n"
    s, r = run(mode, body)
    assert regs(r)["eax"] == 0x1014
    assert regs(r)["edx"] == 0xFFFFFFFF
    assert regs(r)["esi"] == 24
    assert flags(r) == fl(ALL)


def test_xchg_r_r(mode):
    s, r = run(mode, init(**REG_INIT) + "    xchg eax, edx\n")
    assert (regs(r)["eax"], regs(r)["edx"]) == (0xDDEEFF00, 0x11223344)


def test_xchg_r_m(mode):
    s, r = run(mode, init(**REG_INIT) + "    xchg ecx, [val]\n    mov eax, ecx\n",
               data="val: dd 0x600DF00D")
    assert regs(r)["ecx"] == 0x600DF00D
    assert var(s, "val") == 0x99AABBCC


# --- stack ---------------------------------------------------------------------
def test_push_r_i_m(mode):
    body = init(ALL, ebx=0xB0B0) + "    push ebx\n    push -3\n    push dword [val]\n"
    s, r = run(mode, body, data="val: dd 0x1234")
    assert regs(r)["esp"] == STACK_TOP - 12
    assert words(s, STACK_TOP - 12, 3) == [0x1234, 0xFFFFFFFD, 0xB0B0]
    assert flags(r) == fl(ALL)


def test_push_esp_pushes_its_old_value(mode):
    s, r = run(mode, "    push esp\n")
    assert read32(s, STACK_TOP - 4) == STACK_TOP


def test_pop_r(mode):
    s, r = run(mode, "    push 0x42\n    push 0x43\n    pop ebx\n    pop ecx\n")
    assert (regs(r)["ebx"], regs(r)["ecx"], regs(r)["esp"]) == (0x43, 0x42, STACK_TOP)


def test_pop_esp_loads_the_popped_value(mode):
    s, r = run(mode, "    push 0x12340\n    pop esp\n")
    assert regs(r)["esp"] == 0x12340


def test_pushfd_pushes_flags_with_bit_1_and_if(mode):
    s, r = run(mode, init("CF ZF SF OF IF") + "    pushfd\n    pop ebx\n"
               "    cli\n    push 0\n    popfd\n    pushfd\n    pop ecx\n")
    assert regs(r)["ebx"] == 0xAC3
    assert regs(r)["ecx"] == 0x2


def test_pushfd_after_arithmetic_in_one_block(mode):
    # 0x7fffffff + 1 = 0x80000000: SF OF, PF (low byte 0: even), AF (bit 3 carried)
    s, r = run(mode, init("", eax=0x7FFFFFFF) + "    add eax, 1\n    pushfd\n    pop ebx\n")
    assert regs(r)["ebx"] == 0x896


def test_popfd_sets_flags_at_cpl0(mode):
    # every modelled flag: CF PF AF ZF SF IF DF OF; the others read as 0
    s, r = run(mode, "    push 0xFFFFFFFF\n    popfd\n")
    assert regs(r)["eflags"] == 0xED7
    assert regs(r)["esp"] == STACK_TOP


def test_popfd_at_cpl3_keeps_if(mode):
    # Ring 3 with IF=1 pops flags with IF=0 (and IF=1 at another time).
    body = enter_user("user", eflags=0x202) + """
user:
    push 0x8C3
    popfd
    pushfd
    pop ebx
    push 0
    popfd
    pushfd
    pop eax
    int 0x80
"""
    s, r = run_snippet(body, mode, setup=TRAP_SETUP, data=trap_data({0x80: 0xEF00}))
    assert r.exit_status == 0x80
    assert regs(r)["ebx"] == 0xAC3
    assert var(s, "trap_eax") == 0x202


def test_popfd_at_cpl3_cannot_set_if(mode):
    body = enter_user("user", eflags=0x2) + """
user:
    push 0x200
    popfd
    pushfd
    pop eax
    int 0x80
"""
    s, r = run_snippet(body, mode, setup=TRAP_SETUP, data=trap_data({0x80: 0xEF00}))
    assert r.exit_status == 0x80
    assert var(s, "trap_eax") == 0x2


def test_pushad_layout(mode):
    body = init(eax=1, ecx=2, edx=3, ebx=4, ebp=6, esi=7, edi=8) + "    pushad\n"
    s, r = run(mode, body)
    assert regs(r)["esp"] == STACK_TOP - 32
    assert words(s, STACK_TOP - 32, 8) == [8, 7, 6, STACK_TOP, 4, 3, 2, 1]


def test_popad_restores_all_but_esp(mode):
    # pushed in pushad's order: eax ecx edx ebx esp(ignored) ebp esi edi
    body = "    push 11\n    push 12\n    push 13\n    push 14\n    push 0xDEAD\n" \
           "    push 16\n    push 17\n    push 18\n    popad\n"
    s, r = run(mode, body)
    out = regs(r)
    assert [out[n] for n in ("eax", "ecx", "edx", "ebx", "ebp", "esi", "edi")] == \
        [11, 12, 13, 14, 16, 17, 18]
    assert out["esp"] == STACK_TOP


# --- control flow --------------------------------------------------------------
def test_jmp_rel(mode):
    s, r = run(mode, "    mov ebx, 1\n    jmp there\n    mov ebx, 2\nthere:\n")
    assert regs(r)["ebx"] == 1


def test_jmp_r(mode):
    s, r = run(mode, "    mov ebx, 1\n    mov ecx, there\n    jmp ecx\n    mov ebx, 2\nthere:\n")
    assert regs(r)["ebx"] == 1


def test_jmp_m(mode):
    s, r = run(mode, "    mov ebx, 1\n    jmp [where]\n    mov ebx, 2\nthere:\n",
               data="where: dd there")
    assert regs(r)["ebx"] == 1


JCC_CASES = [
    ("jo", "OF", True), ("jo", "", False),
    ("jno", "", True), ("jno", "OF", False),
    ("jb", "CF", True), ("jb", "ZF SF OF", False),
    ("jae", "", True), ("jae", "CF", False),
    ("je", "ZF", True), ("je", "CF SF OF", False),
    ("jne", "", True), ("jne", "ZF", False),
    ("jbe", "CF", True), ("jbe", "ZF", True), ("jbe", "SF OF", False),
    ("ja", "", True), ("ja", "CF", False), ("ja", "ZF", False),
    ("js", "SF", True), ("js", "", False),
    ("jns", "", True), ("jns", "SF", False),
    ("jl", "SF", True), ("jl", "OF", True), ("jl", "", False), ("jl", "SF OF", False),
    ("jge", "", True), ("jge", "SF OF", True), ("jge", "SF", False), ("jge", "OF", False),
    ("jle", "ZF", True), ("jle", "SF", True), ("jle", "OF", True), ("jle", "", False),
    ("jle", "SF OF", False),
    ("jg", "", True), ("jg", "SF OF", True), ("jg", "ZF", False), ("jg", "SF", False),
    ("jg", "ZF SF OF", False),
    # aliases assemble to the same rows
    ("jc", "CF", True), ("jz", "ZF", True), ("jnz", "ZF", False), ("jnle", "", True),
]


@pytest.mark.parametrize("jcc,fin,taken", JCC_CASES,
                         ids=[f"{c[0]}-{c[1].replace(' ', '') or 'noflags'}-{c[2]}"
                              for c in JCC_CASES])
def test_conditional_jump(mode, jcc, fin, taken):
    body = init(fin, ebx=0) + f"""
    {jcc} target
    mov ebx, 1
    jmp done
target:
    mov ebx, 2
done:
"""
    s, r = run(mode, body)
    assert regs(r)["ebx"] == (2 if taken else 1)
    assert flags(r) == fl(fin)


def test_call_rel_pushes_return_address_and_ret_pops_it(mode):
    body = """
    mov ebx, 0
    call sub
after:
    jmp done
sub:
    mov ebx, [esp]
    mov ecx, esp
    ret
done:
"""
    s, r = run(mode, body)
    assert regs(r)["ebx"] == sym(s, "after")
    assert regs(r)["ecx"] == STACK_TOP - 4
    assert regs(r)["esp"] == STACK_TOP


def test_call_r(mode):
    body = """
    mov eax, sub
    call eax
after:
    jmp done
sub:
    mov ebx, [esp]
    ret
done:
"""
    s, r = run(mode, body)
    assert regs(r)["ebx"] == sym(s, "after")
    assert regs(r)["esp"] == STACK_TOP


def test_loop_counts_ecx_down_and_keeps_flags(mode):
    body = init("ZF CF", ecx=5, ebx=0) + "again:\n    inc ebx\n    loop again\n"
    s, r = run(mode, body)
    assert (regs(r)["ebx"], regs(r)["ecx"]) == (5, 0)
    assert flags(r) == {"CF"}        # inc cleared ZF (and kept CF); loop kept both


def test_loop_with_ecx_1_falls_through(mode):
    s, r = run(mode, init(ecx=1, ebx=0) + "    loop skip\n    mov ebx, 7\nskip:\n")
    assert (regs(r)["ebx"], regs(r)["ecx"]) == (7, 0)


def test_long_loop_runs_exactly(mode):
    # a loop block runs its own back edge: check counts stay exact
    body = init(ecx=1000, ebx=0, edx=0) + "l1:\n    add ebx, 3\n    add edx, ecx\n    loop l1\n"
    s, r = run(mode, body)
    assert regs(r)["ebx"] == 3000
    assert regs(r)["edx"] == 500500
    # mov esp + push/popfd + 3 movs + 3000 + out
    assert r.instructions == 1 + 2 + 3 + 3000 + 1


def test_nop_changes_nothing_but_eip(mode):
    s, r = run(mode, init(ALL, **REG_INIT) + "nops:\n    nop\n    nop\nafter:\n")
    assert {k: regs(r)[k] for k in REG_INIT} == REG_INIT
    assert flags(r) == fl(ALL)
    assert sym(s, "after") - sym(s, "nops") == 2


# --- string instructions -----------------------------------------------------------
SRC = "src: dd 0x11111111, 0x22222222, 0x33333333, 0x44444444\n" \
      "dst: dd 0, 0, 0, 0, 0\n"


def _string(mode, insn, ecx, eax=0xA1B2C3D4):
    body = init(ALL, esi=0, edi=0, ecx=ecx, eax=eax) + \
        f"    mov esi, src\n    mov edi, dst\n    {insn}\n"
    s, r = run(mode, body, data=SRC)
    return s, r, sym(s, "src"), sym(s, "dst")


def test_movsd_moves_one_dword(mode):
    s, r, src, dst = _string(mode, "movsd", 3)
    assert words(s, dst, 2) == [0x11111111, 0]
    assert (regs(r)["esi"], regs(r)["edi"], regs(r)["ecx"]) == (src + 4, dst + 4, 3)
    assert flags(r) == fl(ALL)


def test_rep_movsd_moves_ecx_dwords(mode):
    s, r, src, dst = _string(mode, "rep movsd", 3)
    assert words(s, dst, 4) == [0x11111111, 0x22222222, 0x33333333, 0]
    assert (regs(r)["esi"], regs(r)["edi"], regs(r)["ecx"]) == (src + 12, dst + 12, 0)


def test_rep_movsd_with_ecx_0_does_nothing(mode):
    s, r, src, dst = _string(mode, "rep movsd", 0)
    assert words(s, dst, 1) == [0]
    assert (regs(r)["esi"], regs(r)["edi"], regs(r)["ecx"]) == (src, dst, 0)


def test_movsb_moves_one_byte(mode):
    s, r, src, dst = _string(mode, "movsb", 9)
    assert words(s, dst, 1) == [0x11]
    assert (regs(r)["esi"], regs(r)["edi"], regs(r)["ecx"]) == (src + 1, dst + 1, 9)


def test_rep_movsb_moves_ecx_bytes(mode):
    s, r, src, dst = _string(mode, "rep movsb", 6)
    assert words(s, dst, 2) == [0x11111111, 0x2222]
    assert (regs(r)["esi"], regs(r)["edi"], regs(r)["ecx"]) == (src + 6, dst + 6, 0)


def test_stosd_stores_eax(mode):
    s, r, src, dst = _string(mode, "stosd", 2)
    assert words(s, dst, 2) == [0xA1B2C3D4, 0]
    assert (regs(r)["esi"], regs(r)["edi"], regs(r)["ecx"]) == (src, dst + 4, 2)


def test_rep_stosd_stores_ecx_dwords(mode):
    s, r, src, dst = _string(mode, "rep stosd", 4)
    assert words(s, dst, 5) == [0xA1B2C3D4] * 4 + [0]
    assert (regs(r)["esi"], regs(r)["edi"], regs(r)["ecx"]) == (src, dst + 16, 0)
    assert flags(r) == fl(ALL)


def test_stosb_stores_al(mode):
    s, r, src, dst = _string(mode, "stosb", 2)
    assert words(s, dst, 1) == [0xD4]
    assert (regs(r)["edi"], regs(r)["ecx"]) == (dst + 1, 2)


def test_rep_stosb_stores_ecx_bytes(mode):
    s, r, src, dst = _string(mode, "rep stosb", 5)
    assert words(s, dst, 2) == [0xD4D4D4D4, 0xD4]
    assert (regs(r)["edi"], regs(r)["ecx"]) == (dst + 5, 0)


# --- compare strings: scas, cmps, repe/repne --------------------------------------
def _flags_after(insn: str, reg: str) -> str:
    """``insn``, then EFLAGS into ``reg``."""
    return f"    {insn}\n    pushfd\n    pop {reg}\n"


def test_scas_compares_al_eax_with_edi_and_steps_edi_by_df(mode):
    data = "buf: db 0x41, 0x42, 0x43, 0x44, 0x45, 0x80, 0, 0\n"
    body = (init("CF SF OF") + "    mov edi, buf\n    mov eax, 0x99999941\n"
            + _flags_after("scasb", "ebx")              # 0x41 - 0x41
            + "    mov eax, 0x45444341\n" + _flags_after("scasd", "ecx")   # - 0x45444342
            + "    mov esi, edi\n    std\n    mov al, 0x40\n"
            + _flags_after("scasb", "edx")              # 0x40 - 0x80, down
            + "    mov ebp, edi\n    mov eax, 0x8046\n    scasd\n    cld\n")  # - 0x8045
    s, r = run(mode, body, data=data)
    buf = sym(s, "buf")
    assert (regs(r)["ebx"], regs(r)["ecx"], regs(r)["edx"]) == (0x46, 0x97, 0xC87)
    assert (regs(r)["esi"], regs(r)["ebp"], regs(r)["edi"]) == (buf + 5, buf + 4, buf)
    assert regs(r)["eflags"] == 0x2               # 1: no flag (and cld)


def test_cmps_compares_esi_with_edi_and_steps_both_by_df(mode):
    data = "s1: db 0x10, 0x20, 0x30, 0x40, 0x50\ns2: db 0x10, 0x21, 0x30, 0x40, 0x50\n"
    body = (init("CF SF OF") + "    mov esi, s1\n    mov edi, s2\n"
            + _flags_after("cmpsb", "ebx")              # 0x10 - 0x10
            + _flags_after("cmpsd", "ecx")              # 0x50403020 - 0x50403021
            + "    mov ebp, esi\n    mov eax, edi\n    std\n    mov esi, s2 + 1\n"
            + "    mov edi, s1 + 1\n" + _flags_after("cmpsb", "edx")   # 0x21 - 0x20, down
            + "    cmpsd\n    cld\n")                  # [s2] - [s1]: 0x40302110 - 0x40302010
    s, r = run(mode, body, data=data)
    s1, s2 = sym(s, "s1"), sym(s, "s2")
    assert (regs(r)["ebx"], regs(r)["ecx"], regs(r)["edx"]) == (0x46, 0x97, 0x402)
    assert (regs(r)["ebp"], regs(r)["eax"]) == (s1 + 5, s2 + 5)
    assert (regs(r)["esi"], regs(r)["edi"]) == (s2 - 4, s1 - 4)
    assert regs(r)["eflags"] == 0x6               # PF of 0x100


STRINGS = 'a: db "hello world"\nb: db "hellx world"\nmsg: db "hello", 0\n' \
          "d1: dd 1, 2, 3, 4\nd2: dd 9, 2, 3, 4\n"


def test_repe_cmpsb_stops_after_the_first_difference(mode):
    body = init("OF", ecx=11) + "    mov esi, a\n    mov edi, b\n    repe cmpsb\n"
    s, r = run(mode, body, data=STRINGS)
    # h e l l equal, then 'o' - 'x': five iterations
    assert (regs(r)["ecx"], regs(r)["esi"], regs(r)["edi"]) == (6, sym(s, "a") + 5,
                                                               sym(s, "b") + 5)
    assert regs(r)["eflags"] == 0x83              # CF SF of 0x6F - 0x78 (0xF7)


def test_rep_is_repe_on_cmps_and_runs_ecx_down_while_equal(mode):
    body = init(ecx=3) + "    mov esi, d1 + 4\n    mov edi, d2 + 4\n    rep cmpsd\n"
    s, r = run(mode, body, data=STRINGS)
    assert (regs(r)["ecx"], regs(r)["esi"], regs(r)["edi"]) == (0, sym(s, "d1") + 16,
                                                               sym(s, "d2") + 16)
    assert regs(r)["eflags"] == 0x46              # ZF PF of 4 - 4


def test_repe_cmpsd_backward_stops_at_the_difference(mode):
    body = init(ecx=10) + "    std\n    mov esi, d1 + 12\n    mov edi, d2 + 12\n" \
        "    repe cmpsd\n"
    s, r = run(mode, body, data=STRINGS)
    assert (regs(r)["ecx"], regs(r)["esi"], regs(r)["edi"]) == (6, sym(s, "d1") - 4,
                                                               sym(s, "d2") - 4)
    assert regs(r)["eflags"] == 0x493             # DF, and CF AF SF of 1 - 9


def test_repne_scasb_measures_a_string(mode):
    # the C library's strlen: scan for the 0 with ecx = -1, then ~ecx - 1
    body = init("CF SF OF", eax=0x12345600, ecx=0xFFFFFFFF) + "    mov edi, msg\n" + \
        _flags_after("repne scasb", "ebx") + "    mov edx, ecx\n    not ecx\n    dec ecx\n"
    s, r = run(mode, body, data=STRINGS)
    assert (regs(r)["edx"], regs(r)["ecx"]) == (0xFFFFFFF9, 5)
    assert (regs(r)["edi"], regs(r)["ebx"]) == (sym(s, "msg") + 6, 0x46)


def test_repne_scasd_runs_out_when_nothing_is_equal(mode):
    body = init("CF ZF SF OF", eax=7, ecx=4) + "    mov edi, d1\n    repnz scasd\n"
    s, r = run(mode, body, data=STRINGS)
    assert (regs(r)["ecx"], regs(r)["edi"]) == (0, sym(s, "d1") + 16)
    assert regs(r)["eflags"] == 0x6               # PF of 7 - 4


def test_repne_cmpsb_stops_at_the_first_equal_byte(mode):
    body = init("ZF", ecx=20) + "    mov esi, d1\n    mov edi, d2\n    repne cmpsb\n"
    s, r = run(mode, body, data=STRINGS)
    # 1 - 9 differ, then 0 - 0
    assert (regs(r)["ecx"], regs(r)["esi"]) == (18, sym(s, "d1") + 2)
    assert regs(r)["eflags"] == 0x46


@pytest.mark.parametrize("insn", ["repe scasb", "repe scasd", "repe cmpsb", "repe cmpsd",
                                  "repne scasb", "repne scasd", "repne cmpsb",
                                  "repne cmpsd"])
def test_repeated_compare_with_ecx_0_does_nothing(mode, insn):
    # esi and edi point past the guest's RAM: an access would end the run
    body = init("CF SF OF", ecx=0, esi=0xFFFFFFF0, edi=0xFFFFFFF0, eax=0x61) + f"    {insn}\n"
    s, r = run(mode, body)
    assert (regs(r)["ecx"], regs(r)["esi"], regs(r)["edi"]) == (0, 0xFFFFFFF0, 0xFFFFFFF0)
    assert regs(r)["eflags"] == flag_value("CF SF OF")


def test_a_long_repe_cmpsb_goes_on_past_rep_chunk_and_retires_once(mode):
    # 9,000 equal bytes, then a difference: three chunks of at most 4,096
    data = "x1: times 9000 db 0x5A\n    db 1\nx2: times 9000 db 0x5A\n    db 2\n"
    body = init(ecx=20000) + "    mov esi, x1\n    mov edi, x2\n    repe cmpsb\n"
    s, r = run(mode, body, data=data)
    assert (regs(r)["ecx"], regs(r)["esi"]) == (20000 - 9001, sym(s, "x1") + 9001)
    assert regs(r)["eflags"] == 0x97              # 1 - 2
    # mov esp, push/popfd, 3 movs, the repe, out
    assert r.instructions == 1 + 2 + 3 + 1 + 1


def test_loope_loops_while_equal_and_keeps_flags(mode):
    data = "arr: dd 7, 7, 3, 7, 7\n"
    body = init(ecx=5) + "    mov esi, arr\nagain:\n    lodsd\n    cmp eax, 7\n" \
        "    loope again\n"
    s, r = run(mode, body, data=data)
    assert (regs(r)["ecx"], regs(r)["esi"]) == (2, sym(s, "arr") + 12)
    assert flags(r) == {"CF", "SF"}               # of 3 - 7, kept by loope


def test_loopne_loops_while_not_equal_and_keeps_flags(mode):
    data = "arr: dd 1, 2, 7, 4\n"
    body = init(ecx=4) + "    mov esi, arr\nagain:\n    lodsd\n    cmp eax, 7\n" \
        "    loopnz again\n"
    s, r = run(mode, body, data=data)
    assert (regs(r)["ecx"], regs(r)["esi"]) == (1, sym(s, "arr") + 12)
    assert flags(r) == {"ZF"}


@pytest.mark.parametrize("insn,test", [("loope", "cmp eax, eax"),      # ZF=1
                                       ("loopne", "test ebx, ebx")])   # ZF=0
def test_loope_loopne_stop_when_ecx_reaches_0(mode, insn, test):
    body = init(ecx=3, ebx=0) + f"again:\n    inc ebx\n    {test}\n    {insn} again\n"
    s, r = run(mode, body)
    assert (regs(r)["ebx"], regs(r)["ecx"]) == (3, 0)


def test_long_loopne_runs_exactly(mode):
    # a loop block ending in loopne: its back edge reads ZF
    body = init(ecx=5000, ebx=0) + "l1:\n    inc ebx\n    cmp ebx, 1000\n    loopne l1\n"
    s, r = run(mode, body)
    assert (regs(r)["ebx"], regs(r)["ecx"]) == (1000, 4000)
    # mov esp + push/popfd + 2 movs + 3000 + out
    assert r.instructions == 1 + 2 + 2 + 3000 + 1


# --- system instructions -----------------------------------------------------------
def test_cli_sti(mode):
    s, r = run(mode, init(ALL) + "    sti\n    pushfd\n    pop ebx\n    cli\n")
    assert regs(r)["ebx"] == 0xAC3
    assert flags(r) == fl(ALL)


def test_lidt_loads_limit_and_base(mode):
    # A second IDT whose vector 0x40 leads to my_handler.
    body = "    lidt [desc2]\n    int 0x40\n"
    data = trap_data() + """
my_handler:
    mov ebx, 0x4040
    out 0xF4, ebx
align 8
desc2: dw 0x40*8 + 7
       dd idt2
idt2: times 0x40 dd 0, 0
      dd my_handler, 0x8E00
"""
    s, r = run_snippet(body, mode, setup=TRAP_SETUP, data=data)
    assert r.exit_status == 0x4040


def test_ltr_sets_the_ring0_stack_of_traps_from_ring3(mode):
    body = load_tr("tss2", 0x30) + enter_user("user") + "user:\n    int 0x80\n"
    data = trap_data({0x80: 0xEF00}) + "tss2: dd 0, 0x70000\n    times 24 dd 0\n"
    s, r = run_snippet(body, mode, setup=TRAP_SETUP, data=data)
    assert r.exit_status == 0x80
    assert regs(r)["esp"] == 0x70000 - 20


def test_out_console_both_forms(mode):
    body = "    mov eax, 'h'\n    out 0xE9, eax\n    mov edx, 0xE9\n    mov eax, 0x169\n" \
           "    out dx, eax\n    mov eax, 3\n"
    s, r = run(mode, body)
    assert r.console == "hi"
    assert r.exit_status == 3


def test_in_console_reads_0(mode):
    s, r = run(mode, "    mov ebx, 5\n    in ebx, 0xE9\n    mov eax, 0\n")
    assert regs(r)["ebx"] == 0


def test_in_timer_ports(mode):
    body = "    mov eax, 100000\n    out 0x40, eax\n    in ebx, 0x40\n" \
           "    mov edx, 0x41\n    in ecx, dx\n    mov eax, 0\n"
    s, r = run(mode, body)
    assert (regs(r)["ebx"], regs(r)["ecx"]) == (100000, 0)


@pytest.mark.parametrize("port", [0x80, 0x42, 0xE8])
def test_in_unknown_port_reads_all_ones(mode, port):
    s, r = run(mode, f"    mov edx, {port}\n    in ebx, dx\n    in ecx, {port}\n    mov eax, 0\n")
    assert (regs(r)["ebx"], regs(r)["ecx"]) == (0xFFFFFFFF, 0xFFFFFFFF)


def test_out_unknown_port_is_ignored(mode):
    s, r = run(mode, "    mov eax, 0x41\n    out 0x80, eax\n    mov eax, 0\n")
    assert r.console == "" and r.exit_status == 0


def test_out_power_off_status(mode):
    s, r = run(mode, "    mov ebx, 0xDEAD\n    out 0xF4, ebx\n    mov eax, 1\n")
    assert r.exit_status == 0xDEAD




@pytest.mark.parametrize("cr,value", [(0, 0x00010001), (2, 0x12345678), (3, 0x00200000),
                                      (4, 0x90)])
def test_mov_to_and_from_cr(mode, cr, value):
    s, r = run(mode, f"    mov ebx, {value:#x}\n    mov cr{cr}, ebx\n    mov ecx, cr{cr}\n")
    assert regs(r)["ecx"] == value
    assert regs(r)[f"cr{cr}"] == value


def test_mov_cr0_turns_paging_on_and_reads_back(mode):
    s, r = run(mode, paging_on() + "    mov ecx, cr0\n    mov edx, cr3\n    mov eax, [val]\n",
               data="val: dd 0x1234")
    assert regs(r)["ecx"] == 0x80010000
    assert regs(r)["cr0"] == 0x80010000
    assert regs(r)["edx"] == PGDIR
    assert regs(r)["eax"] == 0x1234


def test_invlpg_makes_a_changed_pte_visible(mode):
    # va 0xD0000 maps frame 0xD0000 (holding A); point its PTE at 0xD1000
    # (holding B): after invlpg the read sees B.
    pte = PGTAB + (0xD0000 >> 12) * 4
    body = paging_on() + f"""
    mov dword [0xD0000], 0xAAAA
    mov dword [0xD1000], 0xBBBB
    mov eax, [0xD0000]
    mov dword [{pte:#x}], 0xD1007
    invlpg [0xD0000]
    mov ebx, [0xD0000]
"""
    s, r = run(mode, body)
    assert regs(r)["eax"] == 0xAAAA
    assert regs(r)["ebx"] == 0xBBBB


def test_hlt_waits_for_the_timer_interrupt(mode):
    body = """
    mov eax, 50
    out 0x40, eax
    sti
    hlt
after_hlt:
    mov eax, 0
    out 0x40, eax
    mov eax, [woken]
"""
    data = trap_data(handlers={32: "tick"}) + """
tick:
    inc dword [woken]
    mov ebx, [esp]
    mov ecx, [esp + 4]
    iret
woken: dd 0
"""
    s, r = run_snippet(body, mode, setup=TRAP_SETUP, data=data)
    assert r.outcome == "poweroff"
    assert r.exit_status == 1
    assert regs(r)["ebx"] == sym(s, "after_hlt")
    assert regs(r)["ecx"] == 0x08
    assert "IF" in flags(r)


def test_hlt_with_interrupts_disabled_crashes_with_a_message(mode):
    s, r = run_snippet("    mov eax, 50\n    out 0x40, eax\n    cli\n    hlt\n", mode)
    assert r.outcome == "crash"
    assert "interrupts disabled" in r.message



# --- the translator: page boundaries, code written at run time --------------------
def test_instruction_crossing_a_page_boundary(mode):
    # mov eax, imm32 (6 bytes) starts 3 bytes before a page boundary.
    data = "align 4096\n    times 4093 db 0\ncrossing:\n    mov eax, 0x12345678\n" \
           "    add eax, 1\n    jmp back\n"
    s, r = run(mode, "    jmp crossing\nback:\n", data=data)
    assert sym(s, "crossing") % 4096 == 4093
    assert regs(r)["eax"] == 0x12345679


def test_code_rewritten_after_it_ran_runs_the_new_bytes(mode):
    # f is translated by the first call; the store into its immediate must
    # drop that translation.
    body = "    call f\n    mov esi, ebx\n    mov dword [f + 2], 7\n    call f\n"
    data = "f:\n    mov ebx, 1\n    ret\n"
    s, r = run(mode, body, data=data)
    assert (regs(r)["esi"], regs(r)["ebx"]) == (1, 7)


# ================= the second opcode page, PF/AF/DF, aliasing ===================
# EFLAGS read whole here: the harness names only CF ZF SF OF IF.
ARITH = 0x8D5            # CF PF AF ZF SF OF


def set_flags(value: int) -> str:
    return f"    push {value:#x}\n    popfd\n"


def eflags(r) -> int:
    return regs(r)["eflags"]


# --- instructions whose destination is also a source ---------------------------
ALIASING = [
    # (setup registers, instruction, expected registers)
    (dict(edx=1, eax=0x80000001), "div eax", dict(eax=2, edx=0x7FFFFFFF)),
    (dict(edx=0, eax=0xFFFFFFF0), "div eax", dict(eax=1, edx=0)),
    (dict(edx=0xFFFFFFFF, eax=0xFFFFFFF9), "idiv eax", dict(eax=1, edx=0)),
    (dict(eax=0xFFFFFFFD), "imul eax, eax", dict(eax=9)),
    (dict(eax=0x10000), "imul eax", dict(eax=0, edx=1)),
    (dict(eax=0x40000001), "xadd eax, eax", dict(eax=0x80000002)),
    (dict(eax=5, ebx=7), "xadd ebx, eax", dict(eax=7, ebx=12)),
    (dict(eax=5, ecx=9), "cmpxchg eax, ecx", dict(eax=9, ecx=9)),
    (dict(eax=3, ecx=4), "cmpxchg ecx, ecx", dict(eax=4, ecx=4)),
    (dict(ecx=0x21), "bts ecx, ecx", dict(ecx=0x23)),
    (dict(eax=0x8000), "movsx eax, ah", dict(eax=0xFFFFFF80)),
    (dict(eax=0x1234), "xchg eax, eax", dict(eax=0x1234)),
    (dict(ebx=0x80000000), "xchg ebx, [ebx]", dict(ebx=0x80000000)),
    (dict(ecx=0x80), "bsf ecx, ecx", dict(ecx=7)),
    (dict(eax=0x12345678), "shld eax, eax, 8", dict(eax=0x34567812)),
    (dict(ecx=0x12345604), "shrd ecx, ecx, cl", dict(ecx=0x41234560)),    # by the old cl
    (dict(ecx=3), "rcl ecx, cl", dict(ecx=0x18)),
]


@pytest.mark.parametrize("setup,insn,expect", ALIASING, ids=[a[1] for a in ALIASING])
def test_a_register_that_is_both_source_and_destination(mode, setup, insn, expect):
    if "[ebx]" in insn:
        body = "    mov ebx, val\n" + f"    {insn}\n"
        s, r = run(mode, body, data="val: dd 0x600DF00D")
        assert regs(r)["ebx"] == 0x600DF00D and var(s, "val") == sym(s, "val")
        return
    s, r = run(mode, init(**setup) + f"    {insn}\n")
    assert {k: regs(r)[k] for k in expect} == expect


# --- byte arithmetic and logic -------------------------------------------------
BYTE_ALU = [
    # (flags before, registers, val byte, instruction, expected registers, val, ARITH flags)
    (0, dict(ebx=0x123456FF), 0, "add bl, 1", dict(ebx=0x12345600), 0, 0x55),
    (0, dict(eax=0x80), 0, "test al, al", dict(eax=0x80), 0, 0x80),
    (0, {}, 0x80, "cmp byte [val], 0x7F", {}, 0x80, 0x810),
    (0, dict(eax=0x1000, ebx=0x20), 0, "sub ah, bl", dict(eax=0xF000), 0, 0x85),
    (1, dict(ebx=0), 0x7F, "adc byte [val], bl", {}, 0x80, 0x890),
    (1, dict(ecx=1), 0, "sbb cl, 1", dict(ecx=0xFF), 0, 0x95),
    (0, dict(edx=0xF300), 0, "and dh, 0x0F", dict(edx=0x300), 0, 0x04),
    (0, {}, 0x01, "or byte [val], 0x80", {}, 0x81, 0x84),
    (0x8D5, dict(eax=0x12345678), 0, "xor al, al", dict(eax=0x12345600), 0, 0x44),
    (0, dict(ecx=0x3C), 0xC3, "and cl, [val]", dict(ecx=0), 0xC3, 0x44),
    (0x801, {}, 0x7F, "inc byte [val]", {}, 0x80, 0x891),
    (0, dict(ebx=0x100), 0, "dec bl", dict(ebx=0x1FF), 0, 0x94),
    (0, dict(eax=1), 0, "neg al", dict(eax=0xFF), 0, 0x95),
    (0x8D5, {}, 0x0F, "not byte [val]", {}, 0xF0, 0x8D5),
    (0, {}, 0x81, "shl byte [val], 1", {}, 0x02, 0x801),
    (0, dict(ebx=0x80, ecx=3), 0, "sar bl, cl", dict(ebx=0xF0), 0, 0x84),
    (0, dict(eax=0x1200), 0, "ror ah, 4", dict(eax=0x2100), 0, 0),
    (0x40, dict(eax=0x81), 0, "rol al, 1", dict(eax=0x03), 0, 0x841),
    (0, dict(ecx=0x20), 0x11, "shr byte [val], cl", {}, 0x11, 0),
]


@pytest.mark.parametrize("fin,setup,val,insn,expect,val_after,fout", BYTE_ALU,
                         ids=[c[3] for c in BYTE_ALU])
def test_byte_forms(mode, fin, setup, val, insn, expect, val_after, fout):
    s, r = run(mode, set_flags(2 | fin) + init(**setup).split("popfd\n", 1)[1]
               + f"    {insn}\n", data=f"val: db {val:#x}, 0x5A")
    assert {k: regs(r)[k] for k in expect} == expect
    assert s.guest_read(sym(s, "val"), 2) == bytes([val_after, 0x5A])
    assert eflags(r) & ARITH == fout


def test_shift_of_a_dword_in_memory(mode):
    s, r = run(mode, init(ecx=1) + "    shr dword [val], cl\n", data="val: dd 0x80000001")
    assert var(s, "val") == 0x40000000
    assert eflags(r) & ARITH == 0x805          # CF OF PF


@pytest.mark.parametrize("insn,value", [
    ("movsx eax, bl", 0xFFFFFF80), ("movsx eax, byte [val]", 0x7F),
    ("movsx eax, byte [val + 1]", 0xFFFFFFFE), ("movzx eax, byte [val + 1]", 0xFE),
])
def test_movsx_sign_extends_a_byte(mode, insn, value):
    s, r = run(mode, init(ebx=0x80) + f"    {insn}\n", data="val: db 0x7F, 0xFE")
    assert regs(r)["eax"] == value


# --- conditions: setcc, cmovcc, jp ------------------------------------------------
CONDS = ("o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g")


def _holds(cond, table):
    """x86's condition ``cond`` from the SDM's table of the positive ones."""
    negated = {"no": "o", "ae": "b", "ne": "e", "a": "be", "ns": "s", "np": "p",
               "ge": "l", "g": "le"}
    return not table[negated[cond]] if cond in negated else table[cond]


@pytest.mark.parametrize("f", [0x2, 0x3, 0x6, 0x42, 0x82, 0x802, 0x882, 0x8C3, 0x8D7, 0x457])
def test_setcc_every_condition(mode, f):
    body = set_flags(f) + "".join(f"    set{c} byte [out + {i}]\n" for i, c in enumerate(CONDS))
    body += "    setz al\n    setnz ah\n"
    s, r = run(mode, body, data="out: times 16 db 0x77")
    assert list(s.guest_read(sym(s, "out"), 16)) == [int(_holds(c, _table(f))) for c in CONDS]
    assert regs(r)["eax"] & 0xFFFF == (0x100 if not f & 0x40 else 1)
    assert eflags(r) & ARITH == f & ARITH


def _table(f):
    cf, pf, zf, sf, of = (bool(f & b) for b in (1, 4, 0x40, 0x80, 0x800))
    return {"o": of, "b": cf, "e": zf, "be": cf or zf, "s": sf, "p": pf,
            "l": sf != of, "le": zf or sf != of}


@pytest.mark.parametrize("f", [0x2, 0x43, 0x886, 0x8D7])
def test_cmovcc_every_condition(mode, f):
    body = set_flags(f) + "    mov ecx, 1\n" + "".join(
        f"    mov eax, 7\n    cmov{c} eax, ecx\n    mov [out + {8 * i}], eax\n"
        f"    mov eax, 7\n    cmov{c} eax, [one]\n    mov [out + {8 * i + 4}], eax\n"
        for i, c in enumerate(CONDS))
    s, r = run(mode, body, data="one: dd 1\nout: times 32 dd 0")
    want = [1 if _holds(c, _table(f)) else 7 for c in CONDS for _ in (0, 1)]
    assert words(s, sym(s, "out"), 32) == want


def test_jp_follows_the_parity_of_the_low_byte(mode):
    body = """
    mov ebx, 0
    mov eax, 0x102      ; low byte 0x03 after the add: two bits, even
    add eax, 1
    jnp .odd
    or ebx, 1
.odd:
    add eax, 4          ; 0x07: three bits, odd
    jp .even
    or ebx, 2
.even:
"""
    s, r = run(mode, "x:\n" + body)
    assert regs(r)["ebx"] == 3


@pytest.mark.parametrize("ecx,taken", [(0, True), (1, False), (0x80000000, False)])
def test_jecxz(mode, ecx, taken):
    s, r = run(mode, init(ecx=ecx, ebx=0) + "    jecxz .t\n    mov ebx, 1\n.t:\n")
    assert regs(r)["ebx"] == (0 if taken else 1)


# --- flags: pushfd/popfd with PF AF DF, lahf/sahf, clc/stc/cmc, cld/std -------------
def test_pushfd_shows_pf_af_and_df(mode):
    # xor: ZF PF (AF 0); std: DF; 0x7fffffff + 1: SF OF PF AF
    body = "    std\n    xor eax, eax\n    pushfd\n    pop ebx\n    cld\n" \
           "    mov eax, 0x7FFFFFFF\n    add eax, 1\n    pushfd\n    pop ecx\n"
    s, r = run(mode, body)
    assert (regs(r)["ebx"], regs(r)["ecx"]) == (0x446, 0x896)


def test_popfd_loads_pf_af_df(mode):
    s, r = run(mode, "    push 0x455\n    popfd\n    pushfd\n    pop ebx\n")
    assert regs(r)["ebx"] == 0x457 and eflags(r) == 0x457


def test_sahf_and_lahf(mode):
    body = "    mov eax, 0xD500\n    sahf\n    pushfd\n    pop ebx\n" \
           "    mov eax, 0\n    stc\n    cmc\n    cmc\n    lahf\n"
    s, r = run(mode, set_flags(0x802) + body)
    assert regs(r)["ebx"] == 0x8D7             # OF kept; SF ZF AF PF CF from ah
    assert regs(r)["eax"] == 0xD700             # ah: SF ZF 0 AF 0 PF 1 CF


@pytest.mark.parametrize("insn,cf", [("clc", 0), ("stc", 1), ("cmc", 0)])
def test_carry_instructions(mode, insn, cf):
    s, r = run(mode, set_flags(0x8D7) + f"    {insn}\n")
    assert eflags(r) == 0x8D6 | cf


def test_std_moves_strings_backward(mode):
    body = "    std\n    mov esi, src + 8\n    mov edi, dst + 8\n    mov ecx, 3\n" \
           "    rep movsd\n    mov ebx, edi\n    lea edi, [dst + 19]\n    mov eax, 0x61\n" \
           "    mov ecx, 2\n    rep stosb\n    stosb\n    pushfd\n    pop edx\n"
    s, r = run(mode, body, data=SRC)
    src, dst = sym(s, "src"), sym(s, "dst")
    assert words(s, dst, 5) == [0x11111111, 0x22222222, 0x33333333, 0, 0x61616100]
    assert (regs(r)["esi"], regs(r)["ebx"]) == (src - 4, dst - 4)
    assert (regs(r)["edi"], regs(r)["ecx"]) == (dst + 16, 0)
    assert regs(r)["edx"] & 0x400


def test_overlapping_rep_movsb_forward_repeats_the_pattern(mode):
    # dst = src + 1: each byte copies the one just written, as x86 does
    body = "    mov esi, src\n    lea edi, [src + 1]\n    mov ecx, 7\n    rep movsb\n"
    s, r = run(mode, body, data="src: db 0xAB, 1, 2, 3, 4, 5, 6, 7, 8")
    assert list(s.guest_read(sym(s, "src"), 9)) == [0xAB] * 8 + [8]


def test_overlapping_rep_movsd_backward_repeats_the_pattern(mode):
    # dst = src - 4, going down: each dword copies the one just written
    body = "    std\n    lea esi, [src + 12]\n    lea edi, [src + 8]\n    mov ecx, 3\n" \
           "    rep movsd\n"
    s, r = run(mode, body, data="src: dd 1, 2, 3, 4")
    assert words(s, sym(s, "src"), 4) == [4, 4, 4, 4]
    assert (regs(r)["esi"], regs(r)["edi"]) == (sym(s, "src"), sym(s, "src") - 4)


# --- the stack: enter, leave, pusha, popa ----------------------------------------------
def test_enter_level_0_and_leave(mode):
    body = init(ebp=0x1234) + "    enter 16, 0\n    mov ebx, ebp\n    mov ecx, esp\n    leave\n"
    s, r = run(mode, body)
    assert (regs(r)["ebx"], regs(r)["ecx"]) == (STACK_TOP - 4, STACK_TOP - 20)
    assert (regs(r)["ebp"], regs(r)["esp"]) == (0x1234, STACK_TOP)
    assert read32(s, STACK_TOP - 4) == 0x1234


def test_enter_with_nesting_copies_the_outer_frame_pointers(mode):
    # The caller's frame at 0x7F000: [ebp - 4] holds its display entry 0xAAAA.
    body = "    mov dword [0x7EFFC], 0xAAAA\n    mov ebp, 0x7F000\n    enter 8, 2\n"
    s, r = run(mode, body)
    frame = STACK_TOP - 4
    assert words(s, STACK_TOP - 12, 3) == [frame, 0xAAAA, 0x7F000]
    assert (regs(r)["ebp"], regs(r)["esp"]) == (frame, STACK_TOP - 20)


def test_ret_imm16_pops_the_arguments_too(mode):
    # stdcall: the callee pops its arguments (the count unsigned, as the SDM
    # says: 0x8000 is 32 KiB more, not less)
    body = ("    push 7\n    push 9\n    call .f\n    mov ecx, esp\n    jmp .out\n"
            ".f:\n    mov ebx, [esp + 4]\n    ret 8\n"
            ".g:\n    ret 0x8000\n"
            f".out:\n    mov dword [{STACK_TOP - 0x10000:#x}], .back\n"
            f"    mov esp, {STACK_TOP - 0x10000:#x}\n    jmp .g\n"
            ".back:\n")
    s, r = run(mode, body)
    assert (regs(r)["ebx"], regs(r)["ecx"]) == (9, STACK_TOP)
    assert regs(r)["esp"] == STACK_TOP - 0x10000 + 4 + 0x8000


def test_lods_loads_from_esi_and_steps_it_by_df(mode):
    data = "src: dd 0x11223344, 0x55667788\n"
    body = (init(eax=0xAAAAAAAA) + "    mov esi, src\n    lodsb\n    mov ebx, eax\n"
            "    lodsd\n    mov ecx, esi\n    std\n    lodsb\n    mov edx, eax\n"
            "    lodsd\n    cld\n")
    s, r = run(mode, body, data=data)
    src = sym(s, "src")
    assert (regs(r)["ebx"], regs(r)["ecx"]) == (0xAAAAAA44, src + 5)
    # bytes at src: 44 33 22 11 88 77 66 55; backwards from src + 5
    assert regs(r)["edx"] == 0x88112277
    assert (regs(r)["eax"], regs(r)["esi"]) == (0x55667788, src)


def test_pusha_popa_are_pushad_popad(mode):
    a, b = assemble_bytes("pusha\npopa\npushf\npopf"), assemble_bytes(
        "pushad\npopad\npushfd\npopfd")
    assert a == b
    body = init(eax=1, ecx=2, edx=3, ebx=4, ebp=6, esi=7, edi=8) + \
        "    pusha\n    mov eax, 0\n    mov edi, 0\n    popa\n"
    s, r = run(mode, body)
    assert (regs(r)["eax"], regs(r)["edi"], regs(r)["esp"]) == (1, 8, STACK_TOP)


def assemble_bytes(text: str) -> bytes:
    from emu.asm import assemble
    return assemble(text).segments[0][1]


# --- exchange and compare --------------------------------------------------------------
def test_xchg_memory_with_a_register(mode):
    s, r = run(mode, init(ebx=5) + "    xchg [val], ebx\n", data="val: dd 9")
    assert (regs(r)["ebx"], var(s, "val")) == (9, 5)


def test_xadd_memory(mode):
    s, r = run(mode, init(ecx=0xFFFFFFFF) + "    xadd [val], ecx\n", data="val: dd 1")
    assert (regs(r)["ecx"], var(s, "val")) == (1, 0)
    assert eflags(r) & ARITH == 0x55           # CF ZF PF AF


@pytest.mark.parametrize("eax,eq", [(7, True), (8, False)])
def test_cmpxchg_memory(mode, eax, eq):
    s, r = run(mode, init(eax=eax, ecx=0x99) + "    cmpxchg [val], ecx\n", data="val: dd 7")
    assert var(s, "val") == (0x99 if eq else 7)
    assert regs(r)["eax"] == 7
    assert bool(eflags(r) & 0x40) == eq


# --- bits --------------------------------------------------------------------------------
BITS = [
    ("bt eax, 31", dict(eax=0x80000000), None, dict(eax=0x80000000), 1),
    ("bts dword [val], 33", {}, 0x1, None, 0),        # imm8 taken mod 32: bit 1
    ("btr ecx, edx", dict(ecx=0xFF, edx=0x23), None, dict(ecx=0xF7), 1),
    ("btc dword [val + 4], ebx", dict(ebx=0xFFFFFFFF), 0x80000000, None, 0),   # bit -1
    ("bt dword [val], ebx", dict(ebx=40), None, None, 1),                      # val+4, bit 8
]


@pytest.mark.parametrize("insn,setup,first,expect,cf", BITS, ids=[b[0] for b in BITS])
def test_bit_test_instructions(mode, insn, setup, first, expect, cf):
    s, r = run(mode, set_flags(0x8D6) + init(**setup).split("popfd\n", 1)[1] + f"    {insn}\n",
               data="val: dd 0x1, 0x80000100")
    if expect:
        assert {k: regs(r)[k] for k in expect} == expect
    if first is not None:
        want = {"bts": [0x3, 0x80000100], "btc": [0x80000001, 0x80000100]}[insn[:3]]
        assert words(s, sym(s, "val"), 2) == want
    assert eflags(r) & 1 == cf
    assert eflags(r) & 0x40                     # ZF kept


def test_bswap(mode):
    s, r = run(mode, init(ecx=0x11223344) + "    bswap ecx\n")
    assert regs(r)["ecx"] == 0x44332211


# --- multiply: one, two and three operands ---------------------------------------------
@pytest.mark.parametrize("insn,setup,expect,of", [
    ("imul ebx", dict(eax=0xFFFFFFFD, ebx=5), dict(eax=0xFFFFFFF1, edx=0xFFFFFFFF), 0),
    ("imul ebx", dict(eax=0x10000, ebx=0x10000), dict(eax=0, edx=1), 1),
    ("imul eax, [val], -3", {}, dict(eax=0x40000000), 1),
    ("imul ecx, edx, 7", dict(edx=3), dict(ecx=21), 0),
    ("imul esi, [val]", dict(esi=2), dict(esi=0x80000000), 1),
])
def test_imul_forms(mode, insn, setup, expect, of):
    s, r = run(mode, init(**setup) + f"    {insn}\n", data="val: dd 0x40000000")
    assert {k: regs(r)[k] for k in expect} == expect
    assert eflags(r) & 0x801 == (0x801 if of else 0)


# --- byte I/O ----------------------------------------------------------------------------
def test_out_and_in_of_al(mode):
    body = "    mov eax, 0x12345668\n    out 0xE9, al\n    mov edx, 0xE9\n" \
           "    mov eax, 0x169\n    out dx, al\n    mov eax, 0xAABBCCDD\n    in al, 0x42\n" \
           "    mov ebx, eax\n    mov edx, 0x42\n    mov eax, 0x11\n    in al, dx\n" \
           "    mov ecx, eax\n    mov eax, 0\n"
    s, r = run(mode, body)
    assert r.console == "hi"
    assert (regs(r)["ebx"], regs(r)["ecx"]) == (0xAABBCCFF, 0xFF)


# --- bit scans -------------------------------------------------------------------------
# (mnemonic, src, ARITH flags before, dst after (0x5A before), ARITH flags after): only
# ZF changes (CF OF SF AF PF, undefined, are kept); src = 0 keeps dst.
BIT_SCANS = [
    ("bsf", 0x00010000, 0x895, 16, 0x895),
    ("bsf", 0x80000000, 0x000, 31, 0x000),
    ("bsf", 0xFFFFFFFF, 0x040, 0, 0x000),
    ("bsf", 0, 0x895, 0x5A, 0x8D5),
    ("bsr", 0x00010001, 0x8D5, 16, 0x895),
    ("bsr", 1, 0x000, 0, 0x000),
    ("bsr", 0xFFFFFFFF, 0x000, 31, 0x000),
    ("bsr", 0, 0x000, 0x5A, 0x040),
]


@pytest.mark.parametrize("form", ["r,r", "r,m"])
@pytest.mark.parametrize("case", BIT_SCANS, ids=[f"{c[0]}-{c[1]:#x}" for c in BIT_SCANS])
def test_bit_scan_finds_the_lowest_or_highest_set_bit(mode, case, form):
    mn, src, fin, dst, fout = case
    setup = set_flags(2 | fin) + init(eax=0x5A, ebx=src).split("popfd\n", 1)[1]
    insn = f"{mn} eax, ebx" if form == "r,r" else f"{mn} eax, [val]"
    s, r = run(mode, setup + f"    {insn}\n", data=f"val: dd {src:#x}")
    assert (regs(r)["eax"], regs(r)["ebx"]) == (dst, src)
    assert eflags(r) & ARITH == fout


# --- cbw, cwde ---------------------------------------------------------------------------
@pytest.mark.parametrize("insn,eax,after", [
    ("cbw", 0x12345680, 0x1234FF80),        # only ax changes
    ("cbw", 0xFFFFFF7F, 0xFFFF007F),
    ("cbw", 0x0000FF01, 0x00000001),
    ("cwde", 0x12348000, 0xFFFF8000),
    ("cwde", 0xABCD7FFF, 0x00007FFF),
])
def test_cbw_and_cwde_sign_extend_al_and_ax(mode, insn, eax, after):
    s, r = run(mode, set_flags(0x8D7) + f"    mov eax, {eax:#x}\n    {insn}\n")
    assert regs(r)["eax"] == after
    assert eflags(r) & ARITH == ARITH          # no flag changes


# --- double shifts -----------------------------------------------------------------------
# (mnemonic, dst, src, count, ARITH flags before, result, ARITH flags after).  OF is the
# sign change for every count (the SDM defines it for 1 only); AF is cleared.
DOUBLE_SHIFTS = [
    ("shld", 0x12345678, 0x9ABCDEF0, 4, 0x000, 0x23456789, 0x001),
    ("shld", 0x40000000, 0x80000000, 1, 0x000, 0x80000001, 0x880),
    ("shld", 0x00000003, 0xFFFFFFFE, 31, 0x000, 0xFFFFFFFF, 0x885),
    ("shld", 0x80000000, 0, 1, 0x010, 0, 0x845),
    ("shld", 0x12345678, 0x9ABCDEF0, 0, ARITH, 0x12345678, ARITH),
    ("shld", 0x12345678, 0x9ABCDEF0, 32, 0x044, 0x12345678, 0x044),
    ("shrd", 0x12345678, 0x9ABCDEF0, 4, ARITH, 0x01234567, 0x001),
    ("shrd", 1, 1, 1, 0x000, 0x80000000, 0x885),
    ("shrd", 0xFF, 0xAB, 8, 0x000, 0xAB000000, 0x885),
    ("shrd", 2, 0, 33, ARITH, 1, 0x000),
]


@pytest.mark.parametrize("form", ["r,r,i8", "r,r,cl", "m,r,i8", "m,r,cl"])
@pytest.mark.parametrize("case", DOUBLE_SHIFTS,
                         ids=[f"{c[0]}-{c[1]:#x}-by{c[3]}" for c in DOUBLE_SHIFTS])
def test_double_shift_result_and_flags(mode, case, form):
    mn, a, b, count, fin, result, fout = case
    dst = "eax" if form.startswith("r") else "[val]"
    cnt = "cl" if form.endswith("cl") else str(count)
    ecx = 0xABCD00 | count if form.endswith("cl") else 0x1234
    setup = set_flags(2 | fin) + init(eax=a, ebx=b, ecx=ecx).split("popfd\n", 1)[1]
    s, r = run(mode, setup + f"    {mn} {dst}, ebx, {cnt}\n", data=f"val: dd {a:#x}")
    assert (regs(r)["eax"] if dst == "eax" else var(s, "val")) == result
    assert (regs(r)["ebx"], regs(r)["ecx"]) == (b, ecx)
    assert eflags(r) & ARITH == fout


# --- rotates through CF --------------------------------------------------------------------
# (mnemonic, value, count, ARITH flags before, result, ARITH flags after): only CF and
# OF change; OF by the formula of a count of 1 over the result, for every count.
CARRY_ROTATES = [
    ("rcl", 0x80000000, 1, 0x000, 0, 0x801),
    ("rcl", 0x40000000, 1, 0x001, 0x80000001, 0x800),
    ("rcl", 0x12345678, 4, 0x0D5, 0x23456788, 0x8D5),
    ("rcl", 1, 31, 0x000, 0x80000000, 0x800),
    ("rcl", 0x12345678, 0, 0x801, 0x12345678, 0x801),
    ("rcl", 0x12345678, 32, 0x044, 0x12345678, 0x044),
    ("rcl", 0xFFFFFFFF, 33, 0x000, 0xFFFFFFFE, 0x001),
    ("rcr", 1, 1, 0x000, 0, 0x001),
    ("rcr", 1, 1, 0x001, 0x80000000, 0x801),
    ("rcr", 0x12345678, 4, 0x0D5, 0x11234567, 0x0D5),
    ("rcr", 0x80000000, 31, 0x001, 3, 0x000),
    ("rcr", 0x12345678, 32, 0x801, 0x12345678, 0x801),
]


@pytest.mark.parametrize("form", ["r,i8", "r,cl", "m,i8", "m,cl"])
@pytest.mark.parametrize("case", CARRY_ROTATES,
                         ids=[f"{c[0]}-{c[1]:#x}-by{c[2]}-{c[3]:#x}" for c in CARRY_ROTATES])
def test_rotate_through_carry_result_and_flags(mode, case, form):
    mn, a, count, fin, result, fout = case
    dst = "eax" if form.startswith("r") else "dword [val]"
    cnt = "cl" if form.endswith("cl") else str(count)
    ecx = 0xABCD00 | count if form.endswith("cl") else 0x1234
    setup = set_flags(2 | fin) + init(eax=a, ecx=ecx).split("popfd\n", 1)[1]
    s, r = run(mode, setup + f"    {mn} {dst}, {cnt}\n", data=f"val: dd {a:#x}")
    assert (regs(r)["eax"] if dst == "eax" else var(s, "val")) == result
    assert regs(r)["ecx"] == ecx
    assert eflags(r) & ARITH == fout


# A byte rotates through 9 bits: the masked count is taken mod 9.
CARRY_ROTATES_8 = [
    # (flags before, registers, val byte, instruction, expected registers, val, ARITH flags)
    (0, dict(eax=0x81), 0, "rcl al, 1", dict(eax=0x02), 0, 0x801),
    (0x0D4, dict(eax=0x81), 0, "rcl al, 1", dict(eax=0x02), 0, 0x8D5),
    (1, dict(ebx=0x0100), 0, "rcl bh, 8", dict(ebx=0x8000), 0, 0x001),
    (1, dict(ecx=10), 0x40, "rcl byte [val], cl", {}, 0x81, 0x800),         # 10 mod 9
    (0, dict(ecx=0x20), 0x11, "rcl byte [val], cl", {}, 0x11, 0),           # masked: 0
    (0, dict(eax=0x0500), 0, "rcr ah, 3", dict(eax=0x4000), 0, 0x801),
    (1, dict(ebx=0x81), 0, "rcr bl, 9", dict(ebx=0x81), 0, 0x801),         # CF kept
    (0x801, dict(ecx=0x12), 0x3C, "rcr byte [val], cl", {}, 0x3C, 0x001),  # 18 mod 9
]


@pytest.mark.parametrize("fin,setup,val,insn,expect,val_after,fout", CARRY_ROTATES_8,
                         ids=[f"{c[3]}-{c[0]:#x}" for c in CARRY_ROTATES_8])
def test_byte_rotate_through_carry(mode, fin, setup, val, insn, expect, val_after, fout):
    test_byte_forms(mode, fin, setup, val, insn, expect, val_after, fout)


def test_rotate_through_carry_chains_a_64_bit_shift(mode):
    # edx:eax <<= 1 and >>= 1 the way 16-bit code shifted long numbers
    body = init(eax=0x80000001, edx=0x40000000) + "    shl eax, 1\n    rcl edx, 1\n" \
        "    mov ebx, eax\n    mov ecx, edx\n    shr ecx, 1\n    rcr ebx, 1\n"
    s, r = run(mode, body)
    assert (regs(r)["edx"], regs(r)["eax"]) == (0x80000001, 2)
    assert (regs(r)["ecx"], regs(r)["ebx"]) == (0x40000000, 0x80000001)


# --- pause -----------------------------------------------------------------------------------
def test_pause_is_a_nop_of_the_same_cost(mode):
    body = init(ALL, **REG_INIT) + "    pause\n    pause\n"
    s, r = run(mode, body)
    _, nops = run(mode, init(ALL, **REG_INIT) + "    nop\n    nop\n")
    assert {k: regs(r)[k] for k in REG_INIT} == REG_INIT
    assert flags(r) == fl(ALL)
    assert (r.instructions, r.cycles) == (nops.instructions, nops.cycles)
