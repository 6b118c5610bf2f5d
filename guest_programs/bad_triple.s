; bad_triple: a triple fault -- a page fault with no #PF and no #DF handler
;
; The kernel turns paging on and reads an unmapped page, but it has marked
; the IDT gates of #PF (14) and #DF (8) not present.  Delivering the #PF
; finds its gate not present: a #NP while delivering a #PF becomes a double
; fault.  Delivering the #DF finds its gate not present too: a fault while
; delivering a double fault is a triple fault, and the machine shuts down.
; The emulator ends the run with outcome "crash" (exit status 3) and says
; why; the console keeps what the kernel printed before.
;
; Under shadow paging the #PF is a TRUE fault: the VMM injects it into the
; guest, and the triple fault happens during that injection.
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
PGDIR       equ 0x100000
PGTAB       equ 0x101000            ; identity 0-4 MiB, with a hole
HOLE        equ 0x300000

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov esi, banner
    call puts
    mov dword [idt + T_PF*8 + 4], GATE_INT & ~0x8000    ; not present
    mov dword [idt + T_DF*8 + 4], GATE_INT & ~0x8000    ; not present
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
    mov dword [PGTAB + (HOLE >> 12) * 4], 0
    mov eax, PGDIR
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax
    mov esi, msg_touch
    call puts
    mov eax, [HOLE]                 ; #PF -> #NP -> #DF -> #NP: shutdown
    mov esi, msg_never
    call puts
    mov eax, 0
    call poweroff

trap:                               ; the gates that are present lead here
    mov esi, msg_trap
    call puts
    mov eax, [eax + TF_VEC]
    call print_dec
    call newline
    mov eax, 99
    call poweroff

banner:     db "bad_triple: #PF and #DF gates not present", 10, 0
msg_touch:  db "reading an unmapped page: #PF, #NP -> #DF, #NP -> triple fault", 10, 0
msg_never:  db "never printed", 10, 0
msg_trap:   db "trap ", 0

%include "lib.inc"
