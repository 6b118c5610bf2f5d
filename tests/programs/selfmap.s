; selfmap: a page directory that maps itself (PDE 1023), read and written through
; the window it opens; the A and D bits the hardware sets, read back there.
;
; What each line must be (Intel SDM vol. 3, 4.8 and 4.10):
;  1 0x12345678  written at VA1, read at VA2: both map FRAME
;  2 0x00200063  VA1's PTE: written through, so A and D
;  3 0x00200021  VA2's PTE: read only, so A
;  4 0x00102063  PDE 1: a PTE too, for the window's page SELF+4K (written: D)
;  5 0x00100063  PDE 1023: the PTE of SELFPD, written through: D
;  6 0x00101023  PDE 0: walked, never a PTE of a written page: no D
;  7 0x0000cafe  CR0.WP=0: the supervisor writes through the read-only VA2
;  8 0x00200061  ... which sets VA2's D, read-only or not
;  9 trap 14 0x00000003 0x00401010  WP=1: the same write faults (P|W)
; 10 0x00000000  it was not written
; 11 0x00200003  A and D cleared without invlpg: the TLB's entry serves the read
; 12 0x00200023  after invlpg the read walks and sets A
; 13 0x00200063  a write sets D
; 14 trap 14 0x00000000 0xffc01000  PDE 1 cleared: the window's page is gone
;    (and VA1 still hits its TLB entry: no second trap)
; 15 0x12345678  PDE 1 back (with U), CR3 reloaded: the old entries are read
; 16 0x00200063
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
PGDIR       equ 0x100000
PGTAB       equ 0x101000
PGTAB2      equ 0x102000            ; va 0x400000..
SELF        equ 0xFFC00000          ; the page tables, through PDE 1023
SELFPD      equ 0xFFFFF000          ; the directory itself
VA1         equ 0x400000
VA2         equ 0x401000
FRAME       equ 0x200000

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov edi, PGDIR
    mov ecx, PAGE_SIZE*3
    call memzero
    mov dword [PGDIR], PGTAB | PTE_P | PTE_W
    mov dword [PGDIR + 1023*4], PGDIR | PTE_P | PTE_W
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
    or eax, CR0_PG
    mov cr0, eax
    ; a new table for PDE 1, made through the self map
    mov dword [SELFPD + 1*4], PGTAB2 | PTE_P | PTE_W
    ; it is zero: map VA1 and VA2 to the same frame through SELF
    mov dword [SELF + (VA1 >> 12)*4], FRAME | PTE_P | PTE_W
    mov dword [SELF + (VA2 >> 12)*4], FRAME | PTE_P
    mov dword [VA1 + 8], 0x12345678
    mov eax, [VA2 + 8]
    call print_hex
    call newline
    ; the A/D bits of both, read back
    mov eax, [SELF + (VA1 >> 12)*4]
    call print_hex
    call newline
    mov eax, [SELF + (VA2 >> 12)*4]
    call print_hex
    call newline
    mov eax, [SELFPD + 1*4]
    call print_hex
    call newline
    mov eax, [SELFPD + 1023*4]
    call print_hex
    call newline
    mov eax, [PGDIR]          ; identity
    call print_hex
    call newline
    ; WP off: a supervisor write to the read-only alias goes through
    mov dword [VA2 + 12], 0xCAFE
    mov eax, [VA1 + 12]
    call print_hex
    call newline
    mov eax, [SELF + (VA2 >> 12)*4]
    call print_hex
    call newline
    ; WP on: it faults
    mov eax, cr0
    or eax, CR0_WP
    mov cr0, eax
    mov dword [resume], after
    mov dword [VA2 + 16], 0xBEEF
after:
    mov eax, [VA1 + 16]
    call print_hex
    call newline
    ; clear the accessed bit through the self map, without invlpg: the TLB
    ; still has it, so a read does not set it again
    and dword [SELF + (VA1 >> 12)*4], ~(PTE_A | PTE_D)
    mov eax, [VA1]
    mov eax, [SELF + (VA1 >> 12)*4]
    call print_hex
    call newline
    invlpg [VA1]
    mov eax, [VA1]
    mov eax, [SELF + (VA1 >> 12)*4]
    call print_hex
    call newline
    mov dword [VA1], 1
    mov eax, [SELF + (VA1 >> 12)*4]
    call print_hex
    call newline
    ; unmap the page table itself via SELFPD: SELF+4K window faults
    mov dword [SELFPD + 1*4], 0
    invlpg [SELF + 0x1000]
    mov dword [resume], after2
    mov eax, [SELF + 0x1000]
after2:
    mov dword [resume], after3
    mov eax, [VA1]
after3:
    ; remap and the old entries are back
    mov dword [SELFPD + 1*4], PGTAB2 | PTE_P | PTE_W | PTE_U
    mov eax, cr3
    mov cr3, eax
    mov eax, [VA1 + 8]
    call print_hex
    call newline
    mov eax, [SELF + (VA1 >> 12)*4]
    call print_hex
    call newline
    mov eax, 0
    call poweroff

trap:
    mov ebx, eax
    mov esi, msg_trap
    call puts
    mov eax, [ebx + TF_VEC]
    call print_dec
    mov al, ' '
    call putc
    mov eax, [ebx + TF_ERR]
    call print_hex
    mov al, ' '
    call putc
    mov eax, cr2
    call print_hex
    call newline
    mov eax, [resume]
    mov [ebx + TF_EIP], eax
    ret

msg_trap: db "trap ", 0
align 4
resume: dd 0
%include "lib.inc"
