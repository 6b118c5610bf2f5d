; mprotect: mprotect and munmap with INVLPG, a fault handler, a stale TLB entry
;
; A user process registers a SIGSEGV handler (SYS_SIGSEGV): when it makes a
; bad access, the kernel reports the fault and resumes the process in its
; handler, with the faulting va and the #PF error code.
;
;  1. mprotect makes a page read-only: the kernel clears R/W in the PTE and
;     INVLPGs it -- the TLB may hold a writable translation.  Reading still
;     works; a write faults (error 7: protection, write, user).  mprotect
;     makes it writable again (INVLPG again: x86 may keep a read-only entry).
;  2. munmap clears the PTE and INVLPGs it: the next read faults (error 4:
;     not present, read, user).
;  3. A kernel bug, on purpose: munmap with MUNMAP_NOFLUSH clears the PTE
;     but skips the INVLPG.  The process still reads the old value through
;     the stale TLB entry, though the page is gone from its table (and its
;     frame could already belong to someone else).  A second munmap does the
;     INVLPG, and the read faults.  (stale_tlb shows the same rule on a PTE
;     that is redirected to another frame.)
;
; Under shadow paging each PTE the kernel writes is a TRACING fault that
; drops the shadow entry, yet the hardware TLB keeps its entry exactly as
; it does natively: the stale read happens in every mode.
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
KPGTAB      equ 0x100000            ; the kernel's page table: identity 0-4 MiB, supervisor
PGDIR       equ 0x101000
UPT         equ 0x102000            ; the user page table: va 4-8 MiB
USER_BASE   equ 0x400000            ; user code, read-only, at its own address
PAGE_A      equ 0x500000            ; the page mprotect and munmap work on
PAGE_B      equ 0x508000            ; the page of the stale-TLB demonstration
FRAME_A     equ 0x200000
FRAME_B     equ 0x201000
FRAME_STACK equ 0x202000
STACK_TOP   equ 0x800000
MUNMAP_NOFLUSH equ 1                ; munmap's edx: skip the INVLPG (the bug)

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov dword [idt + T_SYSCALL*8 + 4], GATE_USER_INT
    mov esi, banner
    call puts
    mov edi, PGDIR
    mov ecx, 2 * PAGE_SIZE
    call memzero
    mov ecx, 0                      ; the kernel: identity 0-4 MiB
.kmap:
    mov eax, ecx
    shl eax, 12
    or eax, PTE_P | PTE_W
    mov [KPGTAB + ecx*4], eax
    inc ecx
    cmp ecx, 1024
    jne .kmap
    mov dword [PGDIR], KPGTAB | PTE_P | PTE_W
    mov dword [PGDIR + 4], UPT | PTE_P | PTE_W | PTE_U
    mov ecx, 0                      ; the user code
.code:
    mov eax, ecx
    shl eax, 12
    add eax, USER_BASE | PTE_P | PTE_U
    mov [UPT + ecx*4], eax
    inc ecx
    cmp ecx, USER_PAGES
    jne .code
    mov dword [FRAME_B], 7          ; paging is off: a physical address
    mov dword [UPT + ((PAGE_A >> 12) & 0x3FF) * 4], FRAME_A | PTE_P | PTE_W | PTE_U
    mov dword [UPT + ((PAGE_B >> 12) & 0x3FF) * 4], FRAME_B | PTE_P | PTE_W | PTE_U
    mov dword [UPT + 1023*4], FRAME_STACK | PTE_P | PTE_W | PTE_U
    mov eax, PGDIR
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax
    push USER_SS                    ; enter the process
    push STACK_TOP
    push EFLAGS_BASE
    push USER_CS
    push user_main
    iret

; --- traps ------------------------------------------------------------------------
trap:
    mov ebx, eax                    ; ebx = the trap frame
    mov eax, [ebx + TF_VEC]
    cmp eax, T_SYSCALL
    je syscall
    test dword [ebx + TF_CS], 3
    je .panic
    cmp eax, T_PF
    je page_fault
.panic:
    mov esi, msg_panic
    call puts
    call print_dec
    call newline
    mov eax, 99
    call poweroff

; a user #PF: report it, and resume in the process's handler (eax = va,
; ecx = error code), or end the process if it has none
page_fault:
    mov edx, cr2
    mov ecx, [ebx + TF_ERR]
    mov esi, msg_sigsegv
    call puts
    mov esi, msg_read
    test ecx, PF_W
    je .rw
    mov esi, msg_write
.rw:
    call puts
    mov eax, edx
    call print_hex
    mov esi, msg_error
    call puts
    mov eax, ecx
    call print_dec
    mov esi, msg_notpresent
    test ecx, PF_P
    je .p
    mov esi, msg_protection
.p:
    call puts
    mov esi, msg_rd
    test ecx, PF_W
    je .w
    mov esi, msg_wr
.w:
    call puts
    mov esi, msg_kernel_mode
    test ecx, PF_U
    je .u
    mov esi, msg_user_mode
.u:
    call puts
    mov eax, [handler]
    test eax, eax
    je .kill
    mov [ebx + TF_EIP], eax
    mov [ebx + TF_EAX], edx
    mov [ebx + TF_ECX], ecx
    ret
.kill:
    mov eax, 255
    call poweroff

; --- system calls ---------------------------------------------------------------
syscall:
    mov eax, [ebx + TF_EAX]
    cmp eax, SYS_WRITE
    je sys_write
    cmp eax, SYS_SIGSEGV
    je sys_sigsegv
    cmp eax, SYS_MPROTECT
    je sys_mprotect
    cmp eax, SYS_MUNMAP
    je sys_munmap
    cmp eax, SYS_EXIT
    je sys_exit
    mov dword [ebx + TF_EAX], -1
    ret

sys_write:                          ; ebx = buffer, ecx = length
    mov esi, [ebx + TF_EBX]
    mov ecx, [ebx + TF_ECX]
.next:
    test ecx, ecx
    je .done
    movzx eax, byte [esi]
    out CONSOLE, eax
    inc esi
    dec ecx
    jmp .next
.done:
    ret

sys_sigsegv:                        ; ebx = the handler
    mov eax, [ebx + TF_EBX]
    mov [handler], eax
    ret

; user_pte: esi = the address of the PTE of the user va edx (4-8 MiB only);
; CF=1 when edx is not a user data address
user_pte:
    cmp edx, PAGE_A
    jb .bad
    cmp edx, STACK_TOP - PAGE_SIZE
    jae .bad
    mov esi, edx
    shr esi, 12
    and esi, 0x3FF
    lea esi, [UPT + esi*4]
    cmp esi, 0                      ; CF=0
    ret
.bad:
    mov esi, 0
    cmp esi, 1                      ; CF=1
    ret

; mprotect(ebx = va, ecx = pages (1 here), edx = writable?)
sys_mprotect:
    mov edx, [ebx + TF_EBX]
    call user_pte
    jc .fail
    mov eax, [esi]
    test eax, PTE_P
    je .fail
    and eax, ~PTE_W
    mov edi, msg_readonly
    cmp dword [ebx + TF_EDX], 0
    je .set
    or eax, PTE_W
    mov edi, msg_writable
.set:
    mov [esi], eax
    invlpg [edx]                    ; the TLB may cache the old rights
    mov esi, msg_mprotect
    call puts
    mov eax, edx
    call print_hex
    mov esi, edi
    call puts
    mov esi, msg_invlpg
    call puts
    mov dword [ebx + TF_EAX], 0
    ret
.fail:
    mov dword [ebx + TF_EAX], -1
    ret

; munmap(ebx = va, ecx = pages (1 here), edx = MUNMAP_NOFLUSH to skip the INVLPG)
sys_munmap:
    mov edx, [ebx + TF_EBX]
    call user_pte
    jc .fail
    mov dword [esi], 0              ; present -> not present
    mov esi, msg_noflush
    test dword [ebx + TF_EDX], MUNMAP_NOFLUSH
    jne .report
    invlpg [edx]                    ; the TLB may still cache it
    mov esi, msg_invlpg
.report:
    push esi
    mov esi, msg_munmap
    call puts
    mov eax, edx
    call print_hex
    pop esi
    call puts
    mov dword [ebx + TF_EAX], 0
    ret
.fail:
    mov dword [ebx + TF_EAX], -1
    ret

sys_exit:
    mov esi, msg_done
    call puts
    mov eax, [ebx + TF_EBX]
    call poweroff

banner:          db "mprotect: mprotect, munmap, a fault handler and a stale TLB entry", 10, 0
msg_panic:       db "kernel: panic: trap ", 0
msg_sigsegv:     db "  kernel: SIGSEGV: ", 0
msg_read:        db "read of ", 0
msg_write:       db "write to ", 0
msg_error:       db ", error ", 0
msg_notpresent:  db " (not present, ", 0
msg_protection:  db " (protection, ", 0
msg_rd:          db "read, ", 0
msg_wr:          db "write, ", 0
msg_user_mode:   db "user)", 10, 0
msg_kernel_mode: db "kernel)", 10, 0
msg_mprotect:    db "  kernel: mprotect ", 0
msg_readonly:    db " read-only", 0
msg_writable:    db " writable", 0
msg_invlpg:      db ", INVLPG", 10, 0
msg_munmap:      db "  kernel: munmap ", 0
msg_noflush:     db " WITHOUT INVLPG (a kernel bug, on purpose)", 10, 0
msg_done:        db "mprotect: done", 10, 0

%include "lib.inc"

align 4096
handler:         dd 0               ; the process's SIGSEGV handler (0: none)

; --- the user process (ring 3) ------------------------------------------------------
; Before each access that may fault, ebp = where to go on; the handler
; reports the fault and jumps there.
section user start=USER_BASE
user_main:
    mov eax, SYS_SIGSEGV
    mov ebx, on_segv
    int 0x80
    ; 1. mprotect
    mov dword [PAGE_A], 42
    mov eax, [PAGE_A]
    mov esi, s_wrote
    call say
    mov eax, SYS_MPROTECT           ; read-only
    mov ebx, PAGE_A
    mov ecx, 1
    mov edx, 0
    int 0x80
    mov eax, [PAGE_A]
    mov esi, s_read
    call say
    mov ebp, .after_write
    mov dword [PAGE_A], 43          ; faults
    mov eax, [PAGE_A]
    mov esi, s_wrote
    call say
.after_write:
    mov eax, [PAGE_A]
    mov esi, s_still
    call say
    mov eax, SYS_MPROTECT           ; writable again
    mov ebx, PAGE_A
    mov ecx, 1
    mov edx, 1
    int 0x80
    mov dword [PAGE_A], 43
    mov eax, [PAGE_A]
    mov esi, s_wrote
    call say
    ; 2. munmap
    mov eax, SYS_MUNMAP
    mov ebx, PAGE_A
    mov ecx, 1
    mov edx, 0
    int 0x80
    mov ebp, .after_read
    mov eax, [PAGE_A]               ; faults
    mov esi, s_read
    call say
.after_read:
    ; 3. munmap without INVLPG: a stale TLB entry
    mov eax, [PAGE_B]               ; the TLB now caches PAGE_B
    mov ebx, PAGE_B
    mov esi, s_read_b
    call say
    mov eax, SYS_MUNMAP
    mov ebx, PAGE_B
    mov ecx, 1
    mov edx, MUNMAP_NOFLUSH
    int 0x80
    mov ebp, .after_stale
    mov eax, [PAGE_B]               ; no fault: the stale entry answers
    mov esi, s_stale
    call say
    mov eax, SYS_MUNMAP             ; this time with the INVLPG
    mov ebx, PAGE_B
    mov ecx, 1
    mov edx, 0
    int 0x80
    mov eax, [PAGE_B]               ; faults
    mov esi, s_read_b
    call say
.after_stale:
    mov eax, SYS_EXIT
    mov ebx, 0
    int 0x80

; the SIGSEGV handler: eax = the faulting va, ecx = the error code
on_segv:
    mov esi, s_caught
    call u_puts
    mov eax, ecx
    call u_putnum
    mov esi, s_resume
    call u_puts
    jmp ebp

; say: print "user: " + the string at esi + eax in decimal + a newline
say:
    push esi
    mov esi, s_user
    call u_puts
    pop esi
    call u_puts
    call u_putnum
    mov esi, s_nl
    call u_puts
    ret

; u_puts: write the NUL-terminated string at esi
u_puts:
    pushad
    mov ecx, 0
.len:
    movzx eax, byte [esi + ecx]
    test eax, eax
    je .write
    inc ecx
    jmp .len
.write:
    mov eax, SYS_WRITE
    mov ebx, esi
    int 0x80
    popad
    ret

; u_putnum: write eax in decimal (formatted in a buffer on the stack)
u_putnum:
    pushad
    sub esp, 16
    lea edi, [esp + 15]
    mov ecx, 0
    mov ebx, 10
.digit:
    mov edx, 0
    div ebx
    add edx, '0'
    mov [edi], dl
    dec edi
    inc ecx
    test eax, eax
    jne .digit
    mov eax, SYS_WRITE
    lea ebx, [edi + 1]
    int 0x80
    add esp, 16
    popad
    ret

s_user:    db "user: ", 0
s_wrote:   db "wrote 0x00500000, it holds ", 0
s_read:    db "read 0x00500000: ", 0
s_still:   db "0x00500000 still holds ", 0
s_read_b:  db "read 0x00508000: ", 0
s_stale:   db "read 0x00508000 again, no fault (a stale TLB entry): ", 0
s_caught:  db "user: SIGSEGV handler: error ", 0
s_resume:  db ", resuming after the access", 10, 0
s_nl:      db 10, 0
USER_PAGES equ ($ - $$ + PAGE_SIZE - 1) / PAGE_SIZE
