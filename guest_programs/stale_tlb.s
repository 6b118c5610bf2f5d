; stale_tlb: a PTE changed without invalidation keeps its stale TLB entry
;
; The kernel maps va 0x300000 to frame A and reads it (the TLB now caches
; the translation).  It then points the PTE at frame B WITHOUT INVLPG: the
; next read still reaches frame A through the stale TLB entry, as on real
; hardware.  INVLPG drops the entry and the read reaches B.  Then the PTE
; goes back to A: stale again until a CR3 load flushes the TLB.
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
PGDIR       equ 0x100000
PGTAB       equ 0x101000            ; identity 0-4 MiB
WINDOW      equ 0x300000            ; the va whose PTE we play with
FRAME_A     equ 0x380000
FRAME_B     equ 0x381000
PTE_WINDOW  equ PGTAB + (WINDOW >> 12) * 4

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov esi, banner
    call puts
    mov dword [FRAME_A], 0xAAAA     ; paging is off: these are physical
    mov dword [FRAME_B], 0xBBBB
    mov edi, PGDIR
    mov ecx, PAGE_SIZE
    call memzero
    mov dword [PGDIR], PGTAB | PTE_P | PTE_W
    mov ecx, 0
.map:
    mov eax, ecx
    shl eax, 12
    or eax, PTE_P | PTE_W
    mov [PGTAB + ecx*4], eax
    inc ecx
    cmp ecx, 1024
    jne .map
    mov dword [PTE_WINDOW], FRAME_A | PTE_P | PTE_W
    mov eax, PGDIR
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax

    mov esi, msg_first              ; 1. the TLB caches va -> A
    call show
    mov dword [PTE_WINDOW], FRAME_B | PTE_P | PTE_W
    mov esi, msg_stale              ; 2. PTE -> B, no INVLPG: still A
    call show
    invlpg [WINDOW]
    mov esi, msg_invlpg             ; 3. after INVLPG: B
    call show
    mov dword [PTE_WINDOW], FRAME_A | PTE_P | PTE_W
    mov esi, msg_stale2             ; 4. PTE -> A, no INVLPG: still B
    call show
    mov eax, cr3
    mov cr3, eax
    mov esi, msg_cr3                ; 5. after a CR3 load: A
    call show
    mov eax, 0
    call poweroff

; show: print the string at esi and the value read through WINDOW
show:
    call puts
    mov eax, [WINDOW]
    call print_hex
    call newline
    ret

trap:
    mov esi, msg_trap
    call puts
    mov eax, [eax + TF_VEC]
    call print_dec
    call newline
    mov eax, 99
    call poweroff

banner:     db "stale_tlb: what a PTE change without INVLPG does", 10, 0
msg_first:  db "PTE -> frame A, read:                 ", 0
msg_stale:  db "PTE -> frame B, no INVLPG, read:      ", 0
msg_invlpg: db "after INVLPG, read:                   ", 0
msg_stale2: db "PTE -> frame A, no INVLPG, read:      ", 0
msg_cr3:    db "after a CR3 load, read:               ", 0
msg_trap:   db "unexpected trap ", 0

%include "lib.inc"
