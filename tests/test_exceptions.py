"""Every exception path: what is raised, the frame pushed, what is kept.

The snippets run with ``harness.trap_data()``: each vector's gate leads to a
stub that powers off with the vector as the exit status, so at the end
``r.exit_status`` is the vector delivered, the registers (but eax, saved in
``trap_eax``) are those at the handler's entry and ``frame(s, r, n)`` is the
frame the CPU pushed.  Frames, from the handler's esp up::

    from CPL 0:  [error code] eip  cs=0x08  eflags
    from CPL 3:  [error code] eip  cs=0x1B  eflags  esp  ss=0x23   (on TSS esp0)

A fault pushes the eip of the faulting instruction, ``int n`` the next one.
"""

from __future__ import annotations

import pytest
from harness import (
    KSTACK_TOP,
    PGTAB,
    STACK_TOP,
    TRAP_SETUP,
    USTACK_TOP,
    enter_user,
    flag_value,
    frame,
    init,
    paging_on,
    regs,
    run_snippet,
    sym,
    trap_data,
    var,
    words,
)

from emu import isa
from emu.system import MODES

DE, UD, DF, NP, GP, PF, TIMER = 0, 6, 8, 11, 13, 14, 32
HOLE = 0xC0000          # paging_on(hole=HOLE): not present
RODATA = 0xC1000        # paging_on(readonly=RODATA)
SUPER = 0xC2000         # paging_on(supervisor=SUPER)
# Instructions paging_on(hole=...) runs: zero the directory (4 per entry), map 1024
# pages (7 per entry), 3 moves around the loops, 1 to punch the hole, 5 to
# load CR3 and CR0.
PAGING_ON_INSNS = 1 + 4 * 1024 + 2 + 7 * 1024 + 1 + 5
SETUP_INSNS = 1 + TRAP_SETUP.count("\n")     # mov esp + TRAP_SETUP (an instruction a line)
STUB_INSNS = 3            # a trap stub: save eax, mov eax, out

@pytest.fixture(params=MODES)
def mode(request):
    return request.param

# The EXT bit of an error code: the event whose gate faulted was not the
# program's own int n (Intel SDM vol. 3A, 6.13).
EXT = 1


def trap(mode, body, gates=None, handlers=None, limit=None, data="", **config):
    """Run ``body`` expecting it to end in a trap stub; (system, result)."""
    s, r = run_snippet(body, mode, setup=TRAP_SETUP,
                       data=trap_data(gates, limit, handlers) + data, **config)
    assert r.outcome == "poweroff", r.message
    return s, r


def kframe(s, r, eip_label: str, ec=None, eflags=0x2, esp=STACK_TOP) -> None:
    """The frame is a CPL-0 one for a fault at ``eip_label``, pushed below
    ``esp``."""
    n = 3 if ec is None else 4
    expect = ([] if ec is None else [ec]) + [sym(s, eip_label), 0x08, eflags]
    assert frame(s, r, n) == expect
    assert regs(r)["esp"] == esp - 4 * n


def uframe(s, r, eip_label: str, ec=None, eflags=0x2, esp=USTACK_TOP) -> None:
    """The frame is a CPL-3 one, on the TSS esp0 stack."""
    n = 5 if ec is None else 6
    expect = ([] if ec is None else [ec]) + [sym(s, eip_label), 0x1B, eflags, esp, 0x23]
    assert frame(s, r, n) == expect
    assert regs(r)["esp"] == KSTACK_TOP - 4 * n
    assert regs(r)["cpl"] == 0


# --- #DE -------------------------------------------------------------------
@pytest.mark.parametrize("insn", ["div ecx", "div dword [zero]", "idiv ecx"])
def test_de_divide_by_zero(mode, insn):
    body = init("CF ZF", eax=1, edx=0, ecx=0) + f"fault:\n    {insn}\n"
    s, r = trap(mode, body, data="zero: dd 0")
    assert r.exit_status == DE
    kframe(s, r, "fault", eflags=flag_value("CF ZF"))
    assert var(s, "trap_eax") == 1 and regs(r)["edx"] == 0


@pytest.mark.parametrize("insn,edx,eax,ecx", [
    ("div ecx", 5, 0, 2),                           # 5 * 2^32 / 2 > 2^32 - 1
    ("div ecx", 1, 0, 1),                           # 2^32 / 1
    ("idiv ecx", 0xFFFFFFFF, 0x80000000, 0xFFFFFFFF),  # -2^31 / -1 = 2^31
    ("idiv ecx", 0, 0x80000000, 1),                 # 2^31 / 1
    ("idiv ecx", 0xFFFFFFFF, 0x7FFFFFFF, 1),        # -2^31 - 1 fits no int32
])
def test_de_quotient_overflow(mode, insn, edx, eax, ecx):
    body = init("SF OF", eax=eax, edx=edx, ecx=ecx) + f"fault:\n    {insn}\n"
    s, r = trap(mode, body)
    assert r.exit_status == DE
    kframe(s, r, "fault", eflags=flag_value("SF OF"))
    assert (var(s, "trap_eax"), regs(r)["edx"]) == (eax, edx)


# --- #UD ---------------------------------------------------------------------
@pytest.mark.parametrize("insn", [
    "ud2",
    "db 0x00",                                      # opcode 0 is never assigned
    "db 0xFF",                                      # past the end of the table
    "db 0xFE, 0x00",                                # page 2's 0 and 0xff: never
    "db 0xFE, 0xFF",                                # assigned
    f"db {isa.BY_KEY[('mov', ('r', 'r'))].opcode}, 0x18",   # register 8
    f"db {isa.BY_KEY[('mov', ('r', 'c'))].opcode}, 0x01",   # cr1
])
def test_ud_invalid_instruction(mode, insn):
    s, r = trap(mode, init("OF", eax=0x77) + f"fault:\n    {insn}\n")
    assert r.exit_status == UD
    kframe(s, r, "fault", eflags=flag_value("OF"))
    assert var(s, "trap_eax") == 0x77


def test_ud_after_instructions_of_the_same_block(mode):
    body = "    mov ebx, 5\n    add ebx, ebx\nfault:\n    db 0xFF\n"
    s, r = trap(mode, body)
    assert r.exit_status == UD
    assert regs(r)["ebx"] == 10
    kframe(s, r, "fault", eflags=flag_value("") | isa.PF)    # 10 = 0b1010: even parity


def test_ud_at_cpl3(mode):
    s, r = trap(mode, enter_user("fault") + "fault:\n    ud2\n")
    assert r.exit_status == UD
    uframe(s, r, "fault")


# --- #GP ---------------------------------------------------------------------
PRIV_INSNS = [
    ("mov eax, cr0", ("mov", ("r", "c"))),
    ("mov cr3, eax", ("mov", ("c", "r"))),
    ("hlt", ("hlt", ())),
    ("cli", ("cli", ())),
    ("sti", ("sti", ())),
    ("lidt [idt_desc]", ("lidt", ("m",))),
    ("lgdt [idt_desc]", ("lgdt", ("m",))),
    ("ltr ax", ("ltr", ("w",))),
    ("invlpg [0x1000]", ("invlpg", ("m",))),
    ("in eax, 0x40", ("in", ("r", "i8"))),
    ("in eax, dx", ("in", ("r", "dx"))),
    ("out 0xE9, eax", ("out", ("i8", "r"))),
    ("out dx, eax", ("out", ("dx", "r"))),
    ("in al, 0x40", ("in", ("al", "i8"))),
    ("in al, dx", ("in", ("al", "dx"))),
    ("out 0xE9, al", ("out", ("i8", "al"))),
    ("out dx, al", ("out", ("dx", "al"))),
]


def test_priv_insns_cover_every_privileged_row():
    rows = {row.key for row in isa.TABLE if row.kind == isa.PRIV}
    assert {key for _, key in PRIV_INSNS} == rows


@pytest.mark.parametrize("insn", [i for i, _ in PRIV_INSNS])
def test_gp_privileged_instruction_at_cpl3(mode, insn):
    body = enter_user("user", eflags=0x2C3) + \
        "user:\n    mov eax, 0x41\n    mov edx, 0xE9\nfault:\n" + f"    {insn}\n"
    s, r = trap(mode, body)
    assert r.exit_status == GP
    uframe(s, r, "fault", ec=0, eflags=0x2C3)
    assert var(s, "trap_eax") == 0x41          # nothing executed: mov eax, cr0 ...
    assert r.console == ""                     # ... out 0xE9 ...
    assert regs(r)["cr3"] == 0                 # ... mov cr3


def test_gp_int_to_dpl0_gate_from_cpl3_error_code(mode):
    s, r = trap(mode, enter_user("user") + "user:\n    int 0x40\n")
    assert r.exit_status == GP
    assert frame(s, r, 1) == [0x40 * 8 + 2]
    assert frame(s, r, 6)[2:] == [0x1B, 0x2, USTACK_TOP, 0x23]


def test_gp_int_to_dpl0_gate_pushes_the_eip_of_the_int(mode):
    s, r = trap(mode, enter_user("user") + "user:\nfault:\n    int 0x40\n")
    uframe(s, r, "fault", ec=0x40 * 8 + 2)


def test_faulting_int_does_not_retire(mode):
    s, r = trap(mode, enter_user("user") + "user:\n    int 0x40\n")
    assert r.exit_status == GP
    assert r.instructions == SETUP_INSNS + 6 + STUB_INSNS


def test_faulting_int_at_cpl0_does_not_retire(mode):
    s, r = trap(mode, "    int 0x31\n", gates={0x31: 0x0E00})
    assert r.exit_status == NP
    assert r.instructions == SETUP_INSNS + STUB_INSNS


def test_gp_int3_to_dpl0_gate_from_cpl3_error_code(mode):
    # int3 is a software interrupt like int 3: the gate's DPL is checked
    s, r = trap(mode, enter_user("user") + "user:\nfault:\n    int3\n")
    assert r.exit_status == GP
    uframe(s, r, "fault", ec=3 * 8 + 2)


@pytest.mark.parametrize("insn", ["int3", "int 3"])
def test_int3_is_int_3_the_breakpoint_vector(mode, insn):
    s, r = trap(mode, init("CF SF IF") + f"    {insn}\nnext:\n")
    assert r.exit_status == 3
    kframe(s, r, "next", eflags=flag_value("CF SF IF"))
    assert regs(r)["eflags"] == 0x2 | flag_value("CF SF")     # an interrupt gate: IF=0


def test_int3_from_cpl3_through_a_dpl3_gate(mode):
    s, r = trap(mode, enter_user("user", esp=0x8F000) + "user:\n    int3\nnext:\n",
                gates={3: 0xEF00})
    assert r.exit_status == 3
    uframe(s, r, "next", esp=0x8F000)


def test_int_to_dpl3_gate_from_cpl3(mode):
    s, r = trap(mode, enter_user("user", esp=0x8F000) + "user:\n    int 0x80\nnext:\n",
                gates={0x80: 0xEF00})
    assert r.exit_status == 0x80
    uframe(s, r, "next", esp=0x8F000)


@pytest.mark.parametrize("cs", [0x09, 0x0A, 0x1A, 0x19])
def test_gp_iret_to_a_cs_of_rpl_1_or_2(mode, cs):
    body = f"    push 0x2\n    push {cs:#x}\n    push 0x1234\nfault:\n    iret\n"
    s, r = trap(mode, body)
    assert r.exit_status == GP
    kframe(s, r, "fault", ec=cs & 0xFFFC, esp=STACK_TOP - 12)




@pytest.mark.parametrize("cs,ss", [(0x10, 0x23), (0x13, 0x23), (0x00, 0x23), (0x1B, 0x2B)])
def test_gp_iret_to_a_selector_that_does_not_exist(mode, cs, ss):
    body = f"    push {ss:#x}\n    push {USTACK_TOP:#x}\n    push 0x2\n    push {cs:#x}\n" \
        "    push there\nfault:\n    iret\nthere:\n    int 0x80\n"
    s, r = trap(mode, body, gates={0x80: 0xEF00})
    assert r.exit_status == GP
    bad = cs if cs not in (0x08, 0x1B) else ss
    kframe(s, r, "fault", ec=bad & 0xFFFC, esp=STACK_TOP - 20)


def test_gp_iret_from_cpl3_to_cpl0(mode):
    body = enter_user("user") + \
        "user:\n    push 0x2\n    push 0x08\n    push 0x1234\nfault:\n    iret\n"
    s, r = trap(mode, body)
    assert r.exit_status == GP
    uframe(s, r, "fault", ec=0x08, esp=USTACK_TOP - 12)


@pytest.mark.parametrize("attr", [0x8C00, 0x8600, 0x8000])
def test_gp_gate_of_a_bad_type(mode, attr):
    s, r = trap(mode, "fault:\n    ud2\n", gates={UD: attr})
    assert r.exit_status == GP
    kframe(s, r, "fault", ec=UD * 8 + 2 + EXT)


def test_gp_idt_limit_exceeded_by_the_timer(mode):
    # The IDT holds vectors 0..31 only: the timer's vector 32 is out of it.
    body = init("IF") + "    mov eax, 3\n    out 0x40, eax\nspin:\n    jmp spin\n"
    s, r = trap(mode, body, limit=32 * 8 - 1)
    assert r.exit_status == GP
    assert frame(s, r, 4) == [32 * 8 + 2 + EXT, sym(s, "spin"), 0x08, 0x202]


def test_gp_idt_limit_must_cover_all_8_bytes(mode):
    s, r = trap(mode, "    int 0x40\n", limit=0x40 * 8 + 6)
    assert r.exit_status == GP
    assert frame(s, r, 1) == [0x40 * 8 + 2]


def test_idt_limit_covering_the_gate_delivers(mode):
    s, r = trap(mode, "fault:\n    ud2\n", limit=UD * 8 + 7)
    assert r.exit_status == UD


def test_gp_int_past_the_idt_limit_error_code(mode):
    s, r = trap(mode, "    int 0x40\n", limit=0x40 * 8 - 1)
    assert r.exit_status == GP
    assert frame(s, r, 1) == [0x40 * 8 + 2]


def test_int_with_the_idt_limit_covering_the_gate_delivers(mode):
    s, r = trap(mode, "    int 0x40\nnext:\n", limit=0x40 * 8 + 7,
                gates={0x40: 0x8E00}, handlers={0x40: "trap_0"})
    kframe(s, r, "next")


# --- #NP ---------------------------------------------------------------------
def test_np_int_through_a_not_present_gate(mode):
    s, r = trap(mode, "    int 0x31\n", gates={0x31: 0x0E00})
    assert r.exit_status == NP
    assert frame(s, r, 4)[0] == 0x31 * 8 + 2
    assert frame(s, r, 4)[2:] == [0x08, 0x2]


def test_np_int_pushes_the_eip_of_the_int(mode):
    s, r = trap(mode, "fault:\n    int 0x31\n", gates={0x31: 0x0E00})
    kframe(s, r, "fault", ec=0x31 * 8 + 2)


def test_np_fault_whose_gate_is_not_present(mode):
    # #UD is benign: its not-present gate gives #NP, not #DF.
    s, r = trap(mode, "fault:\n    ud2\n", gates={UD: 0x0E00})
    assert r.exit_status == NP
    kframe(s, r, "fault", ec=UD * 8 + 2 + EXT)


# --- #PF ---------------------------------------------------------------------
PF_CASES = [
    # (ring, instruction, error code, cr2)
    (0, "mov eax, [0xC0123]", 0, 0xC0123),
    (0, "mov dword [0xC0FFC], 1", 2, 0xC0FFC),
    (0, "mov dword [0xC1008], 1", 3, 0xC1008),        # read-only, CR0.WP
    (0, "inc dword [0xC1000]", 3, 0xC1000),
    (0, "shld [0xC1008], eax, 0", 3, 0xC1008),       # a count of 0 writes too
    (0, "rcl byte [0xC1004], 0", 3, 0xC1004),
    (0, "rcr dword [0xC1000], cl", 3, 0xC1000),
    (0, "movzx eax, byte [0xC0001]", 0, 0xC0001),
    (0, "mov eax, [0xBFFFE]", 0, 0xC0000),            # crosses into the hole
    (3, "mov eax, [0xC2010]", 5, 0xC2010),            # supervisor page
    (3, "mov dword [0xC2010], 1", 7, 0xC2010),
    (3, "mov dword [0xC1010], 1", 7, 0xC1010),        # read-only
    (3, "mov eax, [0xC0010]", 4, 0xC0010),            # not present
    (3, "mov dword [0xC0010], 1", 6, 0xC0010),
    (3, "push dword [0xC0010]", 4, 0xC0010),
]


@pytest.mark.parametrize("ring,insn,ec,cr2", PF_CASES)
def test_pf_error_code_and_cr2(mode, ring, insn, ec, cr2):
    pg = paging_on(hole=HOLE, readonly=RODATA, supervisor=SUPER)
    if ring == 0:
        body = pg + init("ZF", eax=0x5A) + f"fault:\n    {insn}\n"
    else:
        body = pg + enter_user("user", eflags=0x2C3) + \
            f"user:\n    mov eax, 0x5A\nfault:\n    {insn}\n"
    s, r = trap(mode, body)
    assert r.exit_status == PF
    assert regs(r)["cr2"] == cr2
    if ring == 0:
        kframe(s, r, "fault", ec=ec, eflags=flag_value("ZF"))
    else:
        uframe(s, r, "fault", ec=ec, eflags=0x2C3)
    assert var(s, "trap_eax") == 0x5A


def test_pf_instruction_fetch_from_a_hole(mode):
    body = paging_on(hole=HOLE) + f"    mov ecx, {HOLE + 0x10:#x}\nfault:\n    jmp ecx\n"
    s, r = trap(mode, body)
    assert r.exit_status == PF
    assert regs(r)["cr2"] == HOLE + 0x10
    assert frame(s, r, 4)[:3] == [0, HOLE + 0x10, 0x08]


@pytest.mark.parametrize("insn", ["lodsb", "lodsd"])
def test_pf_in_lods_leaves_esi(mode, insn):
    body = paging_on(hole=HOLE) + (f"    mov esi, {HOLE + 8:#x}\n    mov eax, 0x5A5A5A5A\n"
                                   f"fault:\n    {insn}\n")
    s, r = trap(mode, body)
    assert r.exit_status == PF
    assert (regs(r)["cr2"], regs(r)["esi"]) == (HOLE + 8, HOLE + 8)
    assert frame(s, r, 4)[:2] == [0, sym(s, "fault")]


def test_pf_fetch_of_an_instruction_crossing_into_a_hole(mode):
    # mov eax, imm32 at HOLE - 2: its last 4 bytes are in the hole.
    opcode = isa.BY_KEY[("mov", ("r", "i"))].opcode
    body = paging_on(hole=HOLE) + f"""
    mov dword [{HOLE - 4:#x}], {opcode << 16:#x}
    mov ecx, {HOLE - 2:#x}
    jmp ecx
"""
    s, r = trap(mode, body)
    assert r.exit_status == PF
    assert regs(r)["cr2"] == HOLE
    assert frame(s, r, 3) == [0, HOLE - 2, 0x08]


def test_pf_counted_in_the_stats(mode):
    s, r = trap(mode, paging_on(hole=HOLE) + "    mov eax, [0xC0000]\n")
    assert r.stats["cpu"]["exceptions"] == {"14": 1}


# --- frames, gates, rings ----------------------------------------------------
def test_int_frame_at_cpl0_pushes_next_eip(mode):
    body = init("CF SF OF IF") + "    int 0x40\nnext:\n"
    s, r = trap(mode, body, gates={0x40: 0x8E00}, handlers={0x40: "trap_0"})
    kframe(s, r, "next", eflags=flag_value("CF SF OF IF"))


def test_interrupt_gate_clears_if(mode):
    s, r = trap(mode, init("IF") + "    int 0x40\n", gates={0x40: 0x8E00},
                handlers={0x40: "trap_0"})
    assert regs(r)["eflags"] == 0x2
    assert frame(s, r, 3)[2] == 0x202


def test_trap_gate_keeps_if(mode):
    s, r = trap(mode, init("IF") + "    int 0x40\n", gates={0x40: 0x8F00},
                handlers={0x40: "trap_0"})
    assert regs(r)["eflags"] == 0x202
    assert frame(s, r, 3)[2] == 0x202


def test_exception_through_trap_gate_keeps_if(mode):
    s, r = trap(mode, init("IF") + "fault:\n    ud2\n", gates={UD: 0x8F00})
    assert regs(r)["eflags"] == 0x202
    kframe(s, r, "fault", eflags=0x202)


def test_int_from_cpl3_frame_on_the_tss_stack(mode):
    body = enter_user("user", eflags=0x2C3) + "user:\n    mov esp, 0x8E000\n    int 0x80\nnext:\n"
    s, r = trap(mode, body, gates={0x80: 0xEF00})
    uframe(s, r, "next", eflags=0x2C3, esp=0x8E000)


def test_iret_back_to_ring3(mode):
    # int 0x81 (user gate) goes to a handler that adds to ebx and irets;
    # ring 3 then continues on its own stack and traps with int 0x80.
    body = enter_user("user", eflags=0x2C3) + """
user:
    mov ebx, 1
    int 0x81
back:
    mov ecx, esp
    pushfd
    pop edx
    int 0x80
next_int:
"""
    data = "h81:\n    add ebx, 10\n    mov edi, esp\n    mov esi, [esp]\n    iret\n"
    s, r = trap(mode, body, gates={0x80: 0xEF00, 0x81: 0xEF00},
                handlers={0x81: "h81"}, data=data)
    assert r.exit_status == 0x80
    assert regs(r)["ebx"] == 11
    assert regs(r)["edi"] == KSTACK_TOP - 20
    assert regs(r)["ecx"] == USTACK_TOP
    assert regs(r)["edx"] == 0x2C3
    assert regs(r)["esi"] == sym(s, "back")
    uframe(s, r, "next_int", eflags=0x2C3)


def test_iret_within_ring0_restores_flags_and_esp(mode):
    body = """
    push 0x8C3
    push 0x08
    push there
    iret
there:
    mov ebx, esp
"""
    s, r = run_snippet(body, mode)
    assert r.outcome == "poweroff"
    assert regs(r)["ebx"] == STACK_TOP
    assert regs(r)["eflags"] == 0x8C3
    assert regs(r)["cpl"] == 0


def test_iret_at_cpl3_cannot_set_if(mode):
    body = enter_user("user", eflags=0x2) + """
user:
    push 0x2C3
    push 0x1B
    push there
    iret
there:
    pushfd
    pop eax
    int 0x80
"""
    s, r = trap(mode, body, gates={0x80: 0xEF00})
    assert r.exit_status == 0x80
    assert var(s, "trap_eax") == 0xC3 | 0x2


# --- the timer ------------------------------------------------------------------
TICK = """
tick:
    inc dword [ticks]
    mov ebx, [esp]
    mov [tick_eip], ebx
    iret
ticks: dd 0
tick_eip: dd 0
"""


def test_timer_interrupt_waits_for_if(mode):
    # Period 20 with IF=0: no tick lands during 100 instructions; popfd sets
    # IF and the pending tick (one, however many fired) lands right after it.
    body = """
    mov eax, 20
    out 0x40, eax
    mov ecx, 50
spin:
    nop
    loop spin
    mov edx, [ticks]
    push 0x202
    popfd
after_popfd:
    cli
    mov eax, 0
    out 0x40, eax
    mov eax, [ticks]
"""
    s, r = trap(mode, body, handlers={TIMER: "tick"}, data=TICK)
    assert regs(r)["edx"] == 0
    assert r.exit_status == 1
    assert var(s, "tick_eip") == sym(s, "after_popfd")


def test_timer_interrupt_lands_after_period_instructions(mode):
    # The timer counts retired instructions: period 10 after the out lands
    # before the 11th nop (the handler's 4 instructions are well within the
    # next period).
    body = init("IF") + """
    mov eax, 10
    out 0x40, eax
    times 10 nop
eleventh:
    nop
    cli
    mov eax, 0
    out 0x40, eax
    mov eax, [ticks]
"""
    s, r = trap(mode, body, handlers={TIMER: "tick"}, data=TICK)
    assert r.exit_status == 1
    assert var(s, "tick_eip") == sym(s, "eleventh")
    assert r.stats["cpu"]["interrupts"] == 1


def test_timer_interrupt_lands_inside_a_loop_block(mode):
    # 25 instructions after the out: 12 iterations of (inc, loop), then the
    # inc of the 13th; the tick lands on its loop.
    body = init("IF", ebx=0, ecx=100) + """
    mov eax, 25
    out 0x40, eax
again:
    inc ebx
at_loop:
    loop again
"""
    data = "stop:\n    mov eax, [esp]\n    out 0xF4, eax\n"
    s, r = trap(mode, body, handlers={TIMER: "stop"}, data=data)
    assert r.exit_status == sym(s, "at_loop")
    assert (regs(r)["ebx"], regs(r)["ecx"]) == (13, 88)


def test_timer_interrupt_frame_from_ring3(mode):
    # The tick falls due in ring 0 with IF=0; iret to ring 3 sets IF and it
    # lands on the first user instruction.
    body = """
    mov eax, 4
    out 0x40, eax
""" + enter_user("user", eflags=0x202) + """
user:
    jmp user
"""
    s, r = trap(mode, body)
    assert r.exit_status == TIMER
    f = frame(s, r, 5)
    assert f[0] == sym(s, "user") and f[1:] == [0x1B, 0x202, USTACK_TOP, 0x23]
    assert regs(r)["eflags"] == 0x2        # interrupt gate: IF cleared


# --- double and triple faults ----------------------------------------------------
def test_df_gp_with_a_not_present_gp_gate_from_cpl3(mode):
    s, r = trap(mode, enter_user("user") + "user:\nfault:\n    hlt\n", gates={GP: 0x0E00})
    assert r.exit_status == DF
    uframe(s, r, "fault", ec=0)


def test_df_de_with_a_not_present_de_gate(mode):
    body = init(eax=1, edx=0, ecx=0) + "fault:\n    div ecx\n"
    s, r = trap(mode, body, gates={DE: 0x0E00})
    assert r.exit_status == DF
    kframe(s, r, "fault", ec=0)


def test_df_np_while_delivering_pf(mode):
    # #PF whose gate is not present: #NP while delivering a #PF is a #DF.
    body = paging_on(hole=HOLE) + "fault:\n    mov eax, [0xC0000]\n"
    s, r = trap(mode, body, gates={PF: 0x0E00})
    assert r.exit_status == DF
    kframe(s, r, "fault", ec=0, eflags=0x86)      # SF PF: paging_on's or made 0x80010000


def test_ud_then_np_is_not_a_double_fault(mode):
    s, r = trap(mode, "fault:\n    ud2\n", gates={UD: 0x0E00})
    assert r.exit_status == NP
    kframe(s, r, "fault", ec=UD * 8 + 2 + EXT)


@pytest.mark.parametrize("how", ["df_gate_not_present", "stack_in_a_hole", "idt_limit_0"])
def test_triple_fault_crashes(mode, how):
    limit = None
    if how == "df_gate_not_present":
        body, gates = enter_user("user") + "user:\n    hlt\n", {GP: 0x0E00, DF: 0x0E00}
    elif how == "stack_in_a_hole":
        body = paging_on(hole=HOLE) + f"    mov esp, {HOLE + 0x800:#x}\n    mov eax, [{HOLE:#x}]\n"
        gates = {}
    else:
        body, gates, limit = "    ud2\n", {}, 0
    s, r = run_snippet(body, mode, setup=TRAP_SETUP, data=trap_data(gates, limit))
    assert r.outcome == "crash"
    assert "triple fault" in r.message
    assert r.exit_status is None


# --- a faulting instruction changes nothing -------------------------------------------
# Loads, stores and read-modify-writes of the hole.  The W bit of a
# read-modify-write of a not-present page is not pinned (see test_pf_*).
FAULTING = [
    "add [0xC0010], eax",
    "add eax, [0xC0010]",
    "sub dword [0xC0010], 1",
    "xchg eax, [0xC0010]",
    "div dword [0xC0010]",
    "mul dword [0xC0010]",
    "inc dword [0xC0010]",
    "not dword [0xC0010]",
    "mov eax, [0xC0010]",
    "movzx eax, byte [0xC0010]",
    "mov byte [0xC0010], al",
    "jmp [0xC0010]",
    "shld [0xC0010], ebx, 4",
    "shrd [0xC0010], ebx, cl",
    "rcl dword [0xC0010], 1",
    "rcr byte [0xC0010], cl",
    "bsf eax, [0xC0010]",
    "bsr eax, [0xC0010]",
]


@pytest.mark.parametrize("insn", FAULTING)
def test_faulting_memory_instruction_keeps_registers_and_flags(mode, insn):
    regs0 = dict(eax=0x1234, ebx=0x5678, ecx=0x9ABC, edx=0xDEF0, esi=0x1111, edi=0x2222,
                 ebp=0x3333)
    body = paging_on(hole=HOLE) + init("CF ZF SF OF", **regs0) + f"fault:\n    {insn}\n"
    s, r = trap(mode, body)
    assert r.exit_status == PF
    ec = frame(s, r, 1)[0]
    assert ec in (0, 2)
    kframe(s, r, "fault", ec=ec, eflags=flag_value("CF ZF SF OF"))
    assert regs(r)["cr2"] == 0xC0010
    out = regs(r)
    out["eax"] = var(s, "trap_eax")
    assert {k: out[k] for k in regs0} == regs0


@pytest.mark.parametrize("insn,esp", [
    ("pop eax", HOLE + 0x10),
    ("ret", HOLE + 0x10),
    ("push ebx", HOLE + 0x14),
    ("push 7", HOLE + 0x14),
    ("call there", HOLE + 0x14),
    ("pushfd", HOLE + 0x14),
    ("pushad", HOLE + 0x1010),       # 4 stores fit in the next page, the 5th faults
    ("popad", HOLE + 0xFF0),         # 4 loads succeed, the 5th faults
])
def test_faulting_stack_instruction_keeps_esp(mode, insn, esp):
    # Ring 3, so the frame goes on the TSS stack, not the broken one.
    body = paging_on(hole=HOLE) + enter_user("user", eflags=0x2C3, esp=esp) + \
        "user:\n    mov eax, 0xAA\n    mov ebx, 0xBB\nfault:\n" + f"    {insn}\nthere:\n"
    s, r = trap(mode, body)
    assert r.exit_status == PF
    uframe(s, r, "fault", ec=frame(s, r, 1)[0], eflags=0x2C3, esp=esp)
    assert var(s, "trap_eax") == 0xAA and regs(r)["ebx"] == 0xBB


def test_movsd_fault_changes_nothing(mode):
    body = paging_on(hole=HOLE) + init(esi=0x2000, edi=HOLE, ecx=3, eax=9) + "fault:\n    movsd\n"
    s, r = trap(mode, body)
    assert r.exit_status == PF
    kframe(s, r, "fault", ec=2, eflags=flag_value(""))
    assert (regs(r)["esi"], regs(r)["edi"], regs(r)["ecx"]) == (0x2000, HOLE, 3)


def test_rep_movsd_fault_midway_keeps_the_progress(mode):
    # 4 dwords to HOLE - 8: two are copied, then the fault; the registers
    # say where to restart.
    body = paging_on(hole=HOLE) + \
        init(esi=0x2000, edi=HOLE - 8, ecx=4, eax=9) + "fault:\n    rep movsd\n"
    s, r = trap(mode, body)
    assert r.exit_status == PF
    assert regs(r)["cr2"] == HOLE
    kframe(s, r, "fault", ec=2, eflags=flag_value(""))
    assert (regs(r)["esi"], regs(r)["edi"], regs(r)["ecx"]) == (0x2008, HOLE, 2)


def test_rep_stosb_fault_midway_keeps_the_progress(mode):
    body = paging_on(hole=HOLE) + \
        init(edi=HOLE - 3, ecx=10, eax=0x41) + "fault:\n    rep stosb\n"
    s, r = trap(mode, body)
    assert r.exit_status == PF
    kframe(s, r, "fault", ec=2, eflags=flag_value(""))
    assert (regs(r)["edi"], regs(r)["ecx"]) == (HOLE, 7)
    assert s.guest_read(HOLE - 3, 3) == b"AAA"


@pytest.mark.parametrize("insn", ["scasb", "scasd", "cmpsb", "cmpsd"])
def test_pf_in_scas_cmps_changes_nothing(mode, insn):
    body = paging_on(hole=HOLE) + init("CF OF", esi=0x2000, edi=HOLE + 8, ecx=5, eax=9) + \
        "fault:\n" + f"    {insn}\n"
    s, r = trap(mode, body)
    assert r.exit_status == PF
    assert regs(r)["cr2"] == HOLE + 8
    kframe(s, r, "fault", ec=0, eflags=flag_value("CF OF"))
    assert (regs(r)["esi"], regs(r)["edi"], regs(r)["ecx"]) == (0x2000, HOLE + 8, 5)


@pytest.mark.parametrize("insn", ["cmpsd", "repe cmpsb", "repne cmpsd"])
def test_cmps_reads_esi_before_edi(mode, insn):
    # Both in the hole: the fault is [esi]'s (docs/DECISIONS.md).
    body = paging_on(hole=HOLE) + init(esi=HOLE + 0x10, edi=HOLE + 0x20, ecx=5) + \
        "fault:\n" + f"    {insn}\n"
    s, r = trap(mode, body)
    assert r.exit_status == PF
    assert regs(r)["cr2"] == HOLE + 0x10
    kframe(s, r, "fault", ec=0, eflags=flag_value(""))
    assert (regs(r)["esi"], regs(r)["edi"], regs(r)["ecx"]) == (HOLE + 0x10, HOLE + 0x20, 5)


def test_repe_cmpsd_fault_midway_keeps_the_progress(mode):
    # Two equal dwords before the hole, then the fault on [edi]: ecx, esi,
    # edi and the flags are those after the second iteration.
    body = paging_on(hole=HOLE) + f"""
    mov dword [{HOLE - 8:#x}], 7
    mov dword [{HOLE - 4:#x}], 8
""" + init(esi=0, edi=HOLE - 8, ecx=5) + "    mov esi, src\nfault:\n    repe cmpsd\n"
    s, r = trap(mode, body, data="src: dd 7, 8, 9\n")
    assert r.exit_status == PF
    assert regs(r)["cr2"] == HOLE
    kframe(s, r, "fault", ec=0, eflags=0x46)          # ZF PF of 8 - 8
    assert (regs(r)["esi"], regs(r)["edi"], regs(r)["ecx"]) == (sym(s, "src") + 8, HOLE, 3)


def test_repne_scasb_fault_midway_keeps_the_progress(mode):
    body = paging_on(hole=HOLE) + f"    mov dword [{HOLE - 4:#x}], 0\n" + \
        init(edi=HOLE - 3, ecx=10, eax=0x41) + "fault:\n    repne scasb\n"
    s, r = trap(mode, body)
    assert r.exit_status == PF
    kframe(s, r, "fault", ec=0, eflags=0x6)           # PF of 0x41 - 0
    assert (regs(r)["edi"], regs(r)["ecx"]) == (HOLE, 7)


@pytest.mark.parametrize("insn", ["repe cmpsd", "repne scasb"])
def test_repeated_compare_with_ecx_0_reads_nothing(mode, insn):
    body = paging_on(hole=HOLE) + init("SF", esi=HOLE, edi=HOLE, ecx=0, eax=0x77) + \
        f"    {insn}\n"
    s, r = trap(mode, body)
    assert r.exit_status == 0x77                      # no #PF: powered off with eax
    assert regs(r)["eflags"] == flag_value("SF")


def test_pf_in_repe_cmpsd_then_restart_finishes_it(mode):
    # The guest's #PF handler maps the hole and irets: the rep goes on from
    # the dword it faulted on, to the first difference.
    pte = PGTAB + (HOLE >> 12) * 4
    body = paging_on(hole=HOLE) + init(esi=0, edi=HOLE - 8, ecx=10) + \
        "    mov esi, src\n    repe cmpsd\n    pushfd\n    pop ebx\n    mov eax, 0\n"
    data = f"""
src: times 6 dd 0
    dd 5
fix_pf:
    mov dword [{pte:#x}], {HOLE | 7:#x}
    add esp, 4
    iret
"""
    s, r = run_snippet(body, mode, setup=TRAP_SETUP,
                       data=trap_data(handlers={PF: "fix_pf"}) + data)
    assert (r.outcome, r.exit_status) == ("poweroff", 0), r.message
    assert r.stats["cpu"]["exceptions"] == {"14": 1}
    # 6 equal dwords (2 before the hole), then 5 - 0
    assert (regs(r)["ecx"], regs(r)["esi"], regs(r)["edi"]) == (3, sym(s, "src") + 28,
                                                               HOLE + 20)
    assert regs(r)["ebx"] == 0x6                      # PF of 5 - 0


# --- faults in the middle of a translated block ----------------------------------------
def test_fault_mid_block_keeps_earlier_effects_and_counts_exactly(mode):
    body = paging_on(hole=HOLE) + """
    mov ebx, 1
    add ebx, 0xFFFFFFFF     ; ZF CF
    mov ecx, 7
    push ecx
fault:
    mov eax, [0xC0000]
    mov ebx, 99             ; never runs
    add ecx, 1              ; would overwrite the flags
"""
    s, r = trap(mode, body)
    assert r.exit_status == PF
    assert frame(s, r, 4) == [0, sym(s, "fault"), 0x08,
                              flag_value("CF ZF") | isa.PF | isa.AF]   # 1 + 0xffffffff
    assert regs(r)["esp"] == STACK_TOP - 4 - 16
    assert (regs(r)["ebx"], regs(r)["ecx"]) == (0, 7)
    assert words(s, STACK_TOP - 4, 1) == [7]
    assert r.instructions == SETUP_INSNS + PAGING_ON_INSNS + 4 + STUB_INSNS


def test_fault_in_a_loop_block_counts_the_iterations(mode):
    # Walk an array into the hole: the 5th load faults.
    body = paging_on(hole=HOLE) + f"""
    mov esi, {HOLE - 16:#x}
    mov ecx, 10
    mov ebx, 0
again:
    add ebx, 1
    mov eax, [esi]
    add esi, 4
    loop again
"""
    s, r = trap(mode, body)
    assert r.exit_status == PF
    assert regs(r)["cr2"] == HOLE
    assert (regs(r)["ebx"], regs(r)["ecx"], regs(r)["esi"]) == (5, 6, HOLE)
    # the faulting iteration retired its add
    assert frame(s, r, 4)[:3] == [0, sym(s, "again") + _len("add ebx, 1"), 0x08]
    assert r.instructions == SETUP_INSNS + PAGING_ON_INSNS + 3 + 4 * 4 + 1 + STUB_INSNS


def test_fault_after_a_long_run_counts_exactly(mode):
    body = init(ecx=300, ebx=0) + """
again:
    inc ebx
    loop again
fault:
    ud2
"""
    s, r = trap(mode, body)
    assert r.exit_status == UD
    assert regs(r)["ebx"] == 300
    kframe(s, r, "fault", eflags=0x2)
    assert r.instructions == SETUP_INSNS + 2 + 2 + 600 + STUB_INSNS


def test_pf_then_restart_completes_the_instruction(mode):
    # The #PF handler maps the hole and irets: the load is restarted.
    body = paging_on(hole=HOLE) + f"""
    mov ebx, 3
fault:
    add ebx, [{HOLE + 0x20:#x}]
    mov eax, ebx
"""
    pte = PGTAB + (HOLE >> 12) * 4
    data = f"""
fix_pf:
    mov dword [{pte:#x}], {HOLE | 7:#x}
    mov dword [{HOLE + 0x20:#x}], 39
    add esp, 4
    iret
"""
    s, r = run_snippet(body, mode, setup=TRAP_SETUP,
                       data=trap_data(handlers={PF: "fix_pf"}) + data)
    assert r.outcome == "poweroff", r.message
    assert r.exit_status == 42
    assert r.stats["cpu"]["exceptions"] == {"14": 1}


def _len(text: str) -> int:
    from emu.asm import assemble
    return len(assemble(text).segments[0][1])


# --- a long rep string instruction is interruptible ----------------------------------
REP_TICK = """
tick:
    inc dword [ticks]
    cmp dword [ticks], 1
    jne .later
    mov ebx, [esp]
    mov [tick_eip], ebx
    mov [tick_ecx], ecx
.later:
    iret
ticks: dd 0
tick_eip: dd 0
tick_ecx: dd 0
align 4096
buffer: times 40001 dd 0
"""


def test_timer_interrupts_a_long_rep_stosd_and_it_goes_on(mode):
    # Counting cycles, the first tick falls due inside a 40,000-dword rep
    # stosd: it lands between iterations with eip at the rep and ecx part way
    # down (later ticks land further down), and after the last iret the
    # instruction finishes: every dword stored.
    body = init("IF", ebx=0) + """
    mov eax, 20000
    out 0x40, eax
    mov edi, buffer
    mov ecx, 40000
    mov eax, 0x5A5A5A5A
the_rep:
    rep stosd
    cli
    mov eax, 0
    out 0x40, eax
    mov eax, [ticks]
"""
    s, r = trap(mode, body, handlers={TIMER: "tick"}, data=REP_TICK, clock="cycles")
    assert r.exit_status >= 2
    assert var(s, "tick_eip") == sym(s, "the_rep")
    assert 0 < var(s, "tick_ecx") < 40000
    if mode == "native":      # chunks of 4,096 iterations; the third passes the tick
        assert var(s, "tick_ecx") == 40000 - 3 * 4096
    buf = sym(s, "buffer")
    assert words(s, buf, 40001) == [0x5A5A5A5A] * 40000 + [0]
    assert regs(r)["ecx"] == 0 and regs(r)["edi"] == buf + 160000


def test_timer_interrupts_a_long_repe_scasd_and_it_goes_on(mode):
    # As for rep stosd: the tick lands between iterations, eip at the rep,
    # ecx part way down; after the last iret the rep ends at the one dword
    # that differs, having retired once.
    body = init("IF", ebx=0) + """
    mov dword [buffer + 4 * 40000], 1
    mov eax, 20000
    out 0x40, eax
    mov edi, buffer
    mov ecx, 50000
    mov eax, 0
the_rep:
    repe scasd
    cli
    mov ebp, ecx
    mov eax, 0
    out 0x40, eax
    mov eax, [ticks]
"""
    s, r = trap(mode, body, handlers={TIMER: "tick"}, data=REP_TICK, clock="cycles")
    assert r.exit_status >= 2
    assert var(s, "tick_eip") == sym(s, "the_rep")
    assert 50000 - 40001 < var(s, "tick_ecx") < 50000
    if mode == "native":      # whole chunks of 4,096 iterations
        assert (50000 - var(s, "tick_ecx")) % 4096 == 0
    assert (regs(r)["ebp"], regs(r)["edi"]) == (50000 - 40001, sym(s, "buffer") + 160004)


def test_the_cycle_budget_stops_a_runaway_rep_stosd(mode):
    # ecx = 2**30 dwords would run for minutes: the budget ends it part way,
    # eip still at the rep, which has not retired.
    body = "    mov edi, 0x10000\n    mov ecx, 0x40000000\nthe_rep:\n    rep stosd\n"
    s, r = run_snippet(body, mode, max_cycles=200_000)
    assert r.outcome == "budget"
    assert r.registers["eip"] == sym(s, "the_rep")
    assert r.instructions == 3           # mov esp, mov edi, mov ecx
    stored = 0x40000000 - r.registers["ecx"]
    assert 4096 <= stored < 200_000
    if mode == "native":                 # whole chunks of 4,096 iterations
        assert stored % 4096 == 0
    assert r.registers["edi"] == 0x10000 + 4 * stored


def test_a_page_fault_that_becomes_a_double_fault_sets_cr2(mode):
    """SDM vol. 3A, 6.15 (interrupt 14): a #PF while a #PF is delivered
    overwrites CR2 with its address, even though it becomes a #DF.  The IDT
    is moved so that gate 8 is mapped and gate 14 lies in the hole."""
    base = HOLE - 0x50                     # gate 8 at HOLE - 0x10, gate 14 at HOLE + 0x20
    body = paging_on(hole=HOLE) + f"""
    mov eax, [idt + 8 * 8]
    mov [{base + 0x40:#x}], eax
    mov eax, [idt + 8 * 8 + 4]
    mov [{base + 0x44:#x}], eax
    lidt [moved_idt]
fault:
    mov eax, [{HOLE + 0x100:#x}]
"""
    data = f"align 8\nmoved_idt:\n    dw 0x7FF\n    dd {base:#x}\n"
    s, r = trap(mode, body, data=data)
    assert r.exit_status == 8
    kframe(s, r, "fault", ec=0, eflags=0x86)
    assert regs(r)["cr2"] == HOLE + 0x20
