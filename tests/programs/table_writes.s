; table_writes: a live page table written from ring 3 through a user mapping
; of its page, and by misaligned stores across two entries and across the
; end of its page -- under shadow paging, writes the VMM traces or lets go
; out of sync, at user privilege and in pieces.
;
; What each line must be (frame i's dword 0 holds 0x100+i):
;  1 0x00000100  va 4 MiB -> frame 0
;  2 0x00000101  va 4 MiB + 4K -> frame 1
;  3 0x00000105  ring 3 pointed PTE 0 at frame 5 through its window, had
;                CR3 reloaded by a system call, and read it
;  4 0x00000105  ... and so does the kernel
;  5 0x00205027  a store of 0x70070020 at byte 2 of the table: PTE 0 keeps
;                its bytes (frame 5, A set by the reads)
;  6 0x00207007  PTE 1's low half is now 0x7007: frame 7, A cleared
;  7 0x00000107  va 4 MiB + 4K reads frame 7
;  8 0x56780000  a store of 0x12345678 at byte 0xffe: the table's last
;                entry gets its low half ...
;  9 0x00001234  ... the next page its first two bytes
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
USTACK_TOP  equ 0x90000
PGDIR       equ 0x100000
PGTAB       equ 0x101000
PT2         equ 0x102000            ; va 4-8 MiB; also mapped at PTWIN for ring 3
PTWIN       equ 0x3FF000
F           equ 0x200000            ; dword 0 of frame i holds 0x100+i

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov edi, PGDIR
    mov ecx, PAGE_SIZE*3
    call memzero
    mov dword [PGDIR], PGTAB | PTE_P | PTE_W | PTE_U
    mov dword [PGDIR + 4], PT2 | PTE_P | PTE_W | PTE_U
    mov ecx, 0
.map:
    mov eax, ecx
    shl eax, 12
    or eax, PTE_P | PTE_W | PTE_U
    mov [PGTAB + ecx*4], eax
    inc ecx
    cmp ecx, 1023
    jne .map
    mov dword [PGTAB + 1023*4], PT2 | PTE_P | PTE_W | PTE_U   ; the window
    mov ecx, 0
.frames:
    mov eax, ecx
    shl eax, 12
    lea edx, [ecx + 0x100]
    mov [F + eax], edx
    inc ecx
    cmp ecx, 16
    jne .frames
    mov dword [PT2], F | PTE_P | PTE_W | PTE_U
    mov dword [PT2 + 4], (F + 0x1000) | PTE_P | PTE_W | PTE_U
    mov eax, PGDIR
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax
    mov eax, [0x400000]             ; 1: 0x100, shadowed now
    call show
    mov eax, [0x401000]             ; 2: 0x101
    call show
    ; ring 3 rewrites PTE 0 through the window, asks for a CR3 reload
    mov dword [resume], .back
    mov esi, user_remap
    jmp enter_user
.back:
    mov esp, KSTACK_TOP
    mov eax, [0x400000]             ; 4: 0x105 (ring 3 read it as line 3)
    call show
    ; a misaligned store across PTEs 0 and 1: bytes 2..5 of the table.
    ; PTE 0 = 0x00205007 -> its high half becomes 0x0020 (unchanged): 0x00205007;
    ; PTE 1's low half becomes 0x????: frame bits 12-15 of PTE 1
    mov dword [PT2 + 2], 0x70070020
    mov eax, cr3
    mov cr3, eax
    mov eax, [PT2]                  ; 5
    call show
    mov eax, [PT2 + 4]              ; 6
    call show
    mov eax, [0x401000]             ; 7: through the PTE the store made
    call show
    ; a misaligned store across the end of the table's page into the next:
    mov dword [PT2 + 0xFFE], 0x12345678
    mov eax, [PT2 + 0xFFC]          ; 8
    call show
    mov eax, [PT2 + 0x1000]         ; 9
    call show
    mov eax, 0
    call poweroff

enter_user:
    push USER_SS
    push USTACK_TOP
    push EFLAGS_BASE
    push USER_CS
    push esi
    iret

user_remap:
    mov dword [PTWIN], (F + 0x5000) | PTE_P | PTE_W | PTE_U
    int T_SYSCALL                   ; eax=1: reload CR3
    mov eax, [0x400000]
    mov ebx, eax
    mov eax, 2
    int T_SYSCALL                   ; eax=2: print ebx and go back

show:
    call print_hex
    call newline
    ret

trap:
    mov ebx, eax
    cmp dword [ebx + TF_VEC], T_SYSCALL
    jne .bad
    cmp dword [ebx + TF_EAX], 2
    je .back
    mov eax, cr3
    mov cr3, eax
    ret
.back:
    mov eax, [ebx + TF_EBX]
    call show
    mov eax, [resume]
    mov [ebx + TF_EIP], eax
    mov dword [ebx + TF_CS], KERNEL_CS
    ret
.bad:
    mov esi, msg_trap
    call puts
    mov eax, [ebx + TF_VEC]
    call print_dec
    mov al, ' '
    call putc
    mov eax, [ebx + TF_ERR]
    call print_hex
    call newline
    mov eax, 9
    call poweroff
align 4
resume: dd 0
msg_trap: db "trap ", 0
%include "lib.inc"
