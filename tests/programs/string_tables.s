; string_tables: a live page table rewritten by string instructions -- under
; shadow paging each element a write to a shadowed (or out-of-sync) table.
;
; What each line must be (va 4 MiB + i*4K for i < 8, the low nibble of the
; dword 0 of the frame each maps, one hex digit per page):
;  1 0x01234567  the table filled in order (rep stosd, then a loop)
;  2 0x76543210  rep movsd of the reversed template over it, CR3 reloaded
;  3 0x00000001  rep stosd zeroes it: one access, one #PF
;  4 0x76543210  a backward rep movsd (DF=1) of the template
;  5 0x00204023  entry 3 as the walks left it: frame 4, A set
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
PGDIR       equ 0x100000
PGTAB       equ 0x101000
PT2         equ 0x102000            ; va 4-8 MiB, live
TEMPLATE    equ 0x103000            ; a table to copy from
F           equ 0x200000            ; 8 frames; dword 0 of frame i holds 0x100+i

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov edi, PGDIR
    mov ecx, PAGE_SIZE*4
    call memzero
    mov dword [PGDIR], PGTAB | PTE_P | PTE_W
    mov dword [PGDIR + 4], PT2 | PTE_P | PTE_W
    mov ecx, 0
.map:
    mov eax, ecx
    shl eax, 12
    or eax, PTE_P | PTE_W
    mov [PGTAB + ecx*4], eax
    inc ecx
    cmp ecx, 1024
    jne .map
    mov ecx, 0
.frames:
    mov eax, ecx
    shl eax, 12
    lea edx, [ecx + 0x100]
    mov [F + eax], edx
    inc ecx
    cmp ecx, 8
    jne .frames
    ; the template maps va 4 MiB + i*4K to frame 7-i, for i < 8
    mov ecx, 0
.tmpl:
    mov eax, 7
    sub eax, ecx
    shl eax, 12
    add eax, F
    or eax, PTE_P | PTE_W
    mov [TEMPLATE + ecx*4], eax
    inc ecx
    cmp ecx, 8
    jne .tmpl
    ; PT2: identity onto F first (i -> frame i), with rep stosd + a loop
    mov edi, PT2
    mov ecx, 1024
    xor eax, eax
    rep stosd
    mov ecx, 0
.id:
    mov eax, ecx
    shl eax, 12
    add eax, F
    or eax, PTE_P | PTE_W
    mov [PT2 + ecx*4], eax
    inc ecx
    cmp ecx, 8
    jne .id
    mov eax, PGDIR
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax
    call sum                        ; 1: frames 0..7 in order
    ; rep movsd the template over the live table, then flush
    mov esi, TEMPLATE
    mov edi, PT2
    mov ecx, 8
    rep movsd
    mov eax, cr3
    mov cr3, eax
    call sum                        ; 2: reversed
    ; rep stosd zeroes the live table: every access faults, counted
    mov edi, PT2
    mov ecx, 1024
    xor eax, eax
    rep stosd
    mov eax, cr3
    mov cr3, eax
    mov dword [faults], 0
    mov dword [resume], .after
    mov eax, [0x400000]
.after:
    mov eax, [faults]
    call print_hex
    call newline
    ; backwards rep movsd (DF=1) of the template, then the A bits it left
    std
    mov esi, TEMPLATE + 7*4
    mov edi, PT2 + 7*4
    mov ecx, 8
    rep movsd
    cld
    mov eax, cr3
    mov cr3, eax
    call sum                        ; 4: reversed again
    mov eax, [PT2 + 3*4]            ; 5: an entry the walks set A in
    call print_hex
    call newline
    mov eax, 0
    call poweroff

; sum: print the dword 0 of va 4 MiB + i*4K, for i < 8, as one number
sum:
    mov ecx, 0
    mov ebx, 0
.s:
    mov eax, ecx
    shl eax, 12
    mov eax, [0x400000 + eax]
    and eax, 0xF
    shl ebx, 4
    or ebx, eax
    inc ecx
    cmp ecx, 8
    jne .s
    mov eax, ebx
    call print_hex
    call newline
    ret

trap:
    mov ebx, eax
    inc dword [faults]
    mov eax, [resume]
    mov [ebx + TF_EIP], eax
    ret

align 4
resume: dd 0
faults: dd 0
%include "lib.inc"
