; paging: page tables, paging on, a kernel and a user process in its own address space
;
; The kernel identity-maps its own 4 MiB (supervisor only) and gives a user
; process an address space of its own: its code at 0x400000, a data page at
; va 0x40000000 backed by frame 0x300000, and a stack page just below
; 0xC0000000 backed by frame 0x301000.  The process writes a message into
; its data page and asks the kernel to print it; the kernel then reads the
; same bytes at their physical address through its own identity map:
; one frame, two virtual addresses.  Last, the process reads kernel memory
; and gets a #PF with error code 5 (a user read of a supervisor page).
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
PGDIR       equ 0x100000
KPGTAB      equ 0x101000            ; identity 0-4 MiB, supervisor
CODE_PT     equ 0x102000            ; va 0x400000..: the user code
DATA_PT     equ 0x103000            ; va 0x40000000..: the data page
STACK_PT    equ 0x104000            ; va 0xBFC00000..: the stack page
USER_BASE   equ 0x400000
DATA_VA     equ 0x40000000
DATA_PA     equ 0x300000
STACK_VA    equ 0xBFFFF000
STACK_PA    equ 0x301000

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov esi, banner
    call puts
    mov edi, PGDIR                  ; five zeroed pages of tables
    mov ecx, 5 * PAGE_SIZE
    call memzero
    mov ecx, 0
.kmap:
    mov eax, ecx
    shl eax, 12
    or eax, PTE_P | PTE_W
    mov [KPGTAB + ecx*4], eax
    inc ecx
    cmp ecx, 1024
    jne .kmap
    mov dword [PGDIR + (0 >> 22) * 4], KPGTAB | PTE_P | PTE_W
    mov dword [PGDIR + (USER_BASE >> 22) * 4], CODE_PT | PTE_P | PTE_W | PTE_U
    mov dword [PGDIR + (DATA_VA >> 22) * 4], DATA_PT | PTE_P | PTE_W | PTE_U
    mov dword [PGDIR + (STACK_VA >> 22) * 4], STACK_PT | PTE_P | PTE_W | PTE_U
    mov dword [CODE_PT], USER_BASE | PTE_P | PTE_U          ; read-only
    mov dword [DATA_PT + ((DATA_VA >> 12) & 0x3FF) * 4], DATA_PA | PTE_P | PTE_W | PTE_U
    mov dword [STACK_PT + ((STACK_VA >> 12) & 0x3FF) * 4], STACK_PA | PTE_P | PTE_W | PTE_U
    mov eax, PGDIR
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax
    mov esi, msg_on
    call puts
    push USER_SS                    ; enter the process
    push STACK_VA + PAGE_SIZE
    push EFLAGS_BASE
    push USER_CS
    push user_main
    iret

trap:
    mov ebx, eax
    mov eax, [ebx + TF_VEC]
    cmp eax, T_SYSCALL
    je .syscall
    cmp eax, T_PF
    jne .other
    mov esi, msg_pf                 ; the process touched what it may not
    call puts
    mov eax, cr2
    call print_hex
    mov esi, msg_err
    call puts
    mov eax, [ebx + TF_ERR]
    call print_dec
    call newline
    mov esi, msg_phys               ; the kernel reads the data page at its pa
    call puts
    mov esi, DATA_PA
    call puts
    call newline
    mov eax, 0
    call poweroff
.other:
    mov esi, msg_trap
    call puts
    call print_dec
    call newline
    mov eax, 99
    call poweroff
.syscall:                           ; SYS_WRITE of a NUL-terminated string at ebx
    mov esi, msg_user
    call puts
    mov esi, [ebx + TF_EBX]
    call puts
    call newline
    ret

banner:   db "paging: a kernel and a user process in its own address space", 10, 0
msg_on:   db "kernel: paging on", 10, 0
msg_user: db "kernel: the process says: ", 0
msg_pf:   db "kernel: #PF at ", 0
msg_err:  db " error ", 0
msg_phys: db "kernel: its data page, read at pa 0x300000: ", 0
msg_trap: db "unexpected trap ", 0

%include "lib.inc"

section user start=USER_BASE
user_main:
    mov esi, u_text                 ; copy the text into the data page
    mov edi, DATA_VA
.copy:
    movzx eax, byte [esi]
    mov [edi], al
    inc esi
    inc edi
    test eax, eax
    jne .copy
    push DATA_VA                    ; (a push: the stack page works)
    pop ebx
    mov eax, SYS_WRITE
    int 0x80
    mov eax, [0x1000]               ; kernel memory: #PF, error 5
    jmp $
u_text: db "hello from va 0x40000000", 0
