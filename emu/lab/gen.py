"""Generated paging kernels for the lab's checks: seeded, each a random
little world of page-table entries and accesses whose every result x86
defines, so that native is the answer.

A kernel maps eight data pages at va 0x40000000 to frames drawn from a
pool of twelve, with random P, W and U; then it makes random reads and
writes from ring 0 and ring 3 (each #PF printed with CR2 and the error
code by the guest's handler, which goes on with the next access), and --
from level 4 -- rewrites entries between accesses, each rewrite followed
by an INVLPG of the page or a CR3 load (several rewrites before one event
at level 6).  From level 3 it prints every data gpte's A and D bits at the
end.  ``source(seed, level)`` is the program text.
"""

from __future__ import annotations

import random

DATA_VA = 0x40000000
POOL = 0x300000
PAGES, FRAMES, OPS = 8, 12, 28

HEAD = """\
bits 32
%include "kernel.inc"
KSTACK_TOP  equ 0x80000
USTACK_TOP  equ 0x90000
PGDIR       equ 0x100000
KPT         equ 0x101000
DATA_PT     equ 0x102000

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov ecx, 0
.fill:
    mov eax, ecx
    shl eax, 12
    lea edx, [ecx + 0x1000]
    mov [0x{pool:x} + eax], edx
    inc ecx
    cmp ecx, {frames}
    jne .fill
    mov edi, DATA_PT
    mov ecx, PAGE_SIZE
    call memzero
    call map_kernel
    mov ecx, 0
.user:
    or dword [KPT + ecx*4], PTE_U
    inc ecx
    cmp ecx, 1024
    jne .user
    mov dword [PGDIR + 0x{pdx:x} * 4], DATA_PT | PTE_P | PTE_W | PTE_U
"""

TAIL = """\
    mov eax, 0
    call poweroff

user_op:
    pop eax
    mov [user_ret], eax
    mov [resume], eax
    jmp enter_user

trap:
    mov ebx, eax
    cmp dword [ebx + TF_VEC], T_PF
    je resume_trap
    cmp dword [ebx + TF_VEC], T_SYSCALL
    jne .other
    mov eax, [ebx + TF_EAX]
    call print_line
    mov eax, [resume]
    mov [ebx + TF_EIP], eax
    mov dword [ebx + TF_CS], KERNEL_CS
    ret
.other:
    mov eax, 99
    call poweroff

user_ret: dd 0

%include "lab.inc"
%include "lib.inc"
"""


def _pte(rng: random.Random) -> int:
    if rng.random() < 0.12:
        return 0
    frame = POOL + rng.randrange(FRAMES) * 4096
    return frame | 1 | (2 if rng.random() < 0.55 else 0) | (4 if rng.random() < 0.6 else 0)


def source(seed: int, level: int) -> str:
    rng = random.Random(f"emu-lab-{seed}-{level}")
    out = [HEAD.format(pool=POOL, frames=FRAMES, pdx=DATA_VA >> 22)]
    for i in range(PAGES):
        out.append(f"    mov dword [DATA_PT + {i * 4}], 0x{_pte(rng):08x}\n")
    out.append("    call paging_on\n")
    user = []
    pending = 0
    for k in range(OPS):
        if level >= 4 and rng.random() < 0.25:
            page = rng.randrange(PAGES)
            out.append(f"    mov dword [DATA_PT + {page * 4}], 0x{_pte(rng):08x}\n")
            pending += 1
            if level < 6 or pending >= 3 or rng.random() < 0.3:
                if rng.random() < 0.5:
                    out.append(f"    invlpg [0x{DATA_VA + page * 4096:x}]\n")
                    if pending > 1:          # the others too: a CR3 load covers all
                        out.append("    mov eax, cr3\n    mov cr3, eax\n")
                else:
                    out.append("    mov eax, cr3\n    mov cr3, eax\n")
                pending = 0
            continue
        if pending:
            out.append("    mov eax, cr3\n    mov cr3, eax\n")
            pending = 0
        va = DATA_VA + rng.randrange(PAGES) * 4096 + rng.randrange(1024) * 4
        write = rng.random() < 0.5
        value = rng.randrange(1 << 16)
        body = (f"    mov dword [0x{va:x}], 0x{value:x}\n    mov eax, 0x{value:x}\n" if write
                else f"    mov eax, [0x{va:x}]\n")
        if rng.random() < 0.5:
            user.append(f"u_op{k}:\n{body}    int 0x80\n")
            out.append(f"    mov esi, u_op{k}\n    call user_op\n    mov esp, KSTACK_TOP\n")
        else:
            out.append(f"    mov dword [resume], .op{k}\n{body}    call print_line\n"
                       f".op{k}:\n    mov esp, KSTACK_TOP\n")
    if pending:
        out.append("    mov eax, cr3\n    mov cr3, eax\n")
    if level >= 3:
        for i in range(PAGES):
            out.append(f"    mov eax, [DATA_PT + {i * 4}]\n    and eax, PTE_A | PTE_D\n"
                       "    call print_line\n")
    out.append(TAIL)
    out.extend(user)
    return "".join(out)
