; lab_inval: every event that makes a stale translation fresh
;
; Each test maps a page to frame A and reads it (the TLB caches it),
; rewrites the PTE to frame B without INVLPG, then makes an event that x86
; defines as invalidating (Intel SDM vol. 3A, 4.10.4.1) and reads again:
; B must show.  The events: a #PF at the address (a write to the page,
; read-only in both mappings: it faults whatever the TLB holds), a CR4.PGE
; toggle, a CR3 load of the same value, a CR0.WP toggle, INVLPG.
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
USTACK_TOP  equ 0x90000
PGDIR       equ 0x100000
KPT         equ 0x101000
DATA_PT     equ 0x102000
DATA_VA     equ 0x40000000
FRAME_A     equ 0x300000
FRAME_B     equ 0x301000

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov esi, banner
    call puts
    mov dword [FRAME_A], 0xAAAA
    mov dword [FRAME_B], 0xBBBB
    mov edi, DATA_PT
    mov ecx, PAGE_SIZE
    call memzero
    call map_kernel
    mov dword [PGDIR + (DATA_VA >> 22) * 4], DATA_PT | PTE_P | PTE_W
    call paging_on
    mov ecx, 0
.test:
    mov dword [DATA_PT + ecx*4], FRAME_A | PTE_P    ; page ecx -> A, read-only
    mov edx, ecx
    shl edx, 12
    mov eax, [DATA_VA + edx]                        ; cached
    mov dword [DATA_PT + ecx*4], FRAME_B | PTE_P    ; -> B, no INVLPG
    cmp ecx, 0
    jne .pge
    mov dword [resume], .read                       ; a #PF at the address
    mov dword [DATA_VA + edx], 1
.pge:
    cmp ecx, 1
    jne .cr3
    mov eax, cr4
    or eax, CR4_PGE
    mov cr4, eax
    and eax, ~CR4_PGE
    mov cr4, eax
.cr3:
    cmp ecx, 2
    jne .wp
    mov eax, cr3
    mov cr3, eax
.wp:
    cmp ecx, 3
    jne .invlpg
    mov eax, cr0
    and eax, ~CR0_WP
    mov cr0, eax
    or eax, CR0_WP
    mov cr0, eax
.invlpg:
    cmp ecx, 4
    jne .read
    invlpg [DATA_VA + edx]
.read:
    mov esp, KSTACK_TOP
    mov eax, [DATA_VA + edx]                        ; B
    call print_line
    inc ecx
    cmp ecx, 5
    jne .test
    mov eax, 0
    call poweroff

trap:
    mov ebx, eax
    cmp dword [ebx + TF_VEC], T_PF
    jne .other
    jmp resume_trap
.other:
    mov esi, msg_trap
    call puts
    mov eax, [ebx + TF_VEC]
    call print_line
    mov eax, 99
    call poweroff

banner:   db "lab_inval: stale translations made fresh", 10, 0
msg_trap: db "unexpected trap ", 0

%include "lab.inc"
%include "lib.inc"
