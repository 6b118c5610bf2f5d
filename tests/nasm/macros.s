; macros: NASM-style macros with local labels, %rep and %assign
;
; Written as for NASM (nasm -f bin macros.s): it prints a greeting, the
; last digit of the squares of 1..5 and a countdown, then powers off.
bits 32
org 0x1000

CONSOLE equ 0xE9                ; the emulator's console port
POWER   equ 0xF4                ; power off with the status in eax

%define NEWLINE 10

; print ADDR: the NUL-terminated string at ADDR (each call has its own labels)
%macro print 1
        mov esi, %1
%%next: mov al, [esi]
        test al, al
        jz %%done
        out CONSOLE, al
        inc esi
        jmp %%next
%%done:
%endmacro

; putc CHAR: one character
%macro putc 1
        mov al, %1
        out CONSOLE, al
%endmacro

section .text
_start:
        mov esp, stack_top
        print hello
        print squares
%assign i 1
%rep 5
        putc '0' + i * i % 10   ; the last digit of i squared
%assign i i + 1
%endrep
        putc NEWLINE
        print countdown
        mov ecx, 5
.again: mov al, '0'
        add al, cl
        out CONSOLE, al
        putc ' '
        loop .again
        print liftoff
        mov eax, 0
        out POWER, eax

section .data
hello:     db "Hello from NASM-style code", NEWLINE, 0
squares:   db "last digits of the squares of 1..5: ", 0
countdown: db "countdown: ", 0
liftoff:   db "liftoff", NEWLINE, 0

section .bss
           resb 4096
stack_top:
