; lab_swap: more pages than the machine has -- the host must reclaim
;
; With paging off, the kernel writes i + round to the last word of 300
; pages from 0x400000, three rounds, then reads every page back and
; counts those that do not hold i + 2.  Two copies on a 1 MiB machine
; (256 pages for both): the host swaps pages out and back in, through the
; VMM's hooks, and neither copy may lose or see a page of the other.
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
NPAGES      equ 300
BASE        equ 0x400FFC

org 0x1000
_start:
    mov esp, KSTACK_TOP
    mov ebx, 0
.round:
    mov ecx, 0
.w:
    mov edx, ecx
    shl edx, 12
    lea eax, [ecx + ebx]
    mov [BASE + edx], eax
    inc ecx
    cmp ecx, NPAGES
    jne .w
    inc ebx
    cmp ebx, 3
    jne .round
    mov ecx, 0
    mov ebx, 0
.r:
    mov edx, ecx
    shl edx, 12
    lea eax, [ecx + 2]
    cmp [BASE + edx], eax
    je .ok
    inc ebx
.ok:
    inc ecx
    cmp ecx, NPAGES
    jne .r
    mov esi, msg
    call puts
    mov eax, ebx
    call print_dec
    call newline
    mov eax, ebx
    call poweroff

trap:
    mov eax, 99
    call poweroff

msg: db "lab_swap: pages that lost their data: ", 0

%include "lib.inc"
