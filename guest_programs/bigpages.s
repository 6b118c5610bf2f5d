; bigpages: 4 MiB pages (CR4.PSE) -- one TLB entry covers 1024 pages
;
; The kernel maps its first 16 MiB with four 4 MiB pages (PDE.PS=1) and
; sums one dword of each 4 KiB page of 8 MiB, three times over.  With 4 MiB
; pages the whole 8 MiB takes two large TLB entries: almost no TLB misses
; natively.  Compare the dtlb misses with tlbthrash, which does the same
; sweep with 4 KiB pages.  Under shadow paging the shadow maps the guest's
; 4 MiB pages with 4 KiB entries, so the reach is lost: the misses come back.
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
PGDIR       equ 0x100000
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
    mov dword [PGDIR + 0], 0x000000 | PTE_P | PTE_W | PTE_PS
    mov dword [PGDIR + 4], 0x400000 | PTE_P | PTE_W | PTE_PS
    mov dword [PGDIR + 8], 0x800000 | PTE_P | PTE_W | PTE_PS
    mov dword [PGDIR + 12], 0xC00000 | PTE_P | PTE_W | PTE_PS
    mov eax, cr4
    or eax, CR4_PSE
    mov cr4, eax
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
    mov esi, msg_pde
    call puts
    mov eax, [PGDIR + 4]            ; the hardware set A and D in the PDE
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

banner:   db "bigpages: 8 MiB swept through two 4 MiB pages", 10, 0
msg_sum:  db "sum of the page numbers, 3 rounds: ", 0
msg_pde:  db "PDE of the first 4 MiB data page:   ", 0
msg_trap: db "unexpected trap ", 0

%include "lib.inc"
