; stale_itlb: code remapped under a cached instruction TLB entry -- a guest
; that breaks the TLB rules, and the one place here where a VMM shows.
;
; The PTE of CODEVA moves from FC1 (code returning 0xa) to FC2 (0xb) without
; invlpg.  Natively and under nested paging the ITLB's entry keeps running
; FC1's code until invlpg: 0xa 0xa 0xa 0xb.  Under shadow paging the data
; read before the third call takes a hidden #PF (the VMM dropped the spte
; when the guest rewrote the PTE), and a #PF drops the page's entries in
; both TLBs (Intel SDM vol. 3, 4.10.4.1) -- so the third call already runs
; FC2's: 0xa 0xa 0xb 0xb, as it would on a real VMM (docs/DECISIONS.md,
; "Stale translations").
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
PGDIR       equ 0x100000
PGTAB       equ 0x101000
PGTAB2      equ 0x102000
CODEVA      equ 0x400000
FC1         equ 0x200000
FC2         equ 0x201000

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
    mov esi, fa
    mov edi, FC1
    mov ecx, f_end - fa
    rep movsb
    mov esi, fb
    mov edi, FC2
    mov ecx, f_end - fa
    rep movsb
    mov dword [PGTAB2], FC1 | PTE_P | PTE_W
    mov eax, PGDIR
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax
    call CODEVA                     ; 1: A
    call show
    mov dword [PGTAB2], FC2 | PTE_P | PTE_W
    call CODEVA                     ; 2: A still (the ITLB's entry)
    call show
    mov eax, [CODEVA]               ; a data read walks: the DTLB gets FC2
    call CODEVA                     ; 3: A still
    call show
    invlpg [CODEVA]
    call CODEVA                     ; 4: B
    call show
    mov eax, 0
    call poweroff

show:
    call print_hex
    call newline
    ret

trap:
    mov ebx, eax
    mov esi, msg_trap
    call puts
    mov eax, [ebx + TF_VEC]
    call print_dec
    call newline
    mov eax, 9
    call poweroff

fa:
    mov eax, 0xA
    ret
f_end:
fb:
    mov eax, 0xB
    ret
msg_trap: db "trap ", 0
%include "lib.inc"
