; bad_cr3_outside: CR3 points past guest RAM, and paging is turned on
;
; The kernel loads CR3 with 0x08000000 (128 MiB; the machine has 16 MiB of
; RAM) and sets CR0.PG.  The very next instruction fetch walks a page
; directory that does not exist.  The emulator ends the run with outcome
; "crash" (exit status 3) and the report "pa 0x08000000 is outside memory".  Under shadow paging the
; VMM's own walk of the guest's page directory reaches the missing RAM and
; ends the run the same way.
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
NOWHERE     equ 0x08000000          ; 128 MiB: past the end of guest RAM

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov esi, banner
    call puts
    mov eax, NOWHERE
    mov cr3, eax                    ; paging is off: nothing walks it yet
    mov esi, msg_on
    call puts
    mov eax, cr0
    or eax, CR0_PG
    mov cr0, eax                    ; the next fetch walks pa 0x08000000
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

banner:     db "bad_cr3_outside: CR3 = 0x08000000 (RAM is 16 MiB)", 10, 0
msg_on:     db "turning paging on", 10, 0
msg_never:  db "never printed", 10, 0
msg_trap:   db "trap ", 0

%include "lib.inc"
