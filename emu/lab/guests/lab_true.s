; lab_true: true faults -- each error code a page walk can give
;
; The kernel identity-maps 4 MiB, user-accessible, except three pages: a
; hole (not present), a supervisor-only page and a read-only page; and a
; region at va 0x800000 whose PDE is read-only over writable PTEs.  Then
; user and kernel code read, write and jump where the tables deny it.
; Each #PF is the guest's own: its handler prints CR2 and the error code
; and goes on with the next test.
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
USTACK_TOP  equ 0x90000
PGDIR       equ 0x100000
KPT         equ 0x101000
RO_PT       equ 0x102000
HOLE        equ 0x300000
SUPER       equ 0x301000
RDONLY      equ 0x302000
ROPDE_VA    equ 0x800000

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov esi, banner
    call puts
    call map_kernel
    mov ecx, 0                      ; everything user-accessible ...
.user:
    or dword [KPT + ecx*4], PTE_U
    inc ecx
    cmp ecx, 1024
    jne .user
    mov dword [KPT + (HOLE >> 12) * 4], 0                        ; ... but a hole,
    and dword [KPT + (SUPER >> 12) * 4], ~PTE_U                  ; a kernel page,
    and dword [KPT + (RDONLY >> 12) * 4], ~PTE_W                 ; a read-only one
    mov edi, RO_PT
    mov ecx, PAGE_SIZE
    call memzero
    mov dword [RO_PT], 0x303000 | PTE_P | PTE_W | PTE_U          ; writable PTE ...
    mov dword [PGDIR + (ROPDE_VA >> 22) * 4], RO_PT | PTE_P | PTE_U  ; ... read-only PDE
    call paging_on

    mov esi, u_read_hole
    call user_test
    mov esi, u_write_hole
    call user_test
    mov esi, u_read_super
    call user_test
    mov esi, u_write_rdonly
    call user_test
    mov esi, u_write_super
    call user_test
    mov esi, u_jump_hole
    call user_test
    mov esi, u_write_ropde
    call user_test
    mov esi, u_read_ropde           ; allowed: no fault
    call user_test
    mov dword [resume], .k1
    mov dword [RDONLY + 8], 1       ; kernel write, read-only page, CR0.WP=1
.k1:
    mov esp, KSTACK_TOP
    mov dword [resume], .k2
    mov eax, [HOLE + 0x10]          ; kernel read of the hole
.k2:
    mov esp, KSTACK_TOP
    mov dword [resume], .k3
    mov dword [HOLE + 0x20], 2      ; kernel write of the hole
.k3:
    mov esp, KSTACK_TOP
    mov dword [SUPER + 4], 5        ; kernel: allowed
    mov eax, [SUPER + 4]
    add eax, [ROPDE_VA]
    mov esi, msg_done
    call puts
    call print_line
    mov eax, [faults]
    call poweroff

; user_test(esi): run esi in ring 3 until it faults or calls int 0x80
user_test:
    pop eax
    mov [user_ret], eax
    mov dword [resume], .back
    jmp enter_user
.back:
    mov esp, KSTACK_TOP
    push dword [user_ret]
    ret

u_read_hole:
    mov eax, [HOLE + 0x123]
    int 0x80
u_write_hole:
    mov dword [HOLE + 0x456], 1
    int 0x80
u_read_super:
    mov eax, [SUPER + 0x10]
    int 0x80
u_write_rdonly:
    mov dword [RDONLY], 3
    int 0x80
u_write_super:
    mov dword [SUPER], 3
    int 0x80
u_jump_hole:
    jmp HOLE + 0x40
u_write_ropde:
    mov dword [ROPDE_VA + 0x10], 7
    int 0x80
u_read_ropde:
    mov eax, [ROPDE_VA + 0x10]
    int 0x80

trap:
    mov ebx, eax
    cmp dword [ebx + TF_VEC], T_PF
    je .pf
    cmp dword [ebx + TF_VEC], T_SYSCALL
    jne .other
    mov esi, msg_ok                 ; the user test went through
    call puts
    jmp .resume
.pf:
    inc dword [faults]
    jmp resume_trap
.other:
    mov esi, msg_trap
    call puts
    mov eax, [ebx + TF_VEC]
    call print_line
    mov eax, 99
    call poweroff
.resume:
    mov eax, [resume]
    mov [ebx + TF_EIP], eax
    mov dword [ebx + TF_CS], KERNEL_CS
    ret

banner:   db "lab_true: every error code", 10, 0
msg_ok:   db "no fault", 10, 0
msg_done: db "done: ", 0
msg_trap: db "unexpected trap ", 0
faults:   dd 0
user_ret: dd 0

%include "lab.inc"
%include "lib.inc"
