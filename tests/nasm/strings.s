; strings: conditional assembly, macros from an include file, escapes
;
; Written as for NASM (nasm -f bin -i tests/nasm/ strings.s).  Prints lines
; built by macros with default and greedy parameters, by %rep with
; %exitrep, by single-line macros with arguments, and from backquoted
; strings with escapes; powers off with the status STATUS.
bits 32
%define CONSOLE_PORT 0xE9
%include "console.mac"

%define TWICE(x) ((x) + (x))
%define VERBOSE

STATUS  equ TWICE(21)

        org 0x1000
_start:
        mov esp, 0x9000
%ifdef VERBOSE
        emit "verbose"
%else
        emit "quiet"
%endif
%ifdef QUIET
        emit "never"
%elifdef VERBOSE
        emit "elifdef", '!'
        emit ""
%endif
        say "Hello", ", ", "world"
%assign n 0
%rep 100
  %if n == 3
    %exitrep
  %endif
        emit {"rep ", '0' + n}
  %assign n n + 1
%endrep
        mov esi, escaped
        mov ecx, escaped_len
print:  mov al, [esi]
        out CONSOLE_PORT, al
        inc esi
        loop print
        mov eax, [answer]
        out 0xF4, eax

section .data
escaped     db `tab\there, quote \`, backslash \\, \x41\102C\n`
escaped_len equ $ - escaped
            align 4, db 0
answer      dd STATUS

section .bss
            alignb 16
scratch     resd 4
