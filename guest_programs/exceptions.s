; exceptions: take and handle each exception (#DE #UD #GP #NP #PF #DF)
;
; Each test stores where to resume in [resume], then faults.  The trap
; handler prints the vector, the error code (and CR2 for #PF) and returns
; to [resume] -- in ring 0, even when the fault came from ring 3.
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
USTACK_TOP  equ 0x90000
PGDIR       equ 0x100000            ; page directory
PGTAB       equ 0x101000            ; one page table: va 0..4 MiB
HOLE        equ 0x300000            ; an identity page left unmapped

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov esi, banner
    call puts

    ; #DE: divide by zero
    mov dword [resume], after_de
    mov eax, 1
    mov edx, 0
    mov ecx, 0
    div ecx
after_de:
    ; #DE: quotient too large
    mov dword [resume], after_de2
    mov edx, 5
    mov ecx, 2
    div ecx
after_de2:
    ; #UD: ud2, then a byte that is no opcode
    mov dword [resume], after_ud
    ud2
after_ud:
    mov dword [resume], after_ud2
    db 0xFF
after_ud2:
    ; #NP: int through an interrupt gate that is not present (P=0)
    mov dword [idt + 0x31*8 + 4], 0x0E00
    mov dword [resume], after_np
    int 0x31
after_np:
    ; #GP: a privileged instruction in ring 3
    mov dword [resume], after_gp
    mov esi, user_hlt
    call enter_user
after_gp:
    mov esp, KSTACK_TOP
    ; #GP: int to a DPL-0 gate from ring 3
    mov dword [resume], after_gp2
    mov esi, user_int
    call enter_user
after_gp2:
    mov esp, KSTACK_TOP
    ; #PF: paging on, identity map of 4 MiB with one hole
    call paging_on
    mov dword [resume], after_pf
    mov eax, [HOLE + 0x123]
after_pf:
    ; #PF: a write to a read-only page with CR0.WP=1
    mov dword [resume], after_pf2
    mov dword [rodata], 1
after_pf2:
    ; #DF: a #GP whose gate is not present faults again (#NP): a double fault
    mov dword [idt + T_GP*8 + 4], 0x0E00
    mov dword [resume], after_df
    mov esi, user_hlt
    call enter_user
after_df:
    mov esp, KSTACK_TOP
    mov esi, done_msg
    call puts
    mov eax, [traps]
    call poweroff

; enter_user: iret to ring 3 at esi, user stack USTACK_TOP
enter_user:
    push USER_SS
    push USTACK_TOP
    push EFLAGS_BASE
    push USER_CS
    push esi
    iret

user_hlt:
    hlt
user_int:
    int 0x20

paging_on:
    pushad
    mov edi, PGDIR                  ; zero the directory
    mov ecx, PAGE_SIZE
    call memzero
    mov dword [PGDIR], PGTAB | PTE_P | PTE_W | PTE_U
    mov ecx, 0                      ; identity-map 1024 pages
.map:
    mov eax, ecx
    shl eax, 12
    or eax, PTE_P | PTE_W | PTE_U
    mov [PGTAB + ecx*4], eax
    inc ecx
    cmp ecx, 1024
    jne .map
    mov dword [PGTAB + (HOLE >> 12)*4], 0
    mov eax, rodata                 ; rodata's page: read-only
    shr eax, 12
    and dword [PGTAB + eax*4], ~PTE_W
    mov eax, PGDIR
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax
    popad
    ret

; trap(eax = trap frame): report, then resume at [resume] in ring 0
trap:
    mov ebx, eax
    inc dword [traps]
    mov esi, msg_trap
    call puts
    mov eax, [ebx + TF_VEC]
    call print_dec
    mov esi, msg_err
    call puts
    mov eax, [ebx + TF_ERR]
    call print_hex
    cmp dword [ebx + TF_VEC], T_PF
    jne .no_cr2
    mov esi, msg_cr2
    call puts
    mov eax, cr2
    call print_hex
.no_cr2:
    mov esi, msg_from
    call puts
    mov eax, [ebx + TF_CS]
    and eax, 3
    call print_dec
    call newline
    mov eax, [resume]
    mov [ebx + TF_EIP], eax
    mov dword [ebx + TF_CS], KERNEL_CS
    ret

banner:   db "exceptions: one of each", 10, 0
msg_trap: db "trap ", 0
msg_err:  db " err=", 0
msg_cr2:  db " cr2=", 0
msg_from: db " from ring ", 0
done_msg: db "all handled", 10, 0
resume:   dd 0
traps:    dd 0

%include "lib.inc"

align 4096
rodata:   dd 0
