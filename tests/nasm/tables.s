; tables: data in sections, times and %rep tables, strings, character constants
;
; Written as for NASM (nasm -f bin tables.s).  It prints a title measured
; with equ $ - label, the sum of a table of squares built by %rep, a
; four-character constant, a line of dashes made by times, eight bytes of a
; dq, and a string placed at a fixed address by its own section.
bits 32
org 0x1000

SQUARES equ 10

section .text
_start:
        mov esp, 0x9000
        mov esi, title
        mov ecx, title_len
        call write
        mov esi, table                  ; sum the squares of 1..SQUARES
        mov ecx, SQUARES
        xor eax, eax
.sum:   add eax, [esi]
        add esi, 4
        loop .sum
        call write_decimal
        mov dword [word4], 'NASM'       ; little-endian: N A S M
        mov esi, word4
        mov ecx, 4
        call write
        call newline
        mov esi, dashes
        mov ecx, DASHES
        call write
        call newline
        mov esi, letters
        mov ecx, 8
        call write
        call newline
        mov esi, far_text
        mov ecx, far_len
        call write
        mov eax, 0
        out 0xF4, eax

; write: ecx bytes from esi to the console
write:  mov al, [esi]
        out 0xE9, al
        inc esi
        loop write
        ret

newline:
        mov al, 10
        out 0xE9, al
        ret

; write_decimal: eax in decimal, then a newline
write_decimal:
        mov edi, digits_end
        mov ebx, 10
.digit: xor edx, edx
        div ebx
        add dl, '0'
        dec edi
        mov [edi], dl
        test eax, eax
        jnz .digit
        mov esi, edi
        mov ecx, digits_end
        sub ecx, edi
        call write
        jmp newline

section .data
title:      db "Tables in sections", 10
title_len   equ $ - title
table:
%assign n 1
%rep SQUARES
            dd n * n
%assign n n + 1
%endrep
DASHES      equ 3
dashes:     times DASHES db '-'
letters:    dq 0x4847464544434241   ; "ABCDEFGH", little-endian

section .bss
word4:      resd 1
digits:     resb 12
digits_end:

section far start=0x8000
far_text:   db `far away\n`
far_len     equ $ - $$
