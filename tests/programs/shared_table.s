; shared_table: one page table in two directories, written through a data
; mapping of its page; a table page that becomes data and a table again.
;
; What each line must be (Intel SDM vol. 3, 4.10.4):
;  1 0x1111  directory A: va 4 MiB -> F1 through the shared table
;  2 0x1111  directory B: the same table
;  3 0x2222  the PTE rewritten through the window, invlpg: F2
;  4 0x2222  A sees it too after its CR3 load
;  5 0x4444  A wrote F2; B reads it
;  6 0x00201063  the PTE through the window: F2, A and D
;  7 0x4444  the table is B's PDE 2 too: 8 MiB reads F2
;  8 0x5555  SPT2, out of every directory, zeroed and written as data
;  9 0x3333  ... and a table again: 8 MiB -> F3
; 10 0x2222  the PTE rewritten without invlpg: the TLB's entry still gives F2
; 11 0x1111  after a CR3 load: F1
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
PD_A        equ 0x100000
PD_B        equ 0x101000
KPT         equ 0x102000            ; identity 0-4 MiB, in both
SPT         equ 0x103000            ; shared: va 4-8 MiB in both directories
SPT2        equ 0x104000            ; a second table for B's 8-12 MiB
F1          equ 0x200000
F2          equ 0x201000
F3          equ 0x202000
VA          equ 0x400000            ; through SPT
VB          equ 0x800000            ; through SPT2, in B only
SPTWIN      equ 0x3FF000            ; SPT's page, mapped as data (KPT's last entry)

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov edi, PD_A
    mov ecx, PAGE_SIZE*5
    call memzero
    mov ecx, 0
.map:
    mov eax, ecx
    shl eax, 12
    or eax, PTE_P | PTE_W
    mov [KPT + ecx*4], eax
    inc ecx
    cmp ecx, 1023
    jne .map
    mov dword [KPT + 1023*4], SPT | PTE_P | PTE_W   ; the window on SPT
    mov dword [PD_A], KPT | PTE_P | PTE_W
    mov dword [PD_B], KPT | PTE_P | PTE_W
    mov dword [PD_A + 4], SPT | PTE_P | PTE_W
    mov dword [PD_B + 4], SPT | PTE_P | PTE_W
    mov dword [PD_B + 8], SPT2 | PTE_P | PTE_W
    mov dword [SPT], F1 | PTE_P | PTE_W
    mov dword [F1], 0x1111
    mov dword [F2], 0x2222
    mov dword [F3], 0x3333
    mov eax, PD_A
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax
    mov eax, [VA]                   ; 1: A sees F1
    call show
    mov eax, PD_B
    mov cr3, eax
    mov eax, [VA]                   ; 2: B sees F1 (the same table)
    call show
    mov dword [SPTWIN], F2 | PTE_P | PTE_W   ; the PTE, through the window
    invlpg [VA]
    mov eax, [VA]                   ; 3: B sees F2
    call show
    mov eax, PD_A
    mov cr3, eax
    mov eax, [VA]                   ; 4: so does A
    call show
    mov dword [VA + 4], 0x4444      ; 5: A writes F2 through it
    mov eax, PD_B
    mov cr3, eax
    mov eax, [VA + 4]
    call show
    mov eax, [SPTWIN]               ; 6: the PTE's A and D, read through the window
    call show
    ; SPT becomes B's second table too (PDE 2 of B -> SPT): VB reads F2
    mov dword [PD_B + 8], SPT | PTE_P | PTE_W
    mov eax, cr3
    mov cr3, eax
    mov eax, [VB + 4]               ; 7: 0x4444
    call show
    ; SPT2, no table any more, is zeroed and used as data through identity
    mov edi, SPT2
    mov ecx, PAGE_SIZE
    call memzero
    mov dword [SPT2 + 8], 0x5555
    mov eax, [SPT2 + 8]             ; 8
    call show
    ; ... and is a table again, for VB: its entry 0 -> F3
    mov dword [SPT2], F3 | PTE_P | PTE_W
    mov dword [PD_B + 8], SPT2 | PTE_P | PTE_W
    mov eax, cr3
    mov cr3, eax
    mov eax, [VB]                   ; 9: F3
    call show
    ; the window writes the shared table again without invlpg: B's TLB
    ; holds VA -> F2, so the read is still F2; after a CR3 load, F1
    mov eax, [VA]                   ; (cached: F2)
    mov dword [SPTWIN], F1 | PTE_P | PTE_W
    mov eax, [VA]                   ; 10: 0x2222 (stale)
    call show
    mov eax, PD_A
    mov cr3, eax
    mov eax, [VA]                   ; 11: 0x1111
    call show
    mov eax, 0
    call poweroff

%include "show_trap.inc"
