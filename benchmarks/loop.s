; loop: the compute-bound benchmark loop, paging off
; 5 instructions per iteration: a load, a store, two ALU ops, a branch.
bits 32
%include "kernel.inc"
ITERATIONS equ 1000000

org 0x1000
_start:
    mov esp, 0x80000
    mov ecx, ITERATIONS
    mov esi, data
    mov eax, 0
.loop:
    add eax, [esi]
    mov [esi + 4], eax
    xor eax, ecx
    dec ecx
    jne .loop
    and eax, 0xFF
    out POWER, eax
align 4096                          ; data on a page of its own: a store beside
data: dd 3, 0                       ; translated code is checked against its bytes
