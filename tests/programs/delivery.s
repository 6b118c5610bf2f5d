; delivery: events from ring 3 delivered onto kernel stacks (TSS esp0) on pages
; the guest maps but has never touched -- under shadow paging each push of the
; frame meets a page the VMM has not shadowed yet, in the middle of delivery.
;
; What each line must be (Intel SDM vol. 3, 6.12.1; lib.inc's frame is 15
; dwords: the CPU's 5 from ring 3 -- SS ESP EFLAGS CS EIP -- an error code,
; the vector and pushad's 8, so it starts 60 bytes below esp0):
;  1 0x5c3f07c4  int 0x80 with eax 0x5c, the frame at 0x3f0800 - 60
;  2 0x003e07c4  a user write to a page not present: #PF, the frame at
;                0x3e0800 - 60; the handler maps the page, the write retries
;  3 0x773e07c4  ... and int 0x80 with the value it wrote and read back
;  4 0x0006ffcc  the timer (period 500 instructions), arriving at the loop's
;                jmp (offset 6), its frame from esp0 0x3d0008 down across the
;                page below: 0x3cffcc
;  5 246         the loop's turns before the timer: the same in every mode
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000             ; the boot stack (and lib's TSS esp0 at first)
PGDIR       equ 0x100000
PGTAB       equ 0x101000
KSTK1       equ 0x3F0000            ; fresh kernel stacks: present, never touched
KSTK2       equ 0x3E0000
KSTK3       equ 0x3D0000
USTACK      equ 0x390000
UDATA       equ 0x380000            ; user data, not present at first

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov edi, PGDIR
    mov ecx, PAGE_SIZE*2
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
    mov dword [PGTAB + (UDATA >> 12)*4], 0
    mov eax, PGDIR
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax
    ; 1: int 0x80 from ring 3 onto a fresh kernel stack
    mov dword [tss + 4], KSTK1 + 0x800
    mov dword [resume], after1
    mov esi, user_syscall
    jmp enter_user
after1:
    ; 2: a user #PF onto another fresh stack; the handler maps the page
    mov dword [tss + 4], KSTK2 + 0x800
    mov dword [resume], after2
    mov esi, user_touch
    jmp enter_user
after2:
    ; 3: the timer, from a user loop, onto a third fresh stack, the frame
    ;    across a page boundary (esp0 = the page's start + 8)
    mov dword [tss + 4], KSTK3 + 8
    mov dword [resume], after3
    mov eax, 500
    out TIMER_PERIOD, eax
    mov esi, user_spin
    jmp enter_user
after3:
    mov eax, 0
    out TIMER_PERIOD, eax
    mov esp, KSTACK_TOP
    mov eax, [log]
    call print_hex
    call newline
    mov eax, [log + 4]
    call print_hex
    call newline
    mov eax, [log + 8]
    call print_hex
    call newline
    mov eax, [log + 12]
    call print_hex
    call newline
    mov eax, [spins]
    call print_dec
    call newline
    mov eax, 0
    call poweroff

enter_user:
    mov esp, KSTACK_TOP
    push USER_SS
    push USTACK
    push EFLAGS_BASE | EFLAGS_IF
    push USER_CS
    push esi
    iret

user_syscall:
    mov eax, 0x5C
    int T_SYSCALL
user_touch:
    mov dword [UDATA + 0x10], 0x77
    mov eax, [UDATA + 0x10]
    int T_SYSCALL
user_spin:
    inc dword [spins]
    jmp user_spin

; eax = the frame: log the vector and where the frame is, go back to ring 0
trap:
    mov ebx, eax
    mov ecx, [ebx + TF_VEC]
    cmp ecx, T_PF
    jne .not_pf
    ; map the user page and retry
    mov dword [PGTAB + (UDATA >> 12)*4], UDATA | PTE_P | PTE_W | PTE_U
    mov eax, [nlog]
    mov [log + eax*4], ebx
    inc dword [nlog]
    ret
.not_pf:
    mov eax, [nlog]
    mov edx, ebx
    cmp ecx, T_TIMER
    jne .log
    mov edx, [ebx + TF_EIP]        ; the timer: where it came in
    sub edx, user_spin
    shl edx, 16
    mov eax, ebx
    and eax, 0xFFFF
    or edx, eax
    mov eax, [nlog]
.log:
    cmp ecx, T_SYSCALL
    jne .put
    mov edx, [ebx + TF_EAX]
    shl edx, 24
    or edx, ebx
.put:
    mov [log + eax*4], edx
    inc dword [nlog]
    mov eax, [resume]
    mov [ebx + TF_EIP], eax
    mov dword [ebx + TF_CS], KERNEL_CS
    and dword [ebx + TF_EFLAGS], ~EFLAGS_IF
    ret

align 4
resume: dd 0
nlog:   dd 0
log:    times 8 dd 0
spins:  dd 0
%include "lib.inc"
