; lab_dirty: the guest's accessed and dirty bits, exact
;
; Six pages at va 0x40000000: page 0 is read, page 1 written, page 2 read
; and then written, page 3 never touched; pages 4 and 5 map the same frame
; as page 1, and page 4 is read, page 5 written.  The kernel then prints
; the A (0x20) and D (0x40) bits of each gpte: a VMM that lets the first
; write through a read-only-until-dirty spte gets them wrong.
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
USTACK_TOP  equ 0x90000
PGDIR       equ 0x100000
KPT         equ 0x101000
DATA_PT     equ 0x102000
DATA_VA     equ 0x40000000
FRAMES      equ 0x300000

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov esi, banner
    call puts
    mov edi, DATA_PT
    mov ecx, PAGE_SIZE
    call memzero
    call map_kernel
    mov dword [PGDIR + (DATA_VA >> 22) * 4], DATA_PT | PTE_P | PTE_W
    mov ecx, 0
.map:
    mov eax, ecx
    shl eax, 12
    add eax, FRAMES | PTE_P | PTE_W
    mov [DATA_PT + ecx*4], eax
    inc ecx
    cmp ecx, 4
    jne .map
    mov dword [DATA_PT + 4*4], (FRAMES + PAGE_SIZE) | PTE_P | PTE_W
    mov dword [DATA_PT + 5*4], (FRAMES + PAGE_SIZE) | PTE_P | PTE_W
    call paging_on
    mov eax, [DATA_VA]                          ; page 0: read
    mov dword [DATA_VA + PAGE_SIZE + 8], 0x11   ; page 1: write
    mov eax, [DATA_VA + 2*PAGE_SIZE + 4]        ; page 2: read ...
    mov dword [DATA_VA + 2*PAGE_SIZE + 4], 0x22 ; ... then write
    mov eax, [DATA_VA + 4*PAGE_SIZE + 8]        ; page 4: read (0x11, through the alias)
    mov dword [DATA_VA + 5*PAGE_SIZE + 12], eax ; page 5: write
    mov ecx, 0
.show:
    mov esi, msg_page
    call puts
    mov eax, ecx
    call print_dec
    mov esi, msg_ad
    call puts
    mov eax, [DATA_PT + ecx*4]
    and eax, PTE_A | PTE_D
    call print_line
    inc ecx
    cmp ecx, 6
    jne .show
    mov eax, [DATA_VA + PAGE_SIZE + 12]
    call print_line
    mov eax, 0
    call poweroff

trap:
    mov esi, msg_trap
    call puts
    mov eax, [eax + TF_VEC]
    call print_line
    mov eax, 99
    call poweroff

banner:   db "lab_dirty: A and D bits after reads and writes", 10, 0
msg_page: db "page ", 0
msg_ad:   db ": A|D = ", 0
msg_trap: db "unexpected trap ", 0

%include "lab.inc"
%include "lib.inc"
