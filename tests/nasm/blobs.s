; blobs: files as data -- incbin, and the wide reservations
;
; Written as for NASM (nasm -f bin -i tests/nasm/ blobs.s).  Prints a
; banner kept in a text file (incbin), then a piece of it (a skip and a
; count), checks the layout rest/reso/resy/resz give a nobits section,
; adds up the bytes of a binary table kept in another file and powers off
; with the sum as its status.
bits 32
%include "console.mac"

        org 0x1000
_start:
        mov esp, 0x9000
        mov esi, banner
        mov ecx, banner_len
        call print
        mov esi, piece
        mov ecx, piece_len
        call print
        emit ""
        ; each name of .bss where its size puts it
        cmp dword [sizes], 10           ; rest 1
        jne .bad
        cmp dword [sizes + 4], 32       ; reso 2
        jne .bad
        cmp dword [sizes + 8], 32       ; resy 1
        jne .bad
        cmp dword [sizes + 12], 64 * 3  ; resz 3
        jne .bad
        mov dword [w4 + 64 * 3 - 4], 7  ; the last dword of the space
        emit "layout ok"
        jmp .sum
.bad:   emit "layout wrong"
.sum:   xor eax, eax
        xor ebx, ebx
        mov esi, table
        mov ecx, table_len
.add:   mov bl, [esi]
        add eax, ebx
        inc esi
        loop .add
        out 0xF4, eax

; print ECX bytes from ESI
print:  mov al, [esi]
        out CONSOLE_PORT, al
        inc esi
        loop print
        ret

banner: incbin "banner.txt"
banner_len equ $ - banner
piece:  incbin "banner.txt", 14, 10     ; "banner.txt"
piece_len equ $ - piece
table:  incbin "table.bin"              ; 1, 2, ... 20
table_len equ $ - table
sizes:  dd w2 - w1, w3 - w2, w4 - w3, w_end - w4

section .bss
w1:     rest 1
w2:     reso 2
w3:     resy 1
w4:     resz 3
w_end:
