; alias_code: code rewritten through another mapping of its page (CODEVA read-only,
; ALIASVA writable, one frame), then called again: the translated code of the
; page must go, whichever virtual page wrote it.
;
; What each line must be: 0x111 (variant A), 0x222 (B), 0x111, 0x222, then
; A with the byte after its opcode patched to 0x77 through the alias: that
; byte is the register field of the mov (edi, 7, where eax was), so eax is
; still 0x222 from the last call and the add makes 0x322.
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
PGDIR       equ 0x100000
PGTAB       equ 0x101000
PGTAB2      equ 0x102000
FRAME       equ 0x200000
CODEVA      equ 0x400000
ALIASVA     equ 0x401000

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
    mov dword [PGTAB2], FRAME | PTE_P
    mov dword [PGTAB2 + 4], FRAME | PTE_P | PTE_W
    ; copy variant A into the frame (paging off)
    mov esi, fa
    mov edi, FRAME
    mov ecx, fa_end - fa
    rep movsb
    mov eax, PGDIR
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax
    mov ebx, 0
.again:
    call CODEVA
    call print_hex
    call newline
    ; rewrite it through the alias: variant B, then A, alternately
    mov esi, fb
    test ebx, 1
    jz .b
    mov esi, fa
.b:
    mov edi, ALIASVA
    mov ecx, fa_end - fa
    rep movsb
    inc ebx
    cmp ebx, 4
    jne .again
    ; one byte at a time: patch the immediate of the first mov in place
    mov byte [ALIASVA + imm_off], 0x77
    call CODEVA
    call print_hex
    call newline
    mov eax, 0
    call poweroff

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
    mov eax, 0x11
    add eax, 0x100
    ret
fa_end:
fb:
    mov eax, 0x22
    add eax, 0x200
    ret
imm_off equ 1
msg_trap: db "trap ", 0
%include "lib.inc"
