; forkwait: fork and wait, 40 times -- the benchmark that makes shadow paging pay
;
; One process forks a child and waits for it, FORKS times.  Each fork
; builds a page directory and a page table for the child and makes the
; parent's writable pages read-only (copy-on-write) in both address spaces,
; then reloads CR3.  Each child takes a new heap page (sbrk: a zero-fill
; page-in), writes its stack (a copy-on-write fault) and exits with its
; iteration number; the parent's wait collects it and the kernel frees the
; child's frames and page tables.  The kernel is multiproc's, without the
; timer and quiet: one dot per 10 children, a line at the end.
;
; Natively this is cheap.  Under shadow paging nearly every step is a VM
; exit: each PTE the kernel writes in a live page table is a TRACING fault,
; each CR3 load (fork's flush, every switch between parent and child) an
; exit, each zero-fill or copy-on-write page a TRUE and then a HIDDEN
; fault, and freed page-table frames reused as data pages stay
; write-protected in the shadow until the VMM notices.
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
KPGTAB      equ 0x100000            ; the kernel's page table: identity 0-4 MiB, supervisor
REFCNT      equ 0x101000            ; a reference count (dword) per pool frame
FREELIST    equ 0x102000            ; a stack of free pool frames (dwords)
FRAME_BASE  equ 0x200000            ; the frame pool: page tables and user pages
NFRAMES     equ 512
FRAME_END   equ FRAME_BASE + NFRAMES * PAGE_SIZE
USER_BASE   equ 0x400000            ; user code: shared, read-only, at its own address
UBSS        equ 0x410000            ; one page of user variables (demand-zero)
HEAP_BASE   equ 0x420000            ; sbrk's heap (demand-zero) grows up to HEAP_MAX
HEAP_MAX    equ 0x460000
STACK_LO    equ 0x7F0000            ; the user stack (demand-zero), down from STACK_TOP
STACK_TOP   equ 0x800000
PTX_LOW     equ (HEAP_MAX - USER_BASE) >> 12    ; user PTEs 0..PTX_LOW-1: code, bss, heap
PTX_STACK   equ (STACK_LO - USER_BASE) >> 12    ; user PTEs PTX_STACK..1023: the stack
FORKS       equ 40
NPROC       equ 8

; the process table: one PROC_SIZE record each
P_STATE     equ 0                   ; FREE, RUNNABLE, WAITING or ZOMBIE
P_PID       equ 4
P_PPID      equ 8                   ; the parent's pid (0: none)
P_PD        equ 12                  ; physical address of its page directory
P_PT        equ 16                  ; ... and of its user page table (va 4-8 MiB)
P_BRK       equ 20                  ; the heap's end (sbrk)
P_STATUS    equ 24                  ; the exit status, for wait
P_TF        equ 32                  ; its saved trap frame
PROC_SIZE   equ 128
TF_SIZE     equ 60
FREE        equ 0
RUNNABLE    equ 1
WAITING     equ 2                   ; in wait, until a child exits
ZOMBIE      equ 3                   ; exited, until its parent waits

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    ; system calls through an interrupt gate: the kernel is never preempted
    mov dword [idt + T_SYSCALL*8 + 4], GATE_USER_INT
    mov esi, banner
    call puts
    mov ecx, 0                      ; the kernel's map: identity 0-4 MiB
.kmap:
    mov eax, ecx
    shl eax, 12
    or eax, PTE_P | PTE_W
    mov [KPGTAB + ecx*4], eax
    inc ecx
    cmp ecx, 1024
    jne .kmap
    call frames_init
    mov eax, user_main
    call spawn
    mov dword [current], procs      ; paging on, in pid 1's address space
    mov eax, [procs + P_PD]
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax
    sub esp, TF_SIZE                ; enter pid 1: its trap frame becomes the live one
    mov edi, esp
    mov esi, procs + P_TF
    mov ecx, TF_SIZE
    call memcopy
    popad
    add esp, 8
    iret

; --- frames: a pool with reference counts ---------------------------------------
; frames_init: every pool frame free, the lowest handed out first
frames_init:
    pushad
    mov edi, REFCNT
    mov ecx, NFRAMES * 4
    call memzero
    mov ecx, 0
    mov eax, FRAME_END
.push:
    sub eax, PAGE_SIZE
    mov [FREELIST + ecx*4], eax
    inc ecx
    cmp ecx, NFRAMES
    jne .push
    mov [free_top], ecx
    popad
    ret

; frame_alloc: eax = a free frame (not zeroed), reference count 1
frame_alloc:
    push ecx
    mov ecx, [free_top]
    test ecx, ecx
    je .empty
    dec ecx
    mov [free_top], ecx
    mov eax, [FREELIST + ecx*4]
    mov ecx, eax
    sub ecx, FRAME_BASE
    shr ecx, 12
    mov dword [REFCNT + ecx*4], 1
    inc dword [frames_used]
    pop ecx
    ret
.empty:
    mov esi, msg_nomem
    call puts
    mov eax, 98
    call poweroff

; frame_zalloc: eax = a free frame, zeroed
frame_zalloc:
    call frame_alloc
    push ecx
    push edi
    mov edi, eax
    mov ecx, PAGE_SIZE
    call memzero
    pop edi
    pop ecx
    ret

; frame_incref / frame_decref: eax = a pool frame; decref frees it at zero
frame_incref:
    push ecx
    mov ecx, eax
    sub ecx, FRAME_BASE
    shr ecx, 12
    inc dword [REFCNT + ecx*4]
    pop ecx
    ret

frame_decref:
    push ecx
    mov ecx, eax
    sub ecx, FRAME_BASE
    shr ecx, 12
    dec dword [REFCNT + ecx*4]
    jne .done
    mov ecx, [free_top]
    mov [FREELIST + ecx*4], eax
    inc dword [free_top]
    dec dword [frames_used]
.done:
    pop ecx
    ret

; frame_refs: eax = a pool frame -> ecx = its reference count
frame_refs:
    mov ecx, eax
    sub ecx, FRAME_BASE
    shr ecx, 12
    mov ecx, [REFCNT + ecx*4]
    ret

; in_pool: CF=0 when the frame in eax is a pool frame (else the shared code)
in_pool:
    cmp eax, FRAME_BASE
    jb .no
    cmp eax, FRAME_END
    jae .no
    push eax
    mov eax, 1
    cmp eax, 0                      ; CF=0
    pop eax
    ret
.no:
    push eax
    mov eax, 0
    cmp eax, 1                      ; CF=1
    pop eax
    ret

; --- processes ------------------------------------------------------------------
; proc_new: edi = a free process slot with a new pid, page directory and an
; empty user page table (state still FREE); CF=1 when the table is full
proc_new:
    push eax
    push ecx
    mov edi, procs
.find:
    cmp dword [edi + P_STATE], FREE
    je .found
    add edi, PROC_SIZE
    cmp edi, procs + NPROC * PROC_SIZE
    jb .find
    mov ecx, 0
    cmp ecx, 1                      ; CF=1: the table is full
    pop ecx
    pop eax
    ret
.found:
    mov eax, [next_pid]
    inc dword [next_pid]
    mov [edi + P_PID], eax
    mov dword [edi + P_PPID], 0
    mov dword [edi + P_BRK], HEAP_BASE
    call frame_zalloc
    mov [edi + P_PD], eax
    mov ecx, eax
    call frame_zalloc
    mov [edi + P_PT], eax
    mov dword [ecx], KPGTAB | PTE_P | PTE_W
    or eax, PTE_P | PTE_W | PTE_U
    mov [ecx + (USER_BASE >> 22) * 4], eax
    cmp ecx, 0                      ; CF=0
    pop ecx
    pop eax
    ret

; spawn(eax = entry): a new process running the user code at eax
spawn:
    pushad
    mov ebx, eax
    call proc_new
    mov edx, [edi + P_PT]           ; the user code: read-only, shared
    mov ecx, 0
.code:
    mov eax, ecx
    shl eax, 12
    add eax, USER_BASE | PTE_P | PTE_U
    mov [edx + ecx*4], eax
    inc ecx
    cmp ecx, USER_PAGES
    jne .code
    push edi                        ; its first trap frame: ring 3, IF=1
    add edi, P_TF
    mov ecx, TF_SIZE
    call memzero
    pop edi
    mov [edi + P_TF + TF_EIP], ebx
    mov dword [edi + P_TF + TF_CS], USER_CS
    mov dword [edi + P_TF + TF_EFLAGS], EFLAGS_BASE | EFLAGS_IF
    mov dword [edi + P_TF + TF_USP], STACK_TOP
    mov dword [edi + P_TF + TF_USS], USER_SS
    mov dword [edi + P_STATE], RUNNABLE
    popad
    ret

; proc_release(edi = slot): free its page directory and page table
proc_release:
    push eax
    mov eax, [edi + P_PD]
    call frame_decref
    mov eax, [edi + P_PT]
    call frame_decref
    mov dword [edi + P_STATE], FREE
    pop eax
    ret

; --- traps ------------------------------------------------------------------------
trap:
    mov ebx, eax                    ; ebx = the live trap frame
    mov eax, [ebx + TF_VEC]
    cmp eax, T_SYSCALL
    je syscall
    test dword [ebx + TF_CS], 3
    je kernel_panic
    cmp eax, T_PF
    je page_fault
    mov esi, msg_kernel             ; any other exception kills the process
    call puts
    call print_pid
    mov esi, msg_trap
    call puts
    call print_dec
    mov esi, msg_killed
    call puts
    mov eax, 255
    jmp do_exit

kernel_panic:
    mov esi, msg_panic
    call puts
    call print_dec
    mov esi, msg_at
    call puts
    mov eax, [ebx + TF_EIP]
    call print_hex
    call newline
    mov eax, 99
    call poweroff

page_fault:
    mov edx, cr2
    mov eax, edx                    ; the user page table covers 4-8 MiB
    shr eax, 22
    cmp eax, USER_BASE >> 22
    jne segv
    mov ecx, edx                    ; ecx = PTX, esi = the page table
    shr ecx, 12
    and ecx, 0x3FF
    mov esi, [current]
    mov esi, [esi + P_PT]
    mov eax, [ebx + TF_ERR]
    test eax, PF_P
    je demand_zero
    test eax, PF_W
    je segv
    mov eax, [esi + ecx*4]          ; a write to a read-only page: COW?
    test eax, PTE_COW
    je segv
cow_fault:
    and edx, ~0xFFF                 ; edx = the page
    and eax, ~0xFFF                 ; eax = the shared frame
    push ecx
    call frame_refs
    cmp ecx, 1
    pop ecx
    jne .copy
    mov eax, [esi + ecx*4]          ; the last sharer: writable again, no copy
    and eax, ~PTE_COW
    or eax, PTE_W
    mov [esi + ecx*4], eax
    invlpg [edx]                    ; read-only -> writable: drop the old entry
    inc dword [cow_reuses]
    ret
.copy:
    push ecx
    push esi
    mov esi, eax                    ; copy the shared frame into a new one
    call frame_alloc
    mov edi, eax
    mov ecx, PAGE_SIZE
    call memcopy
    mov eax, esi
    call frame_decref               ; one sharer fewer
    pop esi
    pop ecx
    mov eax, edi
    or eax, PTE_P | PTE_W | PTE_U
    mov [esi + ecx*4], eax
    invlpg [edx]                    ; the PTE now maps another frame
    inc dword [cow_copies]
    ret                             ; restart the faulting write

demand_zero:                        ; a page never touched: is it ours?
    mov eax, [current]
    cmp edx, UBSS
    jb segv
    cmp edx, UBSS + PAGE_SIZE
    jb .zero
    cmp edx, HEAP_BASE
    jb segv
    cmp edx, [eax + P_BRK]
    jb .zero
    cmp edx, STACK_LO
    jb segv
.zero:
    call frame_zalloc
    or eax, PTE_P | PTE_W | PTE_U
    mov [esi + ecx*4], eax          ; not present -> present: no INVLPG needed
    inc dword [zero_fills]
    ret

segv:
    mov esi, msg_kernel
    call puts
    call print_pid
    mov esi, msg_segv
    call puts
    mov eax, edx
    call print_hex
    mov esi, msg_killed
    call puts
    mov eax, 255
    jmp do_exit

; --- system calls ---------------------------------------------------------------
syscall:
    mov eax, [ebx + TF_EAX]
    cmp eax, SYS_WRITE
    je sys_write
    cmp eax, SYS_EXIT
    je sys_exit
    cmp eax, SYS_YIELD
    je schedule
    cmp eax, SYS_GETPID
    je sys_getpid
    cmp eax, SYS_SBRK
    je sys_sbrk
    cmp eax, SYS_FORK
    je sys_fork
    cmp eax, SYS_WAIT
    je sys_wait
    mov dword [ebx + TF_EAX], -1
    ret

sys_write:                          ; ebx = buffer, ecx = length
    mov esi, [ebx + TF_EBX]
    mov ecx, [ebx + TF_ECX]
    mov [ebx + TF_EAX], ecx
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

sys_getpid:
    mov eax, [current]
    mov eax, [eax + P_PID]
    mov [ebx + TF_EAX], eax
    ret

sys_sbrk:                           ; ebx = increment (>= 0); returns the old break
    mov esi, [current]
    mov eax, [esi + P_BRK]
    mov ecx, [ebx + TF_EBX]
    add ecx, eax
    jc .fail
    cmp ecx, HEAP_MAX
    ja .fail
    mov [esi + P_BRK], ecx
    mov [ebx + TF_EAX], eax
    ret
.fail:
    mov dword [ebx + TF_EAX], -1
    ret

sys_exit:
    mov eax, [ebx + TF_EBX]
    ; fall through

; do_exit(eax = status): free the user pages, tell the parent, run somebody else
do_exit:
    mov esi, [current]
    mov [esi + P_STATUS], eax
    mov esi, [current]
    mov esi, [esi + P_PT]
    mov ecx, 0
.free:
    mov eax, [esi + ecx*4]
    test eax, PTE_P
    je .next
    and eax, ~0xFFF
    call in_pool
    jc .next
    call frame_decref
.next:
    inc ecx
    cmp ecx, PTX_LOW
    jne .not_low
    mov ecx, PTX_STACK
.not_low:
    cmp ecx, 1024
    jne .free
    mov esi, [current]              ; orphans: nobody will wait for them
    mov edx, [esi + P_PID]
    mov edi, procs
.orphans:
    cmp [edi + P_PPID], edx
    jne .next_orphan
    cmp dword [edi + P_STATE], FREE
    je .next_orphan
    mov dword [edi + P_PPID], 0
    cmp dword [edi + P_STATE], ZOMBIE
    jne .next_orphan
    call proc_release
.next_orphan:
    add edi, PROC_SIZE
    cmp edi, procs + NPROC * PROC_SIZE
    jb .orphans
    mov edi, esi                    ; edi = the exiting process
    mov edx, [edi + P_PPID]
    test edx, edx
    je .release                     ; no parent: gone at once
    mov esi, procs                  ; find the parent
.parent:
    cmp [esi + P_PID], edx
    jne .next_parent
    cmp dword [esi + P_STATE], FREE
    jne .found
.next_parent:
    add esi, PROC_SIZE
    jmp .parent
.found:
    cmp dword [esi + P_STATE], WAITING
    je .wake
    mov dword [edi + P_STATE], ZOMBIE
    jmp schedule
.wake:                              ; its wait returns now: pid and status
    mov eax, [edi + P_PID]
    mov [esi + P_TF + TF_EAX], eax
    mov eax, [edi + P_STATUS]
    mov [esi + P_TF + TF_EBX], eax
    mov dword [esi + P_STATE], RUNNABLE
.release:
    ; Its page tables are freed while CR3 still points at them: nothing is
    ; allocated before schedule loads another process's CR3.
    call proc_release
    jmp schedule

; wait: eax = a dead child's pid, ebx = its status; -1 when it has no child
sys_wait:
    mov esi, [current]
    mov edx, [esi + P_PID]
    mov ecx, 0                      ; live children seen
    mov edi, procs
.scan:
    cmp dword [edi + P_STATE], FREE
    je .next
    cmp [edi + P_PPID], edx
    jne .next
    inc ecx
    cmp dword [edi + P_STATE], ZOMBIE
    je .reap
.next:
    add edi, PROC_SIZE
    cmp edi, procs + NPROC * PROC_SIZE
    jb .scan
    test ecx, ecx
    jne .sleep
    mov dword [ebx + TF_EAX], -1
    ret
.sleep:                             ; the child's exit fills in the answer
    mov dword [esi + P_STATE], WAITING
    jmp schedule
.reap:
    mov eax, [edi + P_PID]
    mov [ebx + TF_EAX], eax
    mov eax, [edi + P_STATUS]
    mov [ebx + TF_EBX], eax
    call proc_release
    ret

; fork: the child gets a copy of the address space, sharing every page; the
; writable ones become read-only and copy-on-write in both
sys_fork:
    call proc_new
    jnc .ok
    mov dword [ebx + TF_EAX], -1
    ret
.ok:
    mov esi, [current]
    mov eax, [esi + P_PID]
    mov [edi + P_PPID], eax
    mov eax, [esi + P_BRK]
    mov [edi + P_BRK], eax
    mov esi, [esi + P_PT]           ; esi = the parent's PT, edx = the child's
    mov edx, [edi + P_PT]
    push edi
    push ebp
    mov edi, 0                      ; pages shared
    mov ebp, 0                      ; ... of which made read-only now
    mov ecx, 0
.pte:
    mov eax, [esi + ecx*4]
    test eax, PTE_P
    je .next
    push eax
    and eax, ~0xFFF
    call in_pool
    jc .shared_code
    call frame_incref
    inc edi
    pop eax
    test eax, PTE_W
    je .copy_pte
    and eax, ~PTE_W
    or eax, PTE_COW
    mov [esi + ecx*4], eax          ; the parent's PTE: read-only now
    inc ebp
    jmp .copy_pte
.shared_code:
    pop eax
.copy_pte:
    mov [edx + ecx*4], eax
.next:
    inc ecx
    cmp ecx, PTX_LOW
    jne .not_low
    mov ecx, PTX_STACK
.not_low:
    cmp ecx, 1024
    jne .pte
    test ebp, ebp
    je .flushed
    mov eax, cr3                    ; writable -> read-only: flush the parent's TLB
    mov cr3, eax
.flushed:
    mov eax, edi
    pop ebp
    pop edi
    lea esi, [edi + P_TF]           ; the child returns from fork with eax = 0
    xchg esi, edi
    push esi
    mov esi, ebx
    mov ecx, TF_SIZE
    call memcopy
    pop edi
    mov dword [edi + P_TF + TF_EAX], 0
    mov dword [edi + P_STATE], RUNNABLE
    inc dword [forks]
    mov ecx, [edi + P_PID]
    mov [ebx + TF_EAX], ecx
    ret

; schedule: save the live trap frame, switch to the next runnable process
; (round-robin; a CR3 load when it is another one), or power off when none
schedule:
    mov esi, ebx
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
    cmp dword [eax + P_STATE], RUNNABLE
    je .found
    dec ecx
    jne .find
    jmp all_done
.found:
    cmp eax, [current]
    je .same
    inc dword [switches]
    mov [current], eax
    mov edx, [eax + P_PD]
    mov cr3, edx                    ; switch address spaces
.same:
    lea esi, [eax + P_TF]
    mov edi, ebx
    mov ecx, TF_SIZE
    call memcopy
    ret

all_done:
    mov esi, msg_sum1
    call puts
    mov eax, [forks]
    call print_dec
    mov esi, msg_sum2
    call puts
    mov eax, [cow_copies]
    call print_dec
    mov esi, msg_sum3
    call puts
    mov eax, [cow_reuses]
    call print_dec
    mov esi, msg_sum4
    call puts
    mov eax, [zero_fills]
    call print_dec
    mov esi, msg_sum5
    call puts
    mov eax, [switches]
    call print_dec
    mov esi, msg_sum6
    call puts
    mov eax, [frames_used]
    call print_dec
    call newline
    mov eax, 0
    call poweroff

print_pid:
    push eax
    mov eax, [current]
    mov eax, [eax + P_PID]
    call print_dec
    pop eax
    ret

banner:         db "forkwait: fork a child and wait for it, 40 times", 10, 0
msg_nomem:      db "kernel: out of frames", 10, 0
msg_panic:      db "kernel: panic: trap ", 0
msg_at:         db " in the kernel at ", 0
msg_kernel:     db "  kernel: pid ", 0
msg_trap:       db " trap ", 0
msg_killed:     db ": killed", 10, 0
msg_segv:       db " segfault at ", 0
msg_sum1:       db "  kernel: ", 0
msg_sum2:       db " forks, ", 0
msg_sum3:       db " COW copies, ", 0
msg_sum4:       db " COW reuses, ", 0
msg_sum5:       db " zero-fill pages,", 10, "  kernel: ", 0
msg_sum6:       db " context switches, frames still in use: ", 0

%include "lib.inc"

; the kernel's variables, in a page of their own: a write to a page of code
; would throw away the emulator's translations of that code
align 4096
current:        dd 0
next_pid:       dd 1
free_top:       dd 0
frames_used:    dd 0
forks:          dd 0
cow_copies:     dd 0
cow_reuses:     dd 0
zero_fills:     dd 0
switches:       dd 0
align 16
procs:          times NPROC * PROC_SIZE db 0


; --- the user program (ring 3) ------------------------------------------------
U_SUM       equ UBSS + 0            ; the children's exit statuses, summed

section user start=USER_BASE
user_main:
    mov dword [U_SUM], 0            ; the first touch: a zero-fill page
    push 0                          ; [esp] = the iteration, on the stack
.fork:
    mov ebp, [esp]
    mov eax, SYS_FORK
    int 0x80
    test eax, eax
    je child
    mov eax, SYS_WAIT
    int 0x80                        ; eax = the child's pid, ebx = its status
    add [U_SUM], ebx                ; copy-on-write since the fork
    inc dword [esp]                 ; so is the stack
    mov eax, [esp]                  ; a dot every 10 children
    mov edx, 0
    mov ecx, 10
    div ecx
    test edx, edx
    jne .no_dot
    mov eax, SYS_WRITE
    mov ebx, s_dot
    mov ecx, 1
    int 0x80
.no_dot:
    cmp dword [esp], FORKS
    jne .fork
    mov eax, SYS_WRITE
    mov ebx, s_done
    mov ecx, s_done_len
    int 0x80
    mov eax, [U_SUM]                ; the sum, as 3 digits (0..999)
    mov ecx, 100
    call u_digit
    mov ecx, 10
    call u_digit
    mov ecx, 1
    call u_digit
    mov eax, SYS_WRITE
    mov ebx, s_expected
    mov ecx, s_expected_len
    int 0x80
    mov eax, SYS_EXIT
    mov ebx, 0
    int 0x80

child:                              ; ebp = the iteration
    mov eax, SYS_SBRK               ; a heap page of its own: a zero-fill page-in
    mov ebx, PAGE_SIZE
    int 0x80
    mov [eax], ebp
    push dword [eax]                ; its stack: copy-on-write
    pop ebx
    mov eax, SYS_EXIT               ; status = the iteration
    int 0x80

; u_digit: write the digit (eax / ecx) % 10
u_digit:
    pushad
    mov edx, 0
    div ecx
    mov edx, 0
    mov ecx, 10
    div ecx
    add edx, '0'
    push edx
    mov eax, SYS_WRITE
    mov ebx, esp
    mov ecx, 1
    int 0x80
    pop edx
    popad
    ret

s_dot:          db "."
s_done:         db 10, "forkwait: 40 children waited for, exit statuses sum to "
s_done_len      equ $ - s_done
s_expected:     db " (0+1+...+39 = 780)", 10
s_expected_len  equ $ - s_expected
USER_PAGES      equ ($ - $$ + PAGE_SIZE - 1) / PAGE_SIZE
