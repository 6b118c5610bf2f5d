; hello: the smallest kernel -- print a line and power off
bits 32
%include "kernel.inc"

KSTACK_TOP equ 0x80000

org 0x1000
_start:
    mov esp, KSTACK_TOP
    mov esi, greeting
    call puts
    mov eax, 0
    call poweroff

trap:                           ; no interrupts are enabled here
    ret

greeting: db "Hello from a guest kernel!", 10, 0

%include "lib.inc"
