; structs: a process table laid out with struc and filled with istruc
;
; Written as for NASM (nasm -f bin structs.s).  A process record is a
; struc; the table holds three of them, written with istruc/at/iend.  The
; program walks the table by proc_size, prints each process's name and
; state, sums the pids, marks the second process as running through a
; field offset, and prints the record size and the offset of a field.
bits 32
org 0x1000

struc proc
    .pid:    resd 1
    .name:   resb 6                 ; NUL-terminated, at most 5 letters
             alignb 4
    .state:  resd 1                 ; READY or RUNNING
    .next:   resd 1                 ; address of the next record, 0 at the end
endstruc

READY   equ 'r'
RUNNING equ 'R'

section .text
_start:
        mov esp, 0x9000
        mov dword [table + proc_size + proc.state], RUNNING
        mov ebx, table
        xor ebp, ebp
.each:  lea esi, [ebx + proc.name]
        call write_string
        mov al, ' '
        out 0xE9, al
        mov eax, [ebx + proc.state]
        out 0xE9, al
        mov al, 10
        out 0xE9, al
        add ebp, [ebx + proc.pid]
        mov ebx, [ebx + proc.next]
        test ebx, ebx
        jnz .each
        mov eax, ebp
        call write_decimal
        mov eax, proc_size
        call write_decimal
        mov eax, proc.state
        call write_decimal
        mov eax, 0
        out 0xF4, eax

; write_string: the NUL-terminated string at esi
write_string:
        mov al, [esi]
        test al, al
        jz .done
        out 0xE9, al
        inc esi
        jmp write_string
.done:  ret

; write_decimal: eax in decimal, then a newline
write_decimal:
        mov edi, digits_end
        mov ecx, 10
.digit: xor edx, edx
        div ecx
        add dl, '0'
        dec edi
        mov [edi], dl
        test eax, eax
        jnz .digit
        mov esi, edi
        mov byte [digits_end], 0
        call write_string
        mov al, 10
        out 0xE9, al
        ret

section .data
table:  istruc proc
            at proc.pid,   dd 1
            at proc.name,  db "init", 0
            at proc.state, dd READY
            at proc.next,  dd second
        iend
second: istruc proc
            at proc.pid,   dd 7
            at proc.name,  db "shell", 0
            at proc.state, dd READY
            at proc.next,  dd third
        iend
third:  istruc proc
            at proc.pid,   dd 42
            at proc.name,  db "cron", 0
            at proc.state, dd READY
            at proc.next,  dd 0
        iend
digits:     times 10 db 0
digits_end: db 0
