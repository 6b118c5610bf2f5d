; loop_paging: the benchmark loop with paging on (its pages hit in the TLB)
bits 32
%include "kernel.inc"
ITERATIONS equ 1000000
PGDIR      equ 0x100000
PGTAB      equ 0x101000

org 0x1000
_start:
    mov esp, 0x80000
    mov edi, PGDIR
    mov ecx, 0
.zero:
    mov dword [edi + ecx*4], 0
    inc ecx
    cmp ecx, 1024
    jne .zero
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
    mov eax, PGDIR
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax
    mov ecx, ITERATIONS
    mov esi, data
    mov eax, 0
.loop:
    add eax, [esi]
    mov [esi + 4], eax
    xor eax, ecx
    dec ecx
    jne .loop
    and eax, 0xFF
    out POWER, eax
align 4096
data: dd 3, 0
