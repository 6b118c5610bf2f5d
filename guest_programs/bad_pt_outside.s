; bad_pt_outside: a page table entry that points past guest RAM
;
; The kernel maps va 0x300000 to frame 0x04000000 (64 MiB), but the machine
; has 16 MiB of RAM.  The walk succeeds -- the PTE is present -- and the
; access goes to a physical address that does not exist.  The emulator ends
; the run with outcome "crash" (exit status 3) and the report "pa 0x04000000
; is outside memory (16 MiB)" -- a bus error, not open-bus reads of all ones.  Under shadow paging the VMM's PMap finds no RAM for that
; guest-physical page and ends the run the same way: the guest can never
; reach a machine page the PMap does not give it.
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
PGDIR       equ 0x100000
PGTAB       equ 0x101000            ; identity 0-4 MiB, but one bad entry
WINDOW      equ 0x300000
NOWHERE     equ 0x04000000          ; 64 MiB: past the end of guest RAM

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov esi, banner
    call puts
    mov edi, PGDIR
    mov ecx, PAGE_SIZE
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
    mov dword [PGTAB + (WINDOW >> 12) * 4], NOWHERE | PTE_P | PTE_W
    mov eax, PGDIR
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax
    mov esi, msg_touch
    call puts
    mov eax, [WINDOW]               ; pa 0x04000000: no RAM there
    mov esi, msg_never
    call puts
    mov eax, 0
    call poweroff

trap:
    mov esi, msg_trap
    call puts
    mov eax, [eax + TF_VEC]
    call print_dec
    call newline
    mov eax, 99
    call poweroff

banner:     db "bad_pt_outside: a PTE maps va 0x00300000 to pa 0x04000000 (RAM is 16 MiB)", 10, 0
msg_touch:  db "reading va 0x00300000", 10, 0
msg_never:  db "never printed", 10, 0
msg_trap:   db "trap ", 0

%include "lib.inc"
