; outs: an out to the console in every place a translated block can hold
; one -- first, among others, last, two in a row, before a loop's head,
; before and after long straight runs, in ring 3 (#GP), through dx, after
; a store that rewrites the next instruction -- under a timer, so that
; batches end between the pieces of a block.
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
USTACK_TOP  equ 0x90000
PGDIR       equ 0x100000
PGTAB       equ 0x101000

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    call paging_on
    mov eax, 97
    out TIMER_PERIOD, eax
    sti

    ; first in its block, then in the middle, then last
    mov ecx, 40
    mov eax, 'a'
.first:
    out CONSOLE, eax
    add eax, ecx
    and eax, 0x0F
    add eax, 'A'
    out CONSOLE, al
    mov eax, 'a'
    dec ecx
    jne .first
    mov al, 10
    out CONSOLE, al

    ; two in a row, the high bits of eax set (the console takes the low byte)
    mov ecx, 30
.pair:
    mov eax, 0x12345600 + 'x'
    out CONSOLE, eax
    out CONSOLE, eax
    mov eax, 'y'
    out CONSOLE, al
    loop .pair
    mov al, 10
    out CONSOLE, al

    ; an out just before a loop's head: the loop is a block of its own
    mov ecx, 50
    mov al, '#'
    out CONSOLE, al
.spin:
    add edx, ecx
    dec ecx
    jnz .spin
    mov eax, edx
    call print_hex
    mov al, 10
    out CONSOLE, al

    ; more than a block's worth of straight code after an out, and before one
    mov al, '<'
    out CONSOLE, al
%rep 45
    inc ebx
%endrep
    mov al, '>'
    out CONSOLE, al
%rep 70
    add ebx, 3
%endrep
    mov eax, ebx
    and eax, 0x3F
    add eax, '0'
    out CONSOLE, al
    mov al, 10
    out CONSOLE, al

    ; through dx: an out like any other system instruction
    mov edx, CONSOLE
    mov al, 'd'
    out dx, al
    mov al, 10
    out dx, al

    ; a store that rewrites the instruction after it, between two outs
    mov al, '['
    out CONSOLE, al
    mov byte [patched + 2], 'P'         ; (the immediate of mov al)
patched:
    mov al, '?'
    out CONSOLE, al
    mov al, ']'
    out CONSOLE, al
    mov al, 10
    out CONSOLE, al

    ; in ring 3 an out is privileged: #GP, reported by the handler
    mov dword [resume], after_user
    mov esi, user_out
    call enter_user
after_user:
    mov esp, KSTACK_TOP
    mov eax, [traps]
    call print_dec
    mov al, 10
    out CONSOLE, al
    mov eax, [ticks]
    call print_dec
    mov al, 10
    out CONSOLE, al
    mov eax, 0
    call poweroff

; enter_user: iret to ring 3 at esi, user stack USTACK_TOP
enter_user:
    push USER_SS
    push USTACK_TOP
    push EFLAGS_BASE
    push USER_CS
    push esi
    iret

user_out:
    mov eax, 'u'
    out CONSOLE, eax
    hlt

paging_on:
    pushad
    mov edi, PGDIR
    mov ecx, PAGE_SIZE
    call memzero
    mov dword [PGDIR], PGTAB | PTE_P | PTE_W | PTE_U
    mov ecx, 0
.map:
    mov eax, ecx
    shl eax, 12
    or eax, PTE_P | PTE_W | PTE_U
    mov [PGTAB + ecx*4], eax
    inc ecx
    cmp ecx, 1024
    jne .map
    mov eax, PGDIR
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG
    mov cr0, eax
    popad
    ret

; trap(eax = trap frame): count a timer tick and return; report anything
; else and resume at [resume] in ring 0
trap:
    cmp dword [eax + TF_VEC], T_TIMER
    jne .other
    inc dword [ticks]
    ret
.other:
    mov ebx, eax
    inc dword [traps]
    mov al, 'T'
    out CONSOLE, al
    mov eax, [ebx + TF_VEC]
    call print_dec
    mov al, 10
    out CONSOLE, al
    mov eax, [resume]
    mov [ebx + TF_EIP], eax
    mov dword [ebx + TF_CS], KERNEL_CS
    ret

resume:   dd 0
traps:    dd 0
ticks:    dd 0

%include "lib.inc"
