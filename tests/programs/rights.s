; rights: user/supervisor and read/write rights combined from the PDE and the PTE,
; CR0.WP, 4 MiB pages, the #PF error code and CR2, and the A/D bits each access
; leaves.  Each case sets the PDE of va 0x400000 and the PTE of its table (both
; printed after the access), reloads CR3 and makes one access (a user one from
; ring 3, returning with int 0x80): its value, or its trap.
;
; What each line must be (Intel SDM vol. 3, 4.6 and 4.7): the access ...
;  1 user read, all U and W: 0x600d; A in both
;  2 user read, PTE supervisor: #PF 5 (P|U); the PTE's A stays clear
;  3 user read, PDE supervisor: #PF 5 (the rights of both entries combine)
;  4 user read, PDE read-only: allowed
;  5 user write, PDE read-only: #PF 7 (P|W|U)
;  6 user write, PTE read-only, WP=0: #PF 7 (WP is for the supervisor only)
;  7 user write, PTE not present: #PF 6 (W|U)
;  8 user write, PDE not present: #PF 6
;  9 kernel write through read-only entries, WP=0: allowed; the PTE gets D
; 10 kernel write, PDE read-only, WP=1: #PF 3 (P|W)
; 11 kernel write, all W, WP=1: allowed; A and D
; 12 kernel read of supervisor pages: allowed
; 13 user read of a supervisor 4 MiB page: #PF 5, its PDE's A clear
; 14 user write of a read-only user 4 MiB page: #PF 7
; 15 user read of it: allowed (physical 0: zero); the PDE gets A
; 16 kernel write of a read-only supervisor 4 MiB page, WP=0: allowed (it
;    wrote physical 4, so FRAME+4 reads 0); the PDE gets A and D
; 17 a PDE with PS=0 and address bit 22 set: its table is at 0x502000 (zero),
;    so the PTE is not present: #PF 4 (U); PGTAB2 is not touched
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
USTACK_TOP  equ 0x90000
PGDIR       equ 0x100000
PGTAB       equ 0x101000            ; identity 0-4 MiB (user)
PGTAB2      equ 0x102000            ; the test page's table
TESTVA      equ 0x400000
FRAME       equ 0x200000
K_READ      equ 0
K_WRITE     equ 1
U_READ      equ 2
U_WRITE     equ 3

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov edi, PGDIR
    mov ecx, PAGE_SIZE*3
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
    mov dword [FRAME], 0x600D
    mov eax, cr4
    or eax, CR4_PSE
    mov cr4, eax
    mov eax, PGDIR
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG
    mov cr0, eax
    mov esi, cases
.next:
    cmp dword [esi], -1
    je .done
    mov [case], esi
    ; CR0.WP as the case says
    mov eax, cr0
    and eax, ~CR0_WP
    cmp dword [esi + 12], 0
    je .wp
    or eax, CR0_WP
.wp:
    mov cr0, eax
    mov eax, [esi]                  ; the PDE
    mov [PGDIR + 4], eax
    mov eax, [esi + 4]              ; the PTE
    mov [PGTAB2], eax
    mov eax, cr3                    ; flush
    mov cr3, eax
    mov dword [result], 0xFFFFFFFF
    mov dword [resume], .after
    mov eax, [esi + 8]              ; the access
    cmp eax, K_READ
    jne .kw
    mov eax, [TESTVA]
    mov [result], eax
    jmp .after
.kw:
    cmp eax, K_WRITE
    jne .user
    mov dword [TESTVA + 4], 0x5EED
    mov eax, [FRAME + 4]
    mov [result], eax
    jmp .after
.user:
    push USER_SS
    push USTACK_TOP
    push EFLAGS_BASE
    push USER_CS
    push user_access
    iret
.after:
    mov esp, KSTACK_TOP
    mov esi, [case]
    mov eax, [result]
    call print_hex
    mov al, ' '
    call putc
    mov eax, [PGDIR + 4]
    call print_hex
    mov al, ' '
    call putc
    mov eax, [PGTAB2]
    call print_hex
    call newline
    mov dword [FRAME + 4], 0
    add esi, 16
    jmp .next
.done:
    mov eax, 0
    call poweroff

; in ring 3: eax = the access (U_READ or U_WRITE)
user_access:
    cmp eax, U_READ
    jne .w
    mov ebx, [TESTVA]
    int T_SYSCALL
.w:
    mov dword [TESTVA + 4], 0xABCD
    mov ebx, 0xABCD
    int T_SYSCALL

trap:
    mov ebx, eax
    cmp dword [ebx + TF_VEC], T_SYSCALL
    jne .fault
    mov eax, [ebx + TF_EBX]
    mov [result], eax
    jmp .back
.fault:
    mov esi, msg_trap
    call puts
    mov eax, [ebx + TF_VEC]
    call print_dec
    mov al, ' '
    call putc
    mov eax, [ebx + TF_ERR]
    call print_hex
    mov al, ' '
    call putc
    mov eax, cr2
    call print_hex
    mov al, ' '
    call putc
.back:
    mov eax, [resume]
    mov [ebx + TF_EIP], eax
    mov dword [ebx + TF_CS], KERNEL_CS
    ret

msg_trap: db "trap ", 0
align 4
; PDE, PTE, access, WP
cases:
    dd PGTAB2 | PTE_P | PTE_W | PTE_U, FRAME | PTE_P | PTE_W | PTE_U, U_READ, 1
    dd PGTAB2 | PTE_P | PTE_W | PTE_U, FRAME | PTE_P | PTE_W,         U_READ, 1
    dd PGTAB2 | PTE_P | PTE_W,         FRAME | PTE_P | PTE_W | PTE_U, U_READ, 1
    dd PGTAB2 | PTE_P | PTE_U,         FRAME | PTE_P | PTE_W | PTE_U, U_READ, 1
    dd PGTAB2 | PTE_P | PTE_U,         FRAME | PTE_P | PTE_W | PTE_U, U_WRITE, 1
    dd PGTAB2 | PTE_P | PTE_W | PTE_U, FRAME | PTE_P | PTE_U,         U_WRITE, 0
    dd PGTAB2 | PTE_P | PTE_W | PTE_U, 0,                             U_WRITE, 1
    dd 0,                              FRAME | PTE_P | PTE_W | PTE_U, U_WRITE, 1
    dd PGTAB2 | PTE_P | PTE_U,         FRAME | PTE_P | PTE_U,         K_WRITE, 0
    dd PGTAB2 | PTE_P | PTE_U,         FRAME | PTE_P | PTE_W | PTE_U, K_WRITE, 1
    dd PGTAB2 | PTE_P | PTE_W | PTE_U, FRAME | PTE_P | PTE_W | PTE_U, K_WRITE, 1
    dd PGTAB2 | PTE_P | PTE_W,         FRAME | PTE_P | PTE_W,         K_READ, 1
    dd FRAME & 0xFFC00000 | PTE_P | PTE_PS,                  0, U_READ, 1
    dd FRAME & 0xFFC00000 | PTE_P | PTE_PS | PTE_U,          0, U_WRITE, 1
    dd FRAME & 0xFFC00000 | PTE_P | PTE_PS | PTE_U,          0, U_READ, 1
    dd FRAME & 0xFFC00000 | PTE_P | PTE_PS,                  0, K_WRITE, 0
    dd PGTAB2 | PTE_P | PTE_W | PTE_U | 0x400000, FRAME | PTE_P | PTE_U, U_READ, 1
    dd -1
case:   dd 0
result: dd 0
resume: dd 0
%include "lib.inc"
