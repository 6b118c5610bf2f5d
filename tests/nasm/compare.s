; compare: the compare string instructions as NASM programs use them
;
; Written as for NASM (nasm -f bin compare.s): strlen with repne scasb,
; strcmp with repe cmpsb, a search for a dword with repne scasd going
; backward, and a loop that stops early with loopz; prints what each
; found, then powers off.
bits 32
org 0x1000

CONSOLE equ 0xE9                ; the emulator's console port
POWER   equ 0xF4                ; power off with the status in eax

section .text
_start:
        mov esp, stack_top
        cld
        ; strlen(greeting): scan for the 0 from ecx = -1
        mov edi, greeting
        xor eax, eax
        mov ecx, -1
        repne scasb
        not ecx
        dec ecx                 ; 13
        mov eax, ecx
        call print_number
        ; strcmp(first, second): where they differ and which is smaller
        mov esi, first
        mov edi, second
        mov ecx, first_len
        rep cmpsb               ; NASM's rep is repe on cmps
        mov bl, '<'             ; (the flags of the bytes that differ)
        jb .less
        mov bl, '>'
.less:  mov eax, esi
        sub eax, first + 1      ; the index of the first difference: 4
        call print_number
        mov al, bl
        out CONSOLE, al
        mov al, 10
        out CONSOLE, al
        ; the last 7 in table, searching down from its end
        std
        mov edi, table_end - 4
        mov eax, 7
        mov ecx, table_count
        repnz scasd
        cld
        jne .none
        lea eax, [edi + 4]
        sub eax, table
        shr eax, 2              ; its index: 5
        call print_number
.none:
        ; the first odd byte of bytes, with loopz (and count the tries)
        mov esi, bytes
        mov ecx, bytes_len
        xor ebx, ebx
.scan:  lodsb
        inc ebx
        test al, 1
        loopz .scan             ; go on while even
        mov eax, ebx            ; 3 tries
        call print_number
        mov eax, 0
        out POWER, eax

; print_number: eax in decimal, then a newline (eax < 100)
print_number:
        push ecx
        push edx
        xor edx, edx
        mov ecx, 10
        div ecx                 ; eax = tens, edx = units
        test eax, eax
        jz .units
        add al, '0'
        out CONSOLE, al
.units: mov al, dl
        add al, '0'
        out CONSOLE, al
        mov al, 10
        out CONSOLE, al
        pop edx
        pop ecx
        ret

section .data
greeting    db "Hello, world!", 0
first       db "compare"
first_len   equ $ - first
second      db "compote"
            align 4, db 0
table       dd 3, 7, 1, 9, 4, 7, 2
table_end:
table_count equ (table_end - table) / 4
bytes       db 2, 4, 5, 6, 8
bytes_len   equ $ - bytes

section .bss
            alignb 16
            resb 256
stack_top:
