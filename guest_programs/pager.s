; pager: a kernel with 8 frames for 24 pages -- CLOCK replacement, a ramdisk
;
; A user process touches 24 pages of data, but the kernel gives it only
; NFRAMES = 8 frames.  On a page fault the kernel takes a free frame, or
; picks a victim with the CLOCK algorithm: the hand walks the frames; a
; page whose PTE has A=1 (the hardware set it: the page was used since the
; hand last passed) gets a second chance -- the kernel clears A and moves
; on.  The first page with A=0 is evicted.  If its D bit is set the
; hardware saw a write: the page goes to its slot in a "ramdisk" (a region
; of guest RAM); a clean page is simply dropped (the ramdisk still has it,
; or it never was written).  Its PTE becomes not present, marked PTE_ONDISK
; when the data is in the ramdisk.  The next fault on it reads it back (a
; page-in), or zero-fills it if it never was written.
;
; Every PTE the sweep changed may still be cached in the TLB: the kernel
; reloads CR3 once before returning (one flush for the whole sweep instead
; of an INVLPG per page).  Without it the TLB would keep answering for the
; pages whose A bit was cleared, the hardware would not set A again, and
; CLOCK would evict the pages in use.
;
; The process first writes every page once, then makes ROUNDS passes over
; the 20 "cold" pages, reading the 4 "hot" pages before each: the hot
; pages keep their A bit and stay resident, the cold ones cycle through the
; other frames.  A checksum at the end proves that no write was lost.
;
; Under shadow paging the guest's A and D bits stay exact: the VMM sets A
; when it fills an spte and maps clean pages read-only until the first
; write (a DIRTY fault).  Every PTE the kernel writes is a TRACING fault.
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
KPGTAB      equ 0x100000            ; the kernel's page table: identity 0-4 MiB, supervisor
PGDIR       equ 0x101000            ; the page directory
UPT         equ 0x102000            ; the user page table: va 4-8 MiB
USTACK      equ 0x103000            ; the user stack's frame (pinned: never evicted)
POOL        equ 0x200000            ; the frames the pager manages
NFRAMES     equ 8
RAMDISK     equ 0x300000            ; one 4 KiB slot per data page
USER_BASE   equ 0x400000            ; user code, read-only, at its own address
DATA        equ 0x500000            ; the process's data: NPAGES pages
NPAGES      equ 24
HOT         equ 4                   ; pages 0-3 are used all the time
ROUNDS      equ 2
STACK_TOP   equ 0x800000
PTE_ONDISK  equ PTE_COW             ; an AVL bit: the ramdisk holds the page (valid while D=0)
SYS_STATS   equ 11                  ; this kernel's own: print the counters of a phase

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov dword [idt + T_SYSCALL*8 + 4], GATE_USER_INT
    mov esi, banner
    call puts
    mov edi, PGDIR                  ; the page directory and the user page table
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
    mov dword [UPT + 1023*4], USTACK | PTE_P | PTE_W | PTE_U
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
    je panic
    cmp eax, T_PF
    je page_fault
panic:
    mov esi, msg_panic
    call puts
    call print_dec
    mov esi, msg_at
    call puts
    mov eax, [ebx + TF_EIP]
    call print_hex
    mov esi, msg_cr2
    call puts
    mov eax, cr2
    call print_hex
    call newline
    mov eax, 99
    call poweroff

; pte_of: esi = the address of the user PTE of the va in edx
pte_of:
    mov esi, edx
    shr esi, 12
    and esi, 0x3FF
    lea esi, [UPT + esi*4]
    ret

; page_fault: bring the page in, evicting another when no frame is free
page_fault:
    mov edx, cr2
    test dword [ebx + TF_ERR], PF_P
    jne panic                       ; a protection fault: a bug here
    cmp edx, DATA
    jb panic
    cmp edx, DATA + NPAGES * PAGE_SIZE
    jae panic
    and edx, ~0xFFF
    inc dword [faults]
    cmp edx, DATA + HOT * PAGE_SIZE
    jae .cold
    inc dword [hot_faults]
.cold:
    call get_frame                  ; eax = the frame, edi = its index
    mov [frame_va + edi*4], edx
    call pte_of
    test dword [esi], PTE_ONDISK
    je .zero
    push esi                        ; page-in: read its slot of the ramdisk
    mov esi, edx
    sub esi, DATA
    add esi, RAMDISK
    mov edi, eax
    mov ecx, PAGE_SIZE
    call memcopy
    pop esi
    inc dword [page_ins]
    or eax, PTE_ONDISK              ; clean, it can be dropped: the ramdisk has it
    jmp .map
.zero:
    mov edi, eax                    ; never written: a page of zeros
    mov ecx, PAGE_SIZE
    call memzero
    inc dword [zero_fills]
.map:
    or eax, PTE_P | PTE_W | PTE_U   ; A and D clear: the hardware will set them
    mov [esi], eax                  ; not present -> present: no INVLPG needed
    ret                             ; restart the faulting instruction

; get_frame: eax = a frame for a page-in, edi = its index in frame_va
get_frame:
    push ecx
    push edx
    push esi
    mov edi, 0                      ; a free frame?
.free:
    cmp dword [frame_va + edi*4], 0
    je .have
    inc edi
    cmp edi, NFRAMES
    jne .free
.clock:                             ; CLOCK: the hand looks for A=0
    mov edi, [hand]
    inc dword [hand]
    cmp dword [hand], NFRAMES
    jne .hand_ok
    mov dword [hand], 0
.hand_ok:
    mov edx, [frame_va + edi*4]     ; edx = the va of the page in that frame
    call pte_of
    mov eax, [esi]
    test eax, PTE_A
    je .victim
    and eax, ~PTE_A                 ; a second chance: clear A (the CR3 reload
    mov [esi], eax                  ; below makes the next use walk the table
    inc dword [a_cleared]           ; and set A again)
    jmp .clock
.victim:
    mov ecx, eax
    and ecx, PTE_ONDISK             ; clean: the ramdisk copy (if any) is good
    test eax, PTE_D
    je .unmap
    push esi                        ; dirty: write it to its slot
    push edi
    mov esi, eax
    and esi, ~0xFFF
    mov edi, edx
    sub edi, DATA
    add edi, RAMDISK
    mov ecx, PAGE_SIZE
    call memcopy
    pop edi
    pop esi
    mov ecx, PTE_ONDISK
    inc dword [page_outs]
    jmp .unmapped
.unmap:
    inc dword [clean_drops]
.unmapped:
    mov [esi], ecx                  ; present -> not present
    mov dword [frame_va + edi*4], 0
    ; Flush the TLB entries of every PTE changed above.  (An INVLPG each
    ; would do too, but the emulator's oos shadow policies mishandle two
    ; INVLPGs in one page table: see guest_programs/README.md.)
    mov eax, cr3
    mov cr3, eax
.have:
    mov eax, edi
    shl eax, 12
    add eax, POOL
    pop esi
    pop edx
    pop ecx
    ret

; --- system calls ---------------------------------------------------------------
syscall:
    mov eax, [ebx + TF_EAX]
    cmp eax, SYS_WRITE
    je sys_write
    cmp eax, SYS_STATS
    je sys_stats
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

; stats(ebx = the string naming the phase): the counters since the last call
sys_stats:
    mov esi, msg_pager
    call puts
    mov esi, [ebx + TF_EBX]
    call puts
    mov eax, [faults]
    sub eax, [last + 0]
    call print_dec
    mov esi, msg_faults
    call puts
    mov eax, [hot_faults]
    sub eax, [last + 4]
    call print_dec
    mov esi, msg_hot
    call puts
    mov eax, [page_outs]
    sub eax, [last + 8]
    call print_dec
    mov esi, msg_outs
    call puts
    mov eax, [page_ins]
    sub eax, [last + 12]
    call print_dec
    mov esi, msg_ins
    call puts
    mov esi, faults                 ; remember where this phase ended
    mov edi, last
    mov ecx, 16
    call memcopy
    ret

sys_exit:
    mov esi, msg_total
    call puts
    mov eax, [faults]
    call print_dec
    mov esi, msg_t_faults
    call puts
    mov eax, [zero_fills]
    call print_dec
    mov esi, msg_t_zero
    call puts
    mov eax, [page_ins]
    call print_dec
    mov esi, msg_t_ins
    call puts
    mov eax, [page_outs]
    call print_dec
    mov esi, msg_t_outs
    call puts
    mov eax, [clean_drops]
    call print_dec
    mov esi, msg_t_clean
    call puts
    mov eax, [a_cleared]
    call print_dec
    mov esi, msg_t_a
    call puts
    mov eax, [ebx + TF_EBX]
    call poweroff

banner:       db "pager: 24 pages in 8 frames, CLOCK replacement with the A bit, a ramdisk", 10, 0
msg_panic:    db "kernel: panic: trap ", 0
msg_at:       db " at ", 0
msg_cr2:      db ", cr2 ", 0
msg_pager:    db "  pager: ", 0
msg_faults:   db " faults (", 0
msg_hot:      db " on hot pages): ", 0
msg_outs:     db " page-outs, ", 0
msg_ins:      db " page-ins", 10, 0
msg_total:    db "pager: ", 0
msg_t_faults: db " faults: ", 0
msg_t_zero:   db " zero-fills, ", 0
msg_t_ins:    db " page-ins,", 10, "       ", 0
msg_t_outs:   db " page-outs of dirty pages, ", 0
msg_t_clean:  db " clean pages dropped, ", 0
msg_t_a:      db " A bits cleared", 10, 0

%include "lib.inc"

; the kernel's variables, in a page of their own (not in a page of code)
align 4096
faults:       dd 0                  ; these four: in this order (sys_stats)
hot_faults:   dd 0
page_outs:    dd 0
page_ins:     dd 0
last:         dd 0, 0, 0, 0         ; their values at the end of the last phase
zero_fills:   dd 0
clean_drops:  dd 0
a_cleared:    dd 0
hand:         dd 0                  ; CLOCK's hand: an index into frame_va
frame_va:     times NFRAMES dd 0    ; the va of the page in each frame (0: free)

; --- the user process (ring 3) ------------------------------------------------------
section user start=USER_BASE
user_main:
    mov ecx, 0                      ; write every page once: page p holds p*p+1
.init:
    mov eax, ecx
    imul eax, ecx
    inc eax
    mov edx, ecx
    shl edx, 12
    mov [DATA + edx], eax
    inc ecx
    cmp ecx, NPAGES
    jne .init
    mov eax, SYS_STATS
    mov ebx, s_first
    int 0x80
    mov ebp, 0                      ; ROUNDS passes over the cold pages
.round:
    mov ecx, HOT
.cold:
    mov eax, [DATA]                 ; the hot pages, used all the time
    add eax, [DATA + PAGE_SIZE]
    add eax, [DATA + 2 * PAGE_SIZE]
    add eax, [DATA + 3 * PAGE_SIZE]
    mov edx, ecx                    ; one cold page: count a visit in it
    shl edx, 12
    inc dword [DATA + edx + 4]
    inc ecx
    cmp ecx, NPAGES
    jne .cold
    mov eax, SYS_STATS
    mov ebx, [s_rounds + ebp*4]
    int 0x80
    inc ebp
    cmp ebp, ROUNDS
    jne .round
    mov ecx, 0                      ; the checksum: every page's two dwords
    mov ebx, 0
.sum:
    mov edx, ecx
    shl edx, 12
    add ebx, [DATA + edx]
    add ebx, [DATA + edx + 4]
    inc ecx
    cmp ecx, NPAGES
    jne .sum
    mov esi, s_checksum
    call u_puts
    mov eax, ebx
    call u_putnum
    mov esi, s_expected
    call u_puts
    mov eax, CHECKSUM
    call u_putnum
    mov esi, s_close
    call u_puts
    mov eax, SYS_EXIT
    cmp ebx, CHECKSUM
    mov ebx, 0
    je .exit
    mov ebx, 1
.exit:
    int 0x80

; sum of p*p+1 for p < 24, plus one visit per cold page per round
CHECKSUM    equ (NPAGES - 1) * NPAGES * (2 * NPAGES - 1) / 6 + NPAGES + ROUNDS * (NPAGES - HOT)

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

s_first:    db "first pass, 24 pages written: ", 0
s_round1:   db "round 1 over the cold pages:  ", 0
s_round2:   db "round 2 over the cold pages:  ", 0
s_rounds:   dd s_round1, s_round2
s_checksum: db "user: checksum of all 24 pages ", 0
s_expected: db " (expected ", 0
s_close:    db ")", 10, 0
USER_PAGES  equ ($ - $$ + PAGE_SIZE - 1) / PAGE_SIZE
