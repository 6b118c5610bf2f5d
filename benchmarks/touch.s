; touch: write one dword in each of PAGES pages, once (4 MiB guest pages)
; Natively each page costs a TLB miss; under shadow paging each is a
; hidden fault (the shadow maps 4 MiB guest pages with 4 KiB sptes).
bits 32
%include "kernel.inc"
PAGES      equ 20000
BASE       equ 0x400000
PGDIR      equ 0x100000

org 0x1000
_start:
    mov esp, 0x80000
    mov ecx, 0
.pd:
    mov eax, ecx
    shl eax, 22
    or eax, PTE_P | PTE_W | PTE_PS
    mov [PGDIR + ecx*4], eax
    inc ecx
    cmp ecx, 32                     ; 128 MiB
    jne .pd
    mov eax, cr4
    or eax, CR4_PSE
    mov cr4, eax
    mov eax, PGDIR
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax
    mov ecx, 0
    mov edi, BASE
.touch:
    mov [edi], ecx
    add edi, PAGE_SIZE
    inc ecx
    cmp ecx, PAGES
    jne .touch
    mov eax, 0
    out POWER, eax
