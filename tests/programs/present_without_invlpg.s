; present_without_invlpg: entries made present without invlpg -- the SDM
; needs none for a change of P from 0 to 1 (vol. 3, 4.10.4.3: a not-present
; entry is never cached), so under shadow paging the VMM must see them too,
; table out of sync or not.  F's dword i holds i.
;
; What each line must be:
;  1 0x00000001  a #PF on a PTE not present; the handler maps it (F), the
;                access retries: dword 1 of F
;  2 0x00000402  a PTE made present, never touched before: F+4K, dword 2
;  3 0x00000803  a PDE made present (a new table), never touched: F+8K
;  4 0x00000c04  a page touched, unmapped with invlpg, mapped again to F+12K
;                without one
;  5 0x00000405  a PDE cleared with invlpg, then a new table without one
;  6 0x00000001  one #PF in all
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
PGDIR       equ 0x100000
PGTAB       equ 0x101000
PT2         equ 0x102000
PT3         equ 0x103000
F           equ 0x200000

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov edi, PGDIR
    mov ecx, PAGE_SIZE*4
    call memzero
    mov dword [PGDIR], PGTAB | PTE_P | PTE_W
    mov ecx, 0
.map:
    mov eax, ecx
    shl eax, 12
    or eax, PTE_P | PTE_W
    mov [PGTAB + ecx*4], eax
    inc ecx
    cmp ecx, 1024
    jne .map
    mov ecx, 0
.fill:
    mov [F + ecx*4], ecx
    inc ecx
    cmp ecx, 4096
    jne .fill
    mov dword [PGDIR + 4], PT2 | PTE_P | PTE_W
    mov eax, PGDIR
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax
    ; 1: the PTE made present after a #PF on it (the handler maps it)
    mov dword [resume], 0
    mov eax, [0x400000 + 4]
    call show
    ; 2: a PTE made present, never touched before
    mov dword [PT2 + 4], (F + 0x1000) | PTE_P | PTE_W
    mov eax, [0x401000 + 8]
    call show
    ; 3: a PDE made present (a new table), never touched before
    mov dword [PT3 + 4*4], (F + 0x2000) | PTE_P | PTE_W
    mov dword [PGDIR + 8], PT3 | PTE_P | PTE_W
    mov eax, [0x804000 + 12]
    call show
    ; 4: a page touched, then unmapped with invlpg, then mapped again elsewhere
    ;    without one (P 0->1 again)
    mov eax, [0x401000]
    mov dword [PT2 + 4], 0
    invlpg [0x401000]
    mov dword [PT2 + 4], (F + 0x3000) | PTE_P | PTE_W
    mov eax, [0x401000 + 16]
    call show
    ; 5: the same for the table: PDE cleared with invlpg, a new table without
    mov dword [PGDIR + 8], 0
    invlpg [0x804000]
    mov dword [PGTAB2 + 4*4], (F + 0x1000) | PTE_P | PTE_W
    mov dword [PGDIR + 8], PGTAB2 | PTE_P | PTE_W
    mov eax, [0x804000 + 20]
    call show
    mov eax, [faults]
    call show
    mov eax, 0
    call poweroff

show:
    call print_hex
    call newline
    ret

trap:
    mov ebx, eax
    inc dword [faults]
    mov eax, cr2
    shr eax, 12
    and eax, 0x3FF
    shl eax, 12
    add eax, F
    or eax, PTE_P | PTE_W
    mov ecx, cr2
    shr ecx, 12
    and ecx, 0x3FF
    mov [PT2 + ecx*4], eax          ; map it (no invlpg: the #PF dropped it)
    ret

PGTAB2 equ 0x104000
align 4
resume: dd 0
faults: dd 0
%include "lib.inc"
