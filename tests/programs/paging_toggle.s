; paging_toggle: paging turned off and on again, and CR0.WP changed, with a
; global entry in the TLB.
;
; What each line must be (Intel SDM vol. 3, 4.10.4.1; docs/DECISIONS.md:
; "Changing CR0.PG, CR0.WP, CR4.PSE or CR4.PGE flushes the whole TLB"):
;  1 0x1111  VA1 -> F1, global: cached
;  2 0x1111  VA2 -> F1: cached
;  3 0x1111  both PTEs now say F2, no invlpg: VA1's stale entry serves
;  4 0x1111  a CR3 load keeps the global entry
;  5 0x2222  ... and drops VA2's
;  6 0x2222  paging off: F2 read at its physical address
;  7 0x1111  paging on again: every entry went, the global one too, so VA1
;            (its PTE back to F1 meanwhile) is walked
;  8 0x2222  its PTE says F2 again; CR0.WP cleared: a flush, so walked again
;  9 0x00201123  that PTE: F2, G, and the A the walk of line 8 set
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
PGDIR       equ 0x100000
PGTAB       equ 0x101000
PGTAB2      equ 0x102000
VA1         equ 0x400000
VA2         equ 0x401000
F1          equ 0x200000
F2          equ 0x201000

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov edi, PGDIR
    mov ecx, PAGE_SIZE*3
    call memzero
    mov dword [PGDIR], PGTAB | PTE_P | PTE_W
    mov dword [PGDIR + 4], PGTAB2 | PTE_P | PTE_W
    mov ecx, 0
.map:
    mov eax, ecx
    shl eax, 12
    or eax, PTE_P | PTE_W
    mov [PGTAB + ecx*4], eax
    inc ecx
    cmp ecx, 1024
    jne .map
    mov dword [F1], 0x1111
    mov dword [F2], 0x2222
    mov dword [PGTAB2], F1 | PTE_P | PTE_W | PTE_G        ; VA1, global
    mov dword [PGTAB2 + 4], F1 | PTE_P | PTE_W            ; VA2
    mov eax, cr4
    or eax, CR4_PGE
    mov cr4, eax
    mov eax, PGDIR
    mov cr3, eax
    call paging_on
    mov eax, [VA1]                  ; 1: 0x1111, cached (global)
    call show
    mov eax, [VA2]                  ; 2: 0x1111, cached
    call show
    mov dword [PGTAB2], F2 | PTE_P | PTE_W | PTE_G
    mov dword [PGTAB2 + 4], F2 | PTE_P | PTE_W
    mov eax, [VA1]                  ; 3: 0x1111, stale
    call show
    mov eax, cr3                    ; a CR3 load: VA2 goes, VA1 (global) stays
    mov cr3, eax
    mov eax, [VA1]                  ; 4: 0x1111
    call show
    mov eax, [VA2]                  ; 5: 0x2222
    call show
    mov dword [PGTAB2], F1 | PTE_P | PTE_W | PTE_G
    ; paging off and on: every entry goes, global ones too
    mov eax, cr0
    and eax, ~CR0_PG
    mov cr0, eax
    mov eax, [F2]                   ; 6: physical now: 0x2222
    call show
    call paging_on
    mov eax, [VA1]                  ; 7: 0x1111, walked again
    call show
    ; a CR0 write that changes WP flushes the TLB too (DECISIONS)
    mov dword [PGTAB2], F2 | PTE_P | PTE_W | PTE_G
    mov eax, cr0
    and eax, ~CR0_WP
    mov cr0, eax
    mov eax, [VA1]                  ; 8: 0x2222, walked again
    call show
    mov eax, [PGTAB2]               ; 9: the PTE: A set by the walk of line 8
    call show
    mov eax, 0
    call poweroff

paging_on:
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax
    ret

%include "show_trap.inc"
