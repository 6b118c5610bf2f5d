"""The guest program behind every quiz problem.

A problem is a small machine state: a guest page directory and tables at
fixed guest-physical addresses, CR0.WP, CR4.PSE/PGE, and a sequence of
steps (accesses, CR3 reloads, INVLPGs).  ``program(layout, steps)`` writes
it as a guest kernel in the project's assembly language, so the emulator
runs it natively, under shadow paging or under nested paging, ``emu run``
and ``emu step`` included: the quiz's answers are what those runs do.

The kernel around the exercise (the "harness") keeps out of its way:

    pa / va (identity)   what
    0x1000-0x8fff        the image: TSS (at 0x1000), GDT, IDT, variables,
                         kernel code, the user-mode stubs    (user-accessible)
    0x9000               user stack
    0xa000               the harness's page table (pdx 0): maps the pages here
    0xf000               kernel stack (top 0x10000)            (supervisor)

It owns page-directory entry 0 (va 0-4 MiB) and nothing else; the
exercise uses pdx 1-1023 and guest-physical pages from 1 MiB up, which
the code's first stores write while paging is still off.  Each access is
one instruction labelled ``a<N>`` (kernel: in the step's block ``q<N>``;
user: in a stub the kernel enters with ``iret``, which returns with
``int 33``).  A #PF goes to a handler that records nothing the exercise
sees and resumes at the address in ``resume``; so does the user stub's
``int 33``.  The harness makes no data access of its own between
two steps unless a step asks for it (``ResumeAt``, a guarded access), so
the TLB and the nested-translation cache hold only what the exercise put
there.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from ..asm import Image, assemble
from ..hw.paging import CR0_PG, CR0_WP, CR4_PGE, CR4_PSE, PTE_G, PTE_P, PTE_U, PTE_W

KSTACK_TOP = 0x10000
USTACK_TOP = 0xA000          # the user stack: the page below it
KPT = 0xA000                 # the harness's page table (pdx 0)
IDT_VECTORS = 34             # 0-31 exceptions, 33 the user stubs' way back
USER_RETURN = 33             # int 33: a user stub is done
MARK_PORT = 0x80             # the POST-code port: no device, writes ignored
EXERCISE_LOW = 0x100000      # the exercise's guest-physical pages start here
MEM_MIB = 16                 # guest RAM of every quiz machine

OPS = ("read", "write", "fetch")


@dataclass(frozen=True)
class Access:
    """One memory access: ``mov eax, [va]``, ``mov dword [va], value`` or
    ``call va`` (a fetch: the page holds ``mov eax, imm32; ret`` there)."""

    op: str
    va: int
    user: bool = False
    value: int = 0           # what a write stores
    guard: bool = False      # set ``resume`` first: the access may fault

    def describe(self) -> str:
        who = "user" if self.user else "kernel"
        if self.op == "write":
            return f"{who} write of {self.value:#010x} to va {self.va:#010x}"
        return f"{who} {self.op} at va {self.va:#010x}"


@dataclass(frozen=True)
class Reload:
    """``mov cr3, eax`` with the same page directory: a TLB flush (global
    entries stay under CR4.PGE)."""

    def describe(self) -> str:
        return "reload CR3 (same page directory)"


@dataclass(frozen=True)
class Invlpg:
    va: int

    def describe(self) -> str:
        return f"invlpg va {self.va:#010x}"


@dataclass(frozen=True)
class Mark:
    """``out 0x80, eax`` (the POST-code port, which the machine ignores) and
    a ``nop``.  An I/O instruction ends the CPU's batch (natively, and as a
    VM exit under a VMM), so a run at full speed can stop right after it
    (``machine.py``)."""

    def describe(self) -> str:
        return "(a marker: out to the ignored port 0x80)"


@dataclass(frozen=True)
class ResumeAt:
    """Store the address a fault resumes at (a harness data access: placed
    where it disturbs nothing the question is about)."""

    label: str


@dataclass(frozen=True)
class Layout:
    """The exercise's tables and control bits (all guest-physical)."""

    pd: int                                   # CR3
    pdes: dict = field(default_factory=dict)  # pdx (1-1023) -> gpde
    tables: dict = field(default_factory=dict)  # pa of a page table -> {ptx: gpte}
    wp: bool = True
    pse: bool = False
    pge: bool = False
    global_harness: bool = False              # G on the harness's own pages
    prime_stack: bool = False                 # touch the kernel stack once paging is on
    data: tuple = ()                          # (pa, dword) stored before paging is on

    @property
    def cr0(self) -> int:
        return CR0_PG | (CR0_WP if self.wp else 0)

    @property
    def cr4(self) -> int:
        return (CR4_PSE if self.pse else 0) | (CR4_PGE if self.pge else 0)

    def harness_pde(self) -> int:
        return KPT | PTE_P | PTE_W | PTE_U


def _hex(v: int) -> str:
    return f"0x{v:08x}"


def program(layout: Layout, steps, *, title: str, report: bool = False) -> str:
    """The guest kernel's source text.  ``report``: print one line per
    access (its value, or the #PF error code), as the translate kind does."""
    out = [f"; {title}", "; generated by emu quiz: the exercise is the (pa, dword) table",
           "; 'exercise', stored by the code at _start while paging is off; its",
           "; steps follow 'body'", "",
           "CONSOLE equ 0xE9", "POWER equ 0xF4", f"KSTACK_TOP equ {KSTACK_TOP:#x}",
           f"USTACK_TOP equ {USTACK_TOP:#x}", "", "org 0x1000",
           "tss:                             ; at 0x1000, as the GDT's descriptor says",
           "    dd 0, KSTACK_TOP", "    times 24 dd 0",
           "gdt:", "    dd 0, 0", "    dd 0x0000ffff, 0x00cf9a00", "    dd 0x0000ffff, 0x00cf9200",
           "    dd 0x0000ffff, 0x00cffa00", "    dd 0x0000ffff, 0x00cff200",
           "    dd 0x10000067, 0x00008900       ; the TSS: base 0x1000, 104 bytes",
           "gdt_desc:", "    dw 6 * 8 - 1", "    dd gdt",
           "idt_desc:", f"    dw {IDT_VECTORS} * 8 - 1", "    dd idt",
           "resume: dd done                  ; where a #PF or the user stub goes on",
           "ureport: dd report_plain", "umsg: dd 0", "qnum: dd 0",
           "idt:"]
    out += ["    times 14 dd other_handler, 0x8e00      ; vectors 0-13",
            "    dd pf_handler, 0x8e00                  ; 14: #PF",
            f"    times {USER_RETURN - 15} dd other_handler, 0x8e00      ; 15-{USER_RETURN - 1}",
            f"    dd sys_handler, 0xef00                 ; {USER_RETURN}: int from user mode"]
    if report:
        out += ["hexdigits: db \"0123456789abcdef\"",
                "msg_read: db \": read \", 0", "msg_fetch: db \": fetched \", 0",
                "msg_wrote: db \": wrote\", 10, 0", "msg_pf: db \": #PF error \", 0"]
    out += _setup(layout)
    out += ["", "_start:", "    mov esp, KSTACK_TOP",
            "    mov esi, exercise                ; build the exercise (paging is off)",
            ".store:", "    mov eax, [esi]", "    test eax, eax", "    je .built",
            "    mov ebx, [esi + 4]", "    mov [eax], ebx", "    add esi, 8", "    jmp .store",
            ".built:",
            "    lidt [idt_desc]", "    lgdt [gdt_desc]", "    mov eax, 0x28", "    ltr ax",
            f"    mov eax, {_hex(layout.cr4)}", "    mov cr4, eax",
            f"    mov eax, {_hex(layout.pd)}", "    mov cr3, eax",
            f"    mov eax, {_hex(layout.cr0)}", "    mov cr0, eax"]
    if layout.prime_stack:
        # The kernel stack in the TLB (and the shadow): a fault delivered
        # later makes no walk of its own besides the faulting one.
        out += ["    push eax", "    pop eax"]
    out.append("body:")
    user_stubs: list[str] = []
    steps = list(steps)
    labels = _step_labels(steps)
    for i, step in enumerate(steps):
        nxt = labels[i + 1] if i + 1 < len(steps) else "done"
        out.append(f"{labels[i]}:")
        if isinstance(step, Reload):
            out += [f"    mov eax, {_hex(layout.pd)}", "    mov cr3, eax"]
        elif isinstance(step, Invlpg):
            out.append(f"    invlpg [{_hex(step.va)}]")
        elif isinstance(step, ResumeAt):
            out.append(f"    mov dword [resume], {step.label}")
        elif isinstance(step, Mark):
            # The nop keeps the next step's first instruction out of the
            # batch that follows the marker's I/O exit (see machine.py).
            out += [f"    out {MARK_PORT:#x}, eax         ; a marker (the port is ignored)",
                    ".nop:", "    nop"]
        else:
            n = labels[i][1:]
            out += _access(step, n, nxt, report, user_stubs)
    out += ["done:", "    mov eax, 0", "    out POWER, eax", "    jmp done", ""]
    out += _handlers(report)
    out += ["", "; the user-mode stubs (the harness's pages are all user-accessible)",
            *user_stubs, "end_of_image:"]
    return "\n".join(out) + "\n"


def harness_pt(layout: Layout) -> dict:
    """The harness's page table (pdx 0): its code and data pages, the user
    stack and the kernel stack, identity-mapped; global if asked."""
    g = PTE_G if layout.global_harness else 0
    out = {vpn: (vpn << 12) | PTE_P | PTE_W | PTE_U | g for vpn in range(1, USTACK_TOP >> 12)}
    out[(USTACK_TOP >> 12) - 1] = (USTACK_TOP - 0x1000) | PTE_P | PTE_W | PTE_U
    out[(KSTACK_TOP >> 12) - 1] = (KSTACK_TOP - 0x1000) | PTE_P | PTE_W | g
    return out


def _step_labels(steps) -> list[str]:
    """q<N> for access N, m<K> for marker K, s<K> for the other steps."""
    labels, n, k, m = [], 0, 0, 0
    for step in steps:
        if isinstance(step, Access):
            n += 1
            labels.append(f"q{n}")
        elif isinstance(step, Mark):
            m += 1
            labels.append(f"m{m}")
        else:
            k += 1
            labels.append(f"s{k}")
    return labels


def _access(a: Access, n: str, nxt: str, report: bool, user_stubs: list[str]) -> list[str]:
    if a.op not in OPS:
        raise ValueError(f"unknown access {a.op!r}")
    insn = {"read": f"mov eax, [{_hex(a.va)}]",
            "write": f"mov dword [{_hex(a.va)}], {_hex(a.value)}",
            "fetch": f"call {_hex(a.va)}"}[a.op]
    msg = {"read": "msg_read", "fetch": "msg_fetch", "write": "msg_wrote"}[a.op]
    routine = "report_plain" if a.op == "write" else "report_value"
    out = []
    if a.guard or a.user:           # a user stub always returns through resume
        out.append(f"    mov dword [resume], {nxt}")
    if report:
        out += [f"    mov dword [qnum], {int(n)}"]
    if not a.user:
        out.append(f"a{n}: {insn}")
        if report:
            out += [f"    mov esi, {msg}", f"    call {routine}"]
        return out
    if report:
        out += [f"    mov dword [umsg], {msg}", f"    mov dword [ureport], {routine}"]
    out += ["    push 0x23", "    push USTACK_TOP", "    push 0x002", "    push 0x1b",
            f"    push u{n}", "    iret"]
    user_stubs += [f"u{n}:", f"a{n}: {insn}", f"    int {USER_RETURN}"]
    return out


def _handlers(report: bool) -> list[str]:
    out = ["pf_handler:                  ; #PF: resume at [resume]",
           "    pop ebx                  ; the error code",
           "    mov esp, KSTACK_TOP"]
    if report:
        out += ["    call put_qnum", "    mov esi, msg_pf", "    call puts",
                "    call puthex", "    call newline"]
    out += ["    jmp [resume]",
            "sys_handler:                 ; int 33: the user stub is done",
            "    mov esp, KSTACK_TOP"]
    if report:
        out += ["    mov esi, [umsg]", "    mov edx, [ureport]", "    call edx"]
    out += ["    jmp [resume]",
            "other_handler:               ; any other exception: a bug in the quiz",
            "    mov eax, 99", "    out POWER, eax", "    jmp other_handler"]
    if report:
        out += ["report_value:                ; qnum, the message at esi, eax in hex",
                "    mov ebx, eax", "    call put_qnum", "    call puts", "    call puthex",
                "    jmp newline",
                "report_plain:                ; qnum and the message at esi",
                "    call put_qnum", "    jmp puts",
                "put_qnum:", "    mov eax, [qnum]", "    add eax, 0x30", "    out CONSOLE, eax",
                "    ret",
                "puts:", "    movzx eax, byte [esi]", "    test eax, eax", "    je .done",
                "    out CONSOLE, eax", "    inc esi", "    jmp puts", ".done:", "    ret",
                "puthex:                      ; ebx as 0x%08x",
                "    mov eax, 0x30", "    out CONSOLE, eax", "    mov eax, 0x78",
                "    out CONSOLE, eax", "    mov ecx, 8", ".digit:", "    rol ebx, 4",
                "    mov eax, ebx", "    and eax, 15", "    movzx eax, byte [hexdigits + eax]",
                "    out CONSOLE, eax", "    dec ecx", "    jne .digit", "    ret",
                "newline:", "    mov eax, 10", "    out CONSOLE, eax", "    ret"]
    else:
        out += ["report_plain:", "    ret"]
    return out


def setup_words(layout: Layout) -> dict:
    """{pa: dword} of every nonzero dword the exercise puts in guest memory:
    its page directory (the harness's entry 0 included), tables and data."""
    words = {KPT + 4 * vpn: pte for vpn, pte in harness_pt(layout).items()}
    words[layout.pd] = layout.harness_pde()
    for pdx, gpde in layout.pdes.items():
        words[layout.pd + 4 * pdx] = gpde
    for pa, entries in layout.tables.items():
        for idx, value in entries.items():
            words[pa + 4 * idx] = value
    for pa, value in layout.data:
        words[pa] = value
    return {pa: v for pa, v in sorted(words.items()) if v}


def _setup(layout: Layout) -> list[str]:
    """The exercise as (pa, dword) pairs, which the code stores with paging
    still off (va = pa); a 0 ends the list."""
    pairs = [f"{_hex(pa)}, {_hex(v)}" for pa, v in setup_words(layout).items()]
    out = ["exercise:                        ; (pa, dword) pairs: the tables and data"]
    for i in range(0, len(pairs), 4):
        out.append("    dd " + ", ".join(pairs[i:i + 4]))
    return out + ["    dd 0"]


def fetch_stub(value: int) -> tuple[int, int]:
    """Two dwords holding ``mov eax, value; ret``: what a fetch runs."""
    head, tail = _stub_template()
    code = (head + value.to_bytes(4, "little") + tail).ljust(8, b"\0")
    return int.from_bytes(code[:4], "little"), int.from_bytes(code[4:8], "little")


@functools.lru_cache(maxsize=1)
def _stub_template() -> tuple[bytes, bytes]:
    """The stub's bytes around its immediate, as the assembler encodes it."""
    marker = 0x5A17C0DE
    image = assemble(f"org 0\nmov eax, {marker:#x}\nret\n", "<stub>")
    code = b"".join(data for _, data in image.segments)
    at = code.index(marker.to_bytes(4, "little"))
    head, tail = code[:at], code[at + 4:]
    if len(head) + 4 + len(tail) > 8:
        raise ValueError("the fetch stub does not fit in two dwords")
    return head, tail


@functools.lru_cache(maxsize=256)
def assemble_program(source: str, name: str) -> Image:
    image = assemble(source, name)
    if image.symbols["end_of_image"] > USTACK_TOP - 0x1000:
        raise ValueError(f"{name}: the quiz program does not fit below its user stack")
    return image
