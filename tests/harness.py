"""Run a few instructions of guest code and look at what they did.

``run_snippet(body)`` assembles ``body`` into a tiny kernel and runs it::

    org 0x1000
    _start:
        mov esp, STACK_TOP          ; 0x80000
        <setup>
        <body>
        out 0xF4, eax               ; power off: exit status = eax
    align 16
    <data>

Initial registers and flags: ``init(flags="CF ZF", eax=1, ...)`` is assembly
that loads them (``push imm / popfd`` for the flags, then one ``mov`` per
register, which changes no flag), to be put at the top of ``body``.

Exceptions: ``trap_data()`` is data text holding an IDT whose gates lead to
stubs ``trap_<vector>`` that save eax in ``trap_eax`` and power off with the
vector as the status, so ``r.exit_status`` is the vector, ``r.registers``
(but eax) are the registers at the handler's entry and the frame the CPU
pushed is at ``esp``: ``frame(s, r, n)``.  ``TRAP_SETUP`` loads that IDT and
(through its GDT, ``load_tr``) a TSS whose esp0 is ``KSTACK_TOP``;
``enter_user(label)`` irets to ring 3.
Memory is identity-mapped (``paging_on()`` keeps it so), so a va read by the
test through ``s.guest_read`` is its pa.
"""

from __future__ import annotations

from emu import isa
from emu.asm import assemble
from emu.system import Config, Result, System

STACK_TOP = 0x80000       # ring-0 stack (and TSS esp0: KSTACK_TOP)
KSTACK_TOP = STACK_TOP
USTACK_TOP = 0x90000      # ring-3 stack of enter_user
PGDIR = 0xA0000           # paging_on's page directory
PGTAB = 0xA1000           # its one page table: va 0..4 MiB, identity
FLAG_BITS = {"CF": isa.CF, "ZF": isa.ZF, "SF": isa.SF, "IF": isa.IF, "OF": isa.OF}
TRAP_VECTORS = tuple(range(33)) + (0x80,)
MEM_MIB = 1               # guest RAM of a snippet run (all of the above fit)



def load_tr(tss: str, selector: int = 0x28) -> str:
    """Assembly: point the GDT descriptor ``selector`` of ``trap_data`` (0x28
    or 0x30) at the TSS labelled ``tss``, load the GDT and ltr it.  Changes
    eax (not the flags)."""
    return "".join([f"    pushfd\n    mov eax, {tss}\n",
                    *(f"    mov [gdt + {selector + off:#x}], {reg}\n{shift}"
                      for off, reg, shift in ((2, "al", ""), (3, "ah", "    shr eax, 16\n"),
                                              (4, "al", ""), (7, "ah", ""))),
                    f"    lgdt [gdt_desc]\n    mov eax, {selector:#x}\n    ltr ax\n    popfd\n"])


TRAP_SETUP = "    lidt [idt_desc]\n" + load_tr("tss")


def run_snippet(body: str, mode: str = "native", setup: str = "", data: str = "",
                **config) -> tuple[System, Result]:
    """Assemble ``body`` into the kernel above, run it; (system, result).
    ``config`` are ``Config`` fields (``mem_mib`` defaults to ``MEM_MIB``:
    every run hashes all of guest RAM, so small is fast)."""
    source = "\n".join([
        "org 0x1000",
        "_start:",
        f"    mov esp, {STACK_TOP:#x}",
        setup,
        body,
        "    out 0xF4, eax",
        "align 16",
        data,
        ""])
    image = assemble(source, "<snippet>")
    config.setdefault("mem_mib", MEM_MIB)
    s = System(image, Config(mode=mode, **config))
    return s, s.run()


def flag_value(flags: str | set | tuple = ()) -> int:
    """EFLAGS with the named flags ("CF ZF ...") set, bit 1 included."""
    names = flags.split() if isinstance(flags, str) else flags
    value = isa.EFLAGS_FIXED
    for name in names:
        value |= FLAG_BITS[name.upper()]
    return value


def init(flags: str | set | tuple = (), **registers: int) -> str:
    """Assembly loading EFLAGS with exactly ``flags`` (IF included when
    named), then each register; esp last."""
    lines = [f"    push {flag_value(flags):#x}", "    popfd"]
    order = sorted(registers, key=lambda name: name == "esp")
    lines += [f"    mov {name}, {registers[name] & 0xFFFFFFFF:#x}" for name in order]
    return "\n".join(lines) + "\n"


def regs(result: Result) -> dict[str, int]:
    """The final registers by name (eax .. edi, eip, eflags, cr0..cr4, cpl)."""
    return dict(result.registers)


def flags(result: Result) -> set[str]:
    """Names of the flags set in the final EFLAGS: CF ZF SF OF IF."""
    ef = result.registers["eflags"]
    return {name for name, bit in FLAG_BITS.items() if ef & bit}


def read32(s: System, pa: int) -> int:
    return int.from_bytes(s.guest_read(pa, 4), "little")


def words(s: System, pa: int, n: int) -> list[int]:
    """``n`` dwords of guest-physical memory from ``pa``."""
    return [read32(s, pa + 4 * i) for i in range(n)]


def sym(s: System, name: str) -> int:
    """The address of a label of the snippet."""
    return s.image.symbols[name]


def var(s: System, name: str) -> int:
    """The dword at a label of the snippet."""
    return read32(s, sym(s, name))


# --- exceptions ----------------------------------------------------------------
def trap_data(gates: dict[int, int] | None = None, limit: int | None = None,
              handlers: dict[int, str] | None = None) -> str:
    """The IDT, its descriptor, a TSS and the stubs (see the module doc).

    Every vector of ``TRAP_VECTORS`` gets an interrupt gate (0x8E00) to its
    stub; ``gates`` overrides attributes by vector (0 makes a gate not
    present), ``handlers`` replaces the handler by a label; ``limit`` is the
    IDT limit (default 256 entries)."""
    attrs = {v: 0x8E00 for v in TRAP_VECTORS}
    attrs.update(gates or {})
    handlers = handlers or {}
    lines = []
    for v in TRAP_VECTORS:
        lines += [f"trap_{v}:", "    mov [trap_eax], eax", f"    mov eax, {v}",
                  "    out 0xF4, eax"]
    lines += ["align 8", "idt_desc:",
              f"    dw {256 * 8 - 1 if limit is None else limit:#x}", "    dd idt",
              "align 8", "idt:"]
    for v in range(256):
        if v in attrs:
            handler = handlers.get(v, f"trap_{v}" if v in TRAP_VECTORS else "0")
            lines.append(f"    dd {handler}, {attrs[v]:#x}")
        else:
            lines.append("    dd 0, 0")
    lines += ["tss:", "    dd 0", f"    dd {KSTACK_TOP:#x}", "    times 24 dd 0",
              "trap_eax: dd 0",
              # null, four flat segments (not read), two TSS descriptors (0x28, 0x30)
              "align 8", "gdt:", "    times 10 dd 0",
              "    dw 103, 0, 0x8900, 0", "    dw 103, 0, 0x8900, 0",
              "gdt_desc:", "    dw 0x37", "    dd gdt"]
    return "\n".join(lines) + "\n"


def frame(s: System, r: Result, n: int) -> list[int]:
    """The ``n`` dwords at the handler's esp: [error code,] eip, cs, eflags
    [, esp, ss]."""
    return words(s, r.registers["esp"], n)


def enter_user(label: str, eflags: int = 0x2, esp: int = USTACK_TOP) -> str:
    """Assembly: iret to ring 3 at ``label`` with the given EFLAGS and esp."""
    return (f"    push 0x23\n    push {esp:#x}\n    push {eflags:#x}\n"
            f"    push 0x1B\n    push {label}\n    iret\n")


def paging_on(hole: int | None = None, readonly: int | None = None,
              supervisor: int | None = None) -> str:
    """Assembly: identity-map va 0..4 MiB with 4 KiB pages (P W U), leave the
    page at ``hole`` not present, make ``readonly`` read-only and
    ``supervisor`` supervisor-only; turn on paging with CR0.WP.  Changes
    eax, ecx and the flags."""
    lines = [
        "    mov ecx, 0",
        "pg_zero:",
        f"    mov dword [{PGDIR:#x} + ecx*4], 0",
        "    inc ecx",
        "    cmp ecx, 1024",
        "    jne pg_zero",
        f"    mov dword [{PGDIR:#x}], {PGTAB | 7:#x}",
        "    mov ecx, 0",
        "pg_map:",
        "    mov eax, ecx",
        "    shl eax, 12",
        "    or eax, 7",
        f"    mov [{PGTAB:#x} + ecx*4], eax",
        "    inc ecx",
        "    cmp ecx, 1024",
        "    jne pg_map"]
    pte = lambda va: f"{PGTAB + (va >> 12) * 4:#x}"  # noqa: E731
    if hole is not None:
        lines.append(f"    mov dword [{pte(hole)}], 0")
    if readonly is not None:
        lines.append(f"    and dword [{pte(readonly)}], ~2")
    if supervisor is not None:
        lines.append(f"    and dword [{pte(supervisor)}], ~4")
    lines += [f"    mov eax, {PGDIR:#x}", "    mov cr3, eax",
              "    mov eax, cr0", "    or eax, 0x80010000", "    mov cr0, eax"]
    return "\n".join(lines) + "\n"
