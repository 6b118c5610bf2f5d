; syscalls: a ring-3 process makes system calls while the timer interrupts it
;
; The kernel programs the timer for every 1,000 instructions and enters
; ring 3 with interrupts on.  The process asks for its pid, writes lines
; with SYS_WRITE while it sums numbers, and exits with a status.  Each timer
; tick prints '*': where the stars fall shows which instruction each
; interrupt landed on -- the same in every mode, since the timer counts
; retired instructions.
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
USTACK_TOP  equ 0x90000
TICK        equ 1000                ; timer period, in instructions

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov esi, banner
    call puts
    mov eax, TICK
    out TIMER_PERIOD, eax
    push USER_SS                    ; iret to ring 3, IF=1
    push USTACK_TOP
    push EFLAGS_BASE | EFLAGS_IF
    push USER_CS
    push user_main
    iret

; --- the kernel's trap handler -------------------------------------------------
trap:
    mov ebx, eax                    ; ebx = trap frame
    mov eax, [ebx + TF_VEC]
    cmp eax, T_TIMER
    je .timer
    cmp eax, T_SYSCALL
    je .syscall
    mov esi, msg_unexpected
    call puts
    call print_dec
    call newline
    mov eax, 99
    call poweroff
.timer:
    inc dword [ticks]
    mov al, '*'
    call putc
    ret
.syscall:
    mov eax, [ebx + TF_EAX]
    cmp eax, SYS_WRITE
    je sys_write
    cmp eax, SYS_GETPID
    je sys_getpid
    cmp eax, SYS_EXIT
    je sys_exit
    mov dword [ebx + TF_EAX], -1    ; unknown system call
    ret

sys_write:                          ; ebx = buffer, ecx = length
    mov esi, [ebx + TF_EBX]
    mov ecx, [ebx + TF_ECX]
    mov [ebx + TF_EAX], ecx
.next:
    test ecx, ecx
    je .done
    movzx eax, byte [esi]
    call putc
    inc esi
    dec ecx
    jmp .next
.done:
    ret

sys_getpid:
    mov dword [ebx + TF_EAX], 1
    ret

sys_exit:
    mov esi, msg_exit
    call puts
    mov eax, [ebx + TF_EBX]
    call print_dec
    mov esi, msg_after
    call puts
    mov eax, [ticks]
    call print_dec
    mov esi, msg_ticks
    call puts
    mov eax, [ebx + TF_EBX]
    call poweroff

; --- the user process (ring 3) ---------------------------------------------------
user_main:
    mov eax, SYS_GETPID
    int 0x80
    add eax, '0'
    mov [hello_pid], al
    mov eax, SYS_WRITE
    mov ebx, hello
    mov ecx, hello_len
    int 0x80
    mov edi, 0                      ; round
.round:
    mov ecx, 300                    ; sum 1..300, slowly
    mov edx, 0
.sum:
    add edx, ecx
    dec ecx
    jne .sum
    mov eax, SYS_WRITE
    mov ebx, dot
    mov ecx, 1
    int 0x80
    inc edi
    cmp edi, 12
    jne .round
    mov [result], edx
    mov eax, SYS_WRITE
    mov ebx, bye
    mov ecx, bye_len
    int 0x80
    mov eax, SYS_EXIT
    mov ebx, [result]
    and ebx, 0xFF
    int 0x80

banner:         db "syscalls: a user process, system calls, a timer", 10, 0
msg_unexpected: db "unexpected trap ", 0
msg_exit:       db 10, "process exited with status ", 0
msg_after:      db " after ", 0
msg_ticks:      db " timer ticks", 10, 0
hello:          db "hello from pid "
hello_pid:      db "?", 10
hello_len       equ $ - hello
dot:            db "."
bye:            db 10, "user: done", 10
bye_len         equ $ - bye
ticks:          dd 0
result:         dd 0

%include "lib.inc"
