; bits: bit scans, double shifts, rotates through CF, cbw/cwde, int3, pause
;
; Written as for NASM (nasm -f bin bits.s): log2 with bsr, the lowest set
; bit with bsf (and bsf of 0, which sets ZF), a 64-bit shift of edx:eax
; with shld/shl, a population count with rcr and adc, a signed byte made a
; dword with cbw and cwde, a breakpoint (int3) taken by its IDT handler,
; and a spin loop with pause; prints what each found, then powers off.
bits 32
org 0x1000

CONSOLE equ 0xE9                ; the emulator's console port
POWER   equ 0xF4                ; power off with the status in eax

section .text
_start:
        mov esp, stack_top
        lidt [idt_desc]
        ; floor(log2(1000)) and the lowest set bit of 0x28
        mov ecx, 1000
        bsr eax, ecx            ; 9
        call print_hex
        mov ecx, 0x28
        bsf eax, ecx            ; 3
        call print_hex
        mov eax, 0x77
        xor ecx, ecx
        bsf eax, ecx            ; ZF=1, eax kept
        jnz .found
        call print_hex          ; 77
.found:
        ; edx:eax <<= 36: the top 32 bits by shld, the rest by shl
        mov edx, 0x00000012
        mov eax, 0x3456789A
        mov ecx, 4
        shld edx, eax, cl
        shl eax, cl
        mov ebx, eax            ; shift by 32 more: a move
        mov eax, edx
        call print_hex          ; 123
        mov eax, ebx
        call print_hex          ; 456789a0
        ; the population count of 0xF0F0: shift each bit into CF, add it
        mov edx, 0xF0F0
        xor ebx, ebx
        mov ecx, 32
.count: rcr edx, 1
        adc ebx, 0
        loop .count
        mov eax, ebx
        call print_hex          ; 8
        ; a signed byte (-5) as a dword, then its absolute value
        mov eax, 0x123456FB
        cbw                     ; ax = 0xFFFB
        cwde                    ; eax = 0xFFFFFFFB
        neg eax
        call print_hex          ; 5
        ; a breakpoint: the handler prints a '!' line and returns
        int3
        ; a spin loop with the hint x86 CPUs want in one
        mov ecx, 3
.spin:  pause
        loop .spin
        mov eax, ecx
        call print_hex          ; 0
        mov eax, 0
        out POWER, eax

; breakpoint: int3's handler (vector 3)
breakpoint:
        push eax
        mov al, '!'
        out CONSOLE, al
        mov al, 10
        out CONSOLE, al
        pop eax
        iret

; print_hex: eax in hexadecimal without leading zeros, then a newline
print_hex:
        pushad
        mov edx, eax
        mov ecx, 8
        xor ebx, ebx            ; 1 once a digit was printed
.digit: rol edx, 4
        mov eax, edx
        and eax, 0xF
        jnz .print
        test ebx, ebx
        jnz .print
        cmp ecx, 1              ; the last digit, even 0
        jne .next
.print: mov al, [digits + eax]
        out CONSOLE, al
        mov ebx, 1
.next:  loop .digit
        mov al, 10
        out CONSOLE, al
        popad
        ret

section .data
digits: db "0123456789abcdef"
align 8
idt_desc:
        dw 4 * 8 - 1            ; vectors 0-3
        dd idt
idt:    times 3 dd 0, 0
        dd breakpoint, 0x8E00   ; the project's gate: handler, attributes
section .bss
        resb 256
stack_top:
