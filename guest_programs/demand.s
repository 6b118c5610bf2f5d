; demand: demand paging -- two processes, page-in on first touch, a segfault
;
; The kernel runs two user processes, each in its own address space (its
; own page directory; CR3 switches between them).  Their heap and stack
; pages are mapped only when first touched: the #PF handler takes a free
; frame, zeroes it, writes the PTE and restarts the instruction.  munmap
; clears a PTE and invalidates it with INVLPG; touching the page again maps
; a fresh zero page.  Process 2 touches an address it never allocated and
; is killed.
;
; Under shadow paging every first touch is two faults: a TRUE fault (the
; guest's own PTE is absent: the guest's handler runs) and then a HIDDEN
; fault (the guest mapped it; the shadow does not have it yet).  Every PTE
; the handler writes is a TRACING fault (the guest's page tables are
; write-protected in the shadow).
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
KPGTAB      equ 0x100000            ; kernel page table: identity 0-4 MiB, supervisor
PROCTAB     equ 0x101000            ; per process: PD, then the user PT (2 pages)
USER_BASE   equ 0x400000            ; user code, mapped read-only at its own address
HEAP        equ 0x480000            ; demand-paged heap: HEAP_PAGES pages
HEAP_PAGES  equ 16
STACK_LO    equ 0x7F0000            ; demand-paged stack: up to 0x800000
STACK_TOP   equ 0x800000
FRAMES      equ 0x200000            ; free frames for page-ins (kernel-mapped), upward
NPROC       equ 2

; the process table: one PROC_SIZE record each
P_STATE     equ 0                   ; 0 free, 1 runnable, 2 dead
P_PID       equ 4
P_PD        equ 8                   ; physical address of its page directory
P_PT        equ 12                  ; ... and of its user page table
P_TF        equ 16                  ; its saved trap frame (15 dwords)
PROC_SIZE   equ 128
TF_SIZE     equ 60

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov esi, banner
    call puts
    ; the kernel's identity map of 0-4 MiB, supervisor only
    mov ecx, 0
.kmap:
    mov eax, ecx
    shl eax, 12
    or eax, PTE_P | PTE_W
    mov [KPGTAB + ecx*4], eax
    inc ecx
    cmp ecx, 1024
    jne .kmap
    ; the processes
    mov ecx, 0
.procs:
    call proc_init
    inc ecx
    cmp ecx, NPROC
    jne .procs
    ; paging on, in process 1's address space
    mov dword [current], procs
    mov eax, [procs + P_PD]
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax
    ; enter process 1: its saved trap frame becomes the live one
    sub esp, TF_SIZE
    mov edi, esp
    mov esi, procs + P_TF
    mov ecx, TF_SIZE
    call memcopy
    popad
    add esp, 8
    iret

; proc_init(ecx = index): page directory, user page table, trap frame
proc_init:
    pushad
    mov ebx, ecx
    shl ebx, 7                      ; * PROC_SIZE
    add ebx, procs
    mov dword [ebx + P_STATE], 1
    lea eax, [ecx + 1]
    mov [ebx + P_PID], eax
    mov eax, ecx
    shl eax, 13                     ; two pages per process
    add eax, PROCTAB
    mov [ebx + P_PD], eax
    lea edx, [eax + PAGE_SIZE]
    mov [ebx + P_PT], edx
    mov edi, eax                    ; zero the PD and the PT
    mov ecx, 2 * PAGE_SIZE
    call memzero
    mov dword [eax], KPGTAB | PTE_P | PTE_W
    lea ecx, [edx + (PTE_P | PTE_W | PTE_U)]
    mov [eax + (USER_BASE >> 22) * 4], ecx
    ; the user code: read-only, at its own address
    mov ecx, 0
.code:
    mov eax, ecx
    shl eax, 12
    add eax, USER_BASE | PTE_P | PTE_U
    mov [edx + ecx*4], eax
    inc ecx
    cmp ecx, USER_PAGES
    jne .code
    ; the first trap frame: ring 3 at user_main, interrupts off
    lea edi, [ebx + P_TF]
    mov ecx, TF_SIZE
    call memzero
    mov dword [ebx + P_TF + TF_EIP], user_main
    mov dword [ebx + P_TF + TF_CS], USER_CS
    mov dword [ebx + P_TF + TF_EFLAGS], EFLAGS_BASE
    mov dword [ebx + P_TF + TF_USP], STACK_TOP
    mov dword [ebx + P_TF + TF_USS], USER_SS
    popad
    ret

; --- traps -------------------------------------------------------------------
trap:
    mov ebx, eax                    ; ebx = the trap frame
    mov eax, [ebx + TF_VEC]
    cmp eax, T_PF
    je page_fault
    cmp eax, T_SYSCALL
    je syscall
    mov esi, msg_unexpected
    call puts
    call print_dec
    call newline
    jmp kill

page_fault:
    mov edx, cr2
    test dword [ebx + TF_CS], 3
    jne .user
    mov esi, msg_kfault             ; the kernel itself faulted: stop
    call puts
    mov eax, edx
    call print_hex
    call newline
    mov eax, 99
    call poweroff
.user:
    test dword [ebx + TF_ERR], PF_P
    jne .segv                       ; a protection fault: no page-in helps
    cmp edx, HEAP
    jb .stack
    cmp edx, HEAP + HEAP_PAGES * PAGE_SIZE
    jb .page_in
.stack:
    cmp edx, STACK_LO
    jb .segv
    cmp edx, STACK_TOP
    jb .page_in
.segv:
    mov esi, msg_kernel
    call puts
    call print_pid
    mov esi, msg_segv
    call puts
    mov eax, edx
    call print_hex
    mov esi, msg_error
    call puts
    mov eax, [ebx + TF_ERR]
    call print_dec
    mov esi, msg_killed
    call puts
    jmp kill
.page_in:
    mov eax, [next_frame]           ; a free frame, zeroed
    add dword [next_frame], PAGE_SIZE
    inc dword [page_ins]
    mov edi, eax
    mov ecx, PAGE_SIZE
    call memzero
    mov ecx, edx                    ; its PTE in the current user page table
    shr ecx, 12
    and ecx, 0x3FF
    mov esi, [current]
    mov esi, [esi + P_PT]
    or eax, PTE_P | PTE_W | PTE_U
    mov [esi + ecx*4], eax          ; not present -> present: no INVLPG needed
    mov esi, msg_kernel
    call puts
    call print_pid
    mov esi, msg_pagein
    call puts
    and edx, ~0xFFF
    mov eax, edx
    call print_hex
    mov esi, msg_arrow
    call puts
    mov esi, [current]
    mov esi, [esi + P_PT]
    mov eax, [esi + ecx*4]
    and eax, ~0xFFF
    call print_hex
    call newline
    ret                             ; restart the faulting instruction

syscall:
    mov eax, [ebx + TF_EAX]
    cmp eax, SYS_WRITE
    je sys_write
    cmp eax, SYS_GETPID
    je sys_getpid
    cmp eax, SYS_YIELD
    je schedule
    cmp eax, SYS_EXIT
    je sys_exit
    cmp eax, SYS_MUNMAP
    je sys_munmap
    mov dword [ebx + TF_EAX], -1
    ret

sys_write:                          ; ebx = buffer, ecx = length
    mov esi, [ebx + TF_EBX]
    mov ecx, [ebx + TF_ECX]
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
    mov eax, [current]
    mov eax, [eax + P_PID]
    mov [ebx + TF_EAX], eax
    ret

sys_munmap:                         ; ebx = va of a heap page
    mov edx, [ebx + TF_EBX]
    mov ecx, edx
    shr ecx, 12
    and ecx, 0x3FF
    mov esi, [current]
    mov esi, [esi + P_PT]
    mov dword [esi + ecx*4], 0
    invlpg [edx]                    ; present -> not present: invalidate
    mov esi, msg_kernel
    call puts
    call print_pid
    mov esi, msg_munmap
    call puts
    mov eax, edx
    call print_hex
    call newline
    mov dword [ebx + TF_EAX], 0
    ret

sys_exit:
    mov esi, msg_kernel
    call puts
    call print_pid
    mov esi, msg_exit
    call puts
    mov eax, [ebx + TF_EBX]
    call print_dec
    call newline
kill:
    mov esi, [current]
    mov dword [esi + P_STATE], 2
    ; fall through: run somebody else

; schedule: save the current process's trap frame, switch to the next
; runnable process (CR3 load), or power off when none is left
schedule:
    mov esi, ebx                    ; save the live trap frame
    mov edi, [current]
    add edi, P_TF
    mov ecx, TF_SIZE
    call memcopy
    mov eax, [current]
    mov ecx, NPROC
.find:
    add eax, PROC_SIZE
    cmp eax, procs + NPROC * PROC_SIZE
    jb .in_table
    mov eax, procs
.in_table:
    cmp dword [eax + P_STATE], 1
    je .found
    dec ecx
    jne .find
    mov esi, msg_done               ; nobody is left
    call puts
    mov eax, [page_ins]
    call print_dec
    mov esi, msg_pageins
    call puts
    mov eax, 0
    call poweroff
.found:
    mov [current], eax
    mov edx, [eax + P_PD]
    mov cr3, edx                    ; switch address spaces
    lea esi, [eax + P_TF]           ; its trap frame becomes the live one
    mov edi, ebx
    mov ecx, TF_SIZE
    call memcopy
    ret

print_pid:
    push eax
    mov eax, [current]
    mov eax, [eax + P_PID]
    call print_dec
    pop eax
    ret

banner:         db "demand: two processes, demand paging, a segfault", 10, 0
msg_unexpected: db "unexpected trap ", 0
msg_kfault:     db "kernel page fault at ", 0
msg_kernel:     db "  kernel: pid ", 0
msg_pagein:     db " page-in ", 0
msg_arrow:      db " -> frame ", 0
msg_segv:       db " segfault at ", 0
msg_error:      db " (error ", 0
msg_killed:     db "): killed", 10, 0
msg_munmap:     db " munmap ", 0
msg_exit:       db " exit ", 0
msg_done:       db "demand: all processes done after ", 0
msg_pageins:    db " page-ins", 10, 0
current:        dd 0
next_frame:     dd FRAMES
page_ins:       dd 0
align 16
procs:          times NPROC * PROC_SIZE db 0

%include "lib.inc"

; --- the user program (both processes run it) ---------------------------------
section user start=USER_BASE
user_main:
    mov eax, SYS_GETPID
    int 0x80
    mov ebp, eax                    ; ebp = pid (the kernel keeps our registers)
    mov esi, u_hello
    call u_puts                     ; the first push touches the stack: a page-in
    mov eax, ebp
    call u_putnum
    call u_newline
    ; write pid*1000 + i at the start of heap pages 0..3 (four page-ins)
    mov ecx, 0
.fill:
    mov eax, ebp
    imul eax, 1000
    add eax, ecx
    mov edx, ecx
    shl edx, 12
    mov [HEAP + edx], eax
    inc ecx
    cmp ecx, 4
    jne .fill
    mov eax, SYS_YIELD              ; let the other process run
    int 0x80
    ; read them back: each process sees its own pages
    mov ecx, 0
    mov ebx, 0
.sum:
    mov edx, ecx
    shl edx, 12
    add ebx, [HEAP + edx]
    inc ecx
    cmp ecx, 4
    jne .sum
    mov esi, u_pid
    call u_puts
    mov eax, ebp
    call u_putnum
    mov esi, u_sum
    call u_puts
    mov eax, ebx
    call u_putnum
    call u_newline
    ; unmap heap page 1, then read it again: a fresh zero page
    mov eax, SYS_MUNMAP
    mov ebx, HEAP + PAGE_SIZE
    int 0x80
    mov ebx, [HEAP + PAGE_SIZE]     ; a page-in: demand-zero again
    mov esi, u_pid
    call u_puts
    mov eax, ebp
    call u_putnum
    mov esi, u_again
    call u_puts
    mov eax, ebx
    call u_putnum
    call u_newline
    cmp ebp, 2
    jne .exit
    mov eax, [0x600000]             ; never allocated: killed here
.exit:
    mov eax, SYS_EXIT
    mov ebx, ebp
    int 0x80

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

u_newline:
    pushad
    mov eax, SYS_WRITE
    mov ebx, u_nl
    mov ecx, 1
    int 0x80
    popad
    ret

u_hello:    db "hello from pid ", 0
u_pid:      db "pid ", 0
u_sum:      db ": heap sum ", 0
u_again:    db ": heap page 1 after munmap reads ", 0
u_nl:       db 10
USER_PAGES  equ ($ - $$ + PAGE_SIZE - 1) / PAGE_SIZE
