; multiproc: three processes, a timer, fork with copy-on-write, wait, sbrk
;
; The kernel starts three user processes, each in its own address space,
; and lets the timer interrupt switch between them round-robin (every
; TICK instructions; SYS_YIELD gives the processor away early).
;
;   pid 1 forks three children.  fork copies no page: it shares every page
;         and makes the writable ones read-only + PTE_COW in BOTH address
;         spaces (a CR3 reload drops the parent's stale writable TLB
;         entries).  The first write to a shared page faults; the #PF
;         handler copies the frame (or, for the last sharer, just makes
;         it writable again) and INVLPGs the page.  Each child counts
;         primes and exits with the count; pid 1 collects them with wait.
;   pid 2 grows its heap with sbrk: the new pages are demand-zero, filled
;         in by the #PF handler on first touch.  It sums the heap and yields.
;   pid 3 computes and prints while the timer preempts it.
;
; Frames come from a pool with a reference count each; when everyone has
; exited the kernel prints its counters and how many frames are still in
; use: 0.
;
; Under shadow paging: every PTE the kernel writes in a live address space
; is a TRACING fault, every demand-zero or COW page is a TRUE fault and then
; a HIDDEN fault, and each context switch is a CR3 exit.
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
TICK        equ 2000                ; timer period, in instructions
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
    mov eax, user_family
    call spawn
    mov eax, user_heap
    call spawn
    mov eax, user_printer
    call spawn
    mov dword [current], procs      ; paging on, in pid 1's address space
    mov eax, [procs + P_PD]
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax
    mov eax, TICK
    out TIMER_PERIOD, eax
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
    cmp eax, T_TIMER
    je timer
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

timer:                              ; only ever from ring 3: preempt
    inc dword [ticks]
    mov dword [preempting], 1
    call schedule
    mov dword [preempting], 0
    ret

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
    mov edi, msg_cow_reuse
    jmp .report
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
    mov edi, msg_cow_copy
.report:
    mov esi, msg_kernel
    call puts
    call print_pid
    mov esi, msg_cow
    call puts
    mov eax, edx
    call print_hex
    mov esi, edi
    call puts
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
    mov esi, msg_kernel
    call puts
    call print_pid
    mov esi, msg_exit
    call puts
    call print_dec
    call newline
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
    mov esi, msg_kernel
    call puts
    call print_pid
    mov esi, msg_forks
    call puts
    xchg eax, ecx
    call print_dec
    mov esi, msg_shares
    call puts
    xchg eax, ecx
    call print_dec
    mov esi, msg_cowpages
    call puts
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
    mov edx, [preempting]
    add [preemptions], edx
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
    mov esi, msg_done
    call puts
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
    mov eax, [ticks]
    call print_dec
    mov esi, msg_sum6
    call puts
    mov eax, [switches]
    call print_dec
    mov esi, msg_sum7
    call puts
    mov eax, [preemptions]
    call print_dec
    mov esi, msg_sum8
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

banner:         db "multiproc: three processes, a timer, fork with copy-on-write", 10, 0
msg_nomem:      db "kernel: out of frames", 10, 0
msg_panic:      db "kernel: panic: trap ", 0
msg_at:         db " in the kernel at ", 0
msg_kernel:     db "  kernel: pid ", 0
msg_trap:       db " trap ", 0
msg_killed:     db ": killed", 10, 0
msg_segv:       db " segfault at ", 0
msg_cow:        db " COW write to ", 0
msg_cow_copy:   db ": copied", 10, 0
msg_cow_reuse:  db ": last sharer, made writable", 10, 0
msg_exit:       db " exits, status ", 0
msg_forks:      db " forks pid ", 0
msg_shares:     db " (sharing ", 0
msg_cowpages:   db " pages copy-on-write)", 10, 0
msg_done:       db "multiproc: all processes done", 10, 0
msg_sum1:       db "  ", 0
msg_sum2:       db " forks, ", 0
msg_sum3:       db " COW copies, ", 0
msg_sum4:       db " COW reuses, ", 0
msg_sum5:       db " zero-fill pages", 10, "  ", 0
msg_sum6:       db " timer ticks; ", 0
msg_sum7:       db " context switches (", 0
msg_sum8:       db " by the timer)", 10, "  frames still in use: ", 0
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
ticks:          dd 0
preemptions:    dd 0            ; switches the timer caused
preempting:     dd 0            ; 1 while the timer calls schedule
align 16
procs:          times NPROC * PROC_SIZE db 0


; --- the user programs (ring 3; one read-only image shared by everyone) -----------
; Variables live in the demand-zero page UBSS; a line is built in U_BUF
; and written with one system call, so lines never mix.
U_LEN       equ UBSS + 0            ; bytes in the line buffer
U_VALUE     equ UBSS + 4            ; pid 1's value; its children overwrite theirs
U_BUF       equ UBSS + 64

section user start=USER_BASE
; pid 1: three children count primes; their exit statuses come back by wait
user_family:
    mov dword [U_VALUE], 1000       ; the first touch: a zero-fill page
    call u_begin
    mov esi, s_forking
    call u_str
    call u_endl
    mov esi, 1                      ; child number
.fork:
    mov eax, SYS_FORK
    int 0x80
    test eax, eax
    je family_child
    inc esi
    cmp esi, 4
    jne .fork
    mov ebp, 0                      ; children collected
.wait:
    mov eax, SYS_WAIT
    int 0x80                        ; eax = a dead child's pid, ebx = its status
    mov edi, ebx
    call u_begin
    mov esi, s_child
    call u_str
    call u_num
    mov esi, s_status
    call u_str
    mov eax, edi
    call u_num
    call u_endl
    inc ebp
    cmp ebp, 3
    jne .wait
    call u_begin
    mov esi, s_value
    call u_str
    mov eax, [U_VALUE]
    call u_num
    call u_endl
    mov eax, SYS_EXIT
    mov ebx, 0
    int 0x80


family_child:                       ; esi = 1, 2, 3
    mov eax, esi
    imul eax, 111
    mov [U_VALUE], eax              ; a write to a shared page: copy-on-write
    mov ecx, esi
    imul ecx, 300
    call count_primes
    mov edi, eax
    call u_begin
    mov esi, s_myvalue
    call u_str
    mov eax, [U_VALUE]
    call u_num
    mov esi, s_primes
    call u_str
    mov eax, ecx
    call u_num
    mov esi, s_colon
    call u_str
    mov eax, edi
    call u_num
    call u_endl
    mov eax, SYS_EXIT               ; the count is the exit status
    mov ebx, edi
    int 0x80

; count_primes: eax = how many primes are below ecx (trial division)
count_primes:
    push ebx
    push ecx
    push edx
    push esi
    push edi
    mov edi, ecx
    mov esi, 0
    mov ebx, 2
.candidate:
    cmp ebx, edi
    jae .done
    mov ecx, 2
.divisor:
    mov eax, ecx
    imul eax, ecx
    cmp eax, ebx
    ja .prime
    mov eax, ebx
    mov edx, 0
    div ecx
    test edx, edx
    je .next
    inc ecx
    jmp .divisor
.prime:
    inc esi
.next:
    inc ebx
    jmp .candidate
.done:
    mov eax, esi
    pop edi
    pop esi
    pop edx
    pop ecx
    pop ebx
    ret

; pid 2: grows its heap two pages at a time, fills the new pages, sums all
user_heap:
    mov edi, 1                      ; round
.round:
    mov eax, SYS_SBRK
    mov ebx, 2 * PAGE_SIZE
    int 0x80                        ; eax = the old break
    lea ebp, [eax + 2 * PAGE_SIZE]  ; ebp = the new break
    mov ecx, eax                    ; one dword every 64 bytes: its index
    sub ecx, HEAP_BASE
    shr ecx, 6
    mov edx, eax
.fill:
    mov [edx], ecx                  ; the first touch of a page: zero-fill
    inc ecx
    add edx, 64
    cmp edx, ebp
    jne .fill
    mov eax, 0
    mov edx, HEAP_BASE
.sum:
    add eax, [edx]
    add edx, 64
    cmp edx, ebp
    jne .sum
    mov ebx, eax
    call u_begin
    mov esi, s_heap
    call u_str
    mov eax, ebp
    call u_hex
    mov esi, s_open
    call u_str
    mov eax, ebp
    sub eax, HEAP_BASE
    shr eax, 12
    call u_num
    mov esi, s_pages_sum
    call u_str
    mov eax, ebx
    call u_num
    call u_endl
    mov eax, SYS_YIELD
    int 0x80
    inc edi
    cmp edi, 5
    jne .round
    mov eax, SYS_EXIT
    mov ebx, 2
    int 0x80

; pid 3: computes and prints; the timer takes the processor away mid-loop
user_printer:
    mov edi, 1
.step:
    mov ecx, 1500
.busy:
    add edx, ecx
    dec ecx
    jne .busy
    call u_begin
    mov esi, s_step
    call u_str
    mov eax, edi
    call u_num
    mov esi, s_of6
    call u_str
    call u_endl
    inc edi
    cmp edi, 7
    jne .step
    mov eax, SYS_EXIT
    mov ebx, 3
    int 0x80

; --- the user library: build a line, write it with one system call ---------------
; u_begin: start a line with "pid N: "
u_begin:
    pushad
    mov dword [U_LEN], 0
    mov esi, s_pid
    call u_str
    mov eax, SYS_GETPID
    int 0x80
    call u_num
    mov esi, s_colon
    call u_str
    popad
    ret

; u_str: append the NUL-terminated string at esi
u_str:
    pushad
    mov edi, [U_LEN]
.next:
    movzx eax, byte [esi]
    test eax, eax
    je .done
    mov [U_BUF + edi], al
    inc esi
    inc edi
    jmp .next
.done:
    mov [U_LEN], edi
    popad
    ret

; u_num: append eax in decimal
u_num:
    pushad
    mov edi, [U_LEN]
    mov ecx, 0
    mov ebx, 10
.divide:
    mov edx, 0
    div ebx
    push edx
    inc ecx
    test eax, eax
    jne .divide
.emit:
    pop eax
    add eax, '0'
    mov [U_BUF + edi], al
    inc edi
    loop .emit
    mov [U_LEN], edi
    popad
    ret

; u_hex: append eax as 0x%08x
u_hex:
    pushad
    mov edi, [U_LEN]
    mov byte [U_BUF + edi], '0'
    mov byte [U_BUF + edi + 1], 'x'
    add edi, 2
    mov edx, eax
    mov ecx, 8
.digit:
    rol edx, 4
    mov eax, edx
    and eax, 0xF
    movzx eax, byte [u_hexdigits + eax]
    mov [U_BUF + edi], al
    inc edi
    loop .digit
    mov [U_LEN], edi
    popad
    ret

; u_endl: end the line and write it
u_endl:
    pushad
    mov edi, [U_LEN]
    mov byte [U_BUF + edi], 10
    inc edi
    mov eax, SYS_WRITE
    mov ebx, U_BUF
    mov ecx, edi
    int 0x80
    mov dword [U_LEN], 0
    popad
    ret

s_pid:       db "pid ", 0
s_colon:     db ": ", 0
s_forking:   db "forking three children", 0
s_child:     db "wait: child ", 0
s_status:    db " exited with status ", 0
s_value:     db "my value is still ", 0
s_myvalue:   db "my value is now ", 0
s_primes:    db "; primes below ", 0
s_heap:      db "sbrk: heap 0x00420000-", 0
s_open:      db " (", 0
s_pages_sum: db " pages), sum ", 0
s_step:      db "step ", 0
s_of6:       db " of 6", 0
u_hexdigits: db "0123456789abcdef"
USER_PAGES   equ ($ - $$ + PAGE_SIZE - 1) / PAGE_SIZE
