; two PTEs in one page table changed, each followed by INVLPG; then read both
bits 32
%include "kernel.inc"
KSTACK_TOP equ 0x80000
PGDIR equ 0x100000
PGTAB equ 0x101000
org 0x1000
_start:
    mov esp, KSTACK_TOP
    mov dword [0x200000], 0xA0
    mov dword [0x201000], 0xA1
    mov dword [0x202000], 0xB0
    mov dword [0x203000], 0xB1
    mov edi, PGDIR
    mov ecx, 8192
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
    mov dword [PGTAB + 0x300*4], 0x200000 | PTE_P | PTE_W   ; va 0x300000 -> A0
    mov dword [PGTAB + 0x301*4], 0x201000 | PTE_P | PTE_W   ; va 0x301000 -> A1
    mov eax, PGDIR
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG
    mov cr0, eax
    mov eax, [0x300000]
    mov eax, [0x301000]
    mov dword [PGTAB + 0x300*4], 0x202000 | PTE_P | PTE_W   ; -> B0
    invlpg [0x300000]
    mov dword [PGTAB + 0x301*4], 0x203000 | PTE_P | PTE_W   ; -> B1
    invlpg [0x301000]
    mov eax, [0x300000]
    call print_hex
    call newline
    mov eax, [0x301000]
    call print_hex
    call newline
    mov eax, 0
    call poweroff
trap:
    mov eax, 99
    call poweroff
%include "lib.inc"
