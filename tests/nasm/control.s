; control: structured control flow and register lists from macros
;
; Written as for NASM (nasm -f bin control.s).  `if`/`else`/`endif` keep
; their labels on NASM's context stack (%push, %repl, %pop, %$label,
; %ifctx) and branch on the opposite of their condition (j%-1);
; `multipush`/`multipop` walk their parameters with %rotate; `sum3`
; names its arguments and its local with %arg and %local.  The program
; classifies a few numbers, nests an if inside another, checks that the
; registers a multipush/multipop pair saves come back, and adds three
; numbers in a function with a stack frame.
bits 32
org 0x1000

%macro if 1
        %push if
        j%-1 %$ifnot
%endmacro

%macro else 0
  %ifctx if
        %repl else
        jmp %$ifend
%$ifnot:
  %else
        %error "expected 'if' before 'else'"
  %endif
%endmacro

%macro endif 0
  %ifctx if
%$ifnot:
        %pop
  %elifctx else
%$ifend:
        %pop
  %else
        %error "expected 'if' or 'else' before 'endif'"
  %endif
%endmacro

%macro multipush 1-*
  %rep %0
        push %1
  %rotate 1
  %endrep
%endmacro

%macro multipop 1-*
  %rep %0
  %rotate -1
        pop %1
  %endrep
%endmacro

%macro putc 1
        mov al, %1
        out 0xE9, al
%endmacro

section .text
_start:
        mov esp, 0x9000
        mov esi, numbers
.next:  mov edx, [esi]                ; (putc writes al)
        cmp edx, -1
        je .done
        cmp edx, 10
        if l
            putc 's'                ; small
        else
            cmp edx, 100
            if ge
                putc 'L'            ; large
            else
                putc 'm'            ; medium
            endif
        endif
        test edx, 1
        if nz
            putc 'o'                ; odd
        endif
        putc ' '
        add esi, 4
        jmp .next
.done:  putc 10
        mov ebx, 0x11
        mov ecx, 0x22
        mov edx, 0x33
        multipush ebx, ecx, edx
        xor ebx, ebx
        xor ecx, ecx
        xor edx, edx
        multipop ebx, ecx, edx
        cmp ebx, 0x11
        if e
            cmp ecx, 0x22
            if e
                cmp edx, 0x33
                if e
                    putc 'k'
                endif
            endif
        endif
        putc 10
        push 30
        push 2
        push 10
        call sum3
        add esp, 12
        cmp eax, 42
        if e
            putc '='
        endif
        putc 10
        mov eax, 0
        out 0xF4, eax

; sum3(a, b, c): a + b + c, through a local
sum3:
%push sum3
%stacksize flat
%arg a:dword, b:dword, c:dword
%assign %$localsize 0
%local t:dword, u:dword
        enter %$localsize, 0
        mov eax, [a]
        add eax, [b]
        mov [t], eax
        mov eax, [c]
        mov [u], eax
        mov eax, [t]
        add eax, [u]
        leave
        ret
%pop

section .data
numbers: dd 3, 42, 7, 250, 10, 101, -1
