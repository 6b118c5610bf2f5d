; tlbthrash: a working set larger than the TLB's reach (4 KiB pages)
;
; The same sweep as bigpages, with 4 KiB pages: the kernel maps its first
; 16 MiB with four page tables and sums one dword of each 4 KiB page of
; 8 MiB, three times over.  2048 pages need 2048 TLB entries; the DTLB has
; 64 (4-way): every access misses and walks the page tables.  Compare the
; dtlb misses with bigpages, where two 4 MiB entries cover the whole sweep.
; Under shadow paging the misses are the same, but the first touch of each
; page is also a HIDDEN fault: the VMM builds 2048 sptes.
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
PGDIR       equ 0x100000
PGTABS      equ 0x101000            ; four page tables: identity 0-16 MiB
DATA        equ 0x400000            ; the swept region: 8 MiB
PAGES       equ 2048
ROUNDS      equ 3

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov esi, banner
    call puts
    mov edi, PGDIR
    mov ecx, PAGE_SIZE
    call memzero
    mov dword [PGDIR + 0], PGTABS + 0 * PAGE_SIZE | PTE_P | PTE_W
    mov dword [PGDIR + 4], PGTABS + 1 * PAGE_SIZE | PTE_P | PTE_W
    mov dword [PGDIR + 8], PGTABS + 2 * PAGE_SIZE | PTE_P | PTE_W
    mov dword [PGDIR + 12], PGTABS + 3 * PAGE_SIZE | PTE_P | PTE_W
    mov ecx, 0                      ; 4096 PTEs, one per 4 KiB page
.map:
    mov eax, ecx
    shl eax, 12
    or eax, PTE_P | PTE_W
    mov [PGTABS + ecx*4], eax
    inc ecx
    cmp ecx, 4096
    jne .map
    mov eax, PGDIR
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax
    call sweep
    mov esi, msg_sum
    call puts
    call print_hex
    call newline
    mov eax, [PGTABS + (DATA >> 12) * 4]    ; the hardware set A and D in the PTE
    mov esi, msg_pte
    call puts
    call print_hex
    call newline
    mov eax, 0
    call poweroff

; sweep: write page i's number into it, then read one dword of every page
; ROUNDS times; returns the sum in eax
sweep:
    mov ecx, 0
.write:
    mov edx, ecx
    shl edx, 12
    mov [DATA + edx], ecx
    inc ecx
    cmp ecx, PAGES
    jne .write
    mov eax, 0
    mov ebx, ROUNDS
.round:
    mov ecx, 0
.read:
    mov edx, ecx
    shl edx, 12
    add eax, [DATA + edx]
    inc ecx
    cmp ecx, PAGES
    jne .read
    dec ebx
    jne .round
    ret

trap:
    mov esi, msg_trap
    call puts
    mov eax, [eax + TF_VEC]
    call print_dec
    call newline
    mov eax, 99
    call poweroff

banner:   db "tlbthrash: 8 MiB swept through 2048 4 KiB pages", 10, 0
msg_sum:  db "sum of the page numbers, 3 rounds: ", 0
msg_pte:  db "PTE of the first data page:         ", 0
msg_trap: db "unexpected trap ", 0

%include "lib.inc"
