; global_pages: global entries across CR3 loads, a 4 MiB page's A/D bits, and a
; backward rep movsb whose first store faults and resumes.
;
; What each line must be (Intel SDM vol. 3, 4.10.2.4 and 4.10.4.1; vol. 2 MOVS):
;  1 0x00001111  VA1 -> FRAME1, global: cached
;  2 0x00001111  its PTE moved to FRAME2; a CR3 load keeps the global entry
;  3 0x00002222  a CR4.PGE toggle flushes global entries too
;  4 0x00000007  written through the 4 MiB page at 8 MiB, read back there
;  5 0x00c000e3  that PDE: PS, A and D set by the write
;  6 trap 14 0x00000002 0x00405010 0x00000021  the first store's page is not
;    present (W, not P): no element moved, ecx still 0x21; the handler maps it
;  7 0x00000000  ecx at the end
;  8 0x00405fff  esi: 0x406020 - 0x21 (DF=1: down)
;  9 0x00404fef  edi: 0x405010 - 0x21, across into the page below
; 10 0x0000005a  the byte from 0x406010 landed at 0x405000
; 11 0x00000001  one fault in all
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
PGDIR       equ 0x100000
PGTAB       equ 0x101000
PGTAB2      equ 0x102000
VA1         equ 0x400000
FRAME1      equ 0x200000
FRAME2      equ 0x201000

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov edi, PGDIR
    mov ecx, PAGE_SIZE*3
    call memzero
    mov dword [PGDIR], PGTAB | PTE_P | PTE_W
    mov dword [PGDIR + 4], PGTAB2 | PTE_P | PTE_W
    mov dword [PGDIR + 8], 0xC00000 | PTE_P | PTE_W | PTE_PS   ; va 8M -> 12M
    mov ecx, 0
.map:
    mov eax, ecx
    shl eax, 12
    or eax, PTE_P | PTE_W
    mov [PGTAB + ecx*4], eax
    inc ecx
    cmp ecx, 1024
    jne .map
    mov dword [PGTAB2], FRAME1 | PTE_P | PTE_W | PTE_G
    mov dword [FRAME1], 0x1111
    mov dword [FRAME2], 0x2222
    mov eax, cr4
    or eax, CR4_PGE | CR4_PSE
    mov cr4, eax
    mov eax, PGDIR
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax
    mov eax, [VA1]                 ; global entry cached
    call show
    mov dword [PGTAB2], FRAME2 | PTE_P | PTE_W | PTE_G
    mov eax, cr3
    mov cr3, eax                    ; a CR3 load keeps global entries
    mov eax, [VA1]
    call show
    mov eax, cr4                    ; a CR4.PGE toggle drops them
    and eax, ~CR4_PGE
    mov cr4, eax
    or eax, CR4_PGE
    mov cr4, eax
    mov eax, [VA1]
    call show
    ; the 4 MiB page: A/D in the PDE
    mov dword [0x800000 + 0x1234], 7
    mov eax, [0x800000 + 0x1234]
    call show
    mov eax, [PGDIR + 8]
    call show
    ; rep movsb with DF=1 into a page not present: the handler maps it
    mov dword [PGTAB2 + 5*4], 0      ; va 0x405000 not present
    mov dword [PGTAB2 + 4*4], FRAME1 | PTE_P | PTE_W
    mov dword [PGTAB2 + 6*4], FRAME1 | PTE_P | PTE_W ; alias for source
    invlpg [0x404000]
    invlpg [0x405000]
    invlpg [0x406000]
    mov edi, 0x1000
.fill:
    mov byte [0x406000 + edi - 1], 0x41
    dec edi
    jnz .fill
    mov byte [0x406000 + 0x10], 0x5A
    std
    mov esi, 0x406000 + 0x20       ; 0x21 bytes down to 0x406000
    mov edi, 0x405000 + 0x10       ; 0x405010 down to 0x404FEF: crosses
    mov ecx, 0x21
    rep movsb
    cld
    mov eax, ecx
    call show
    mov eax, esi
    call show
    mov eax, edi
    call show
    movzx eax, byte [0x405000]     ; 0x5A came from src 0x406010 to 0x405000
    call show
    mov eax, [faults]
    call show
    ; ring 3 touches a supervisor page: #PF err 5, then 7
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
    mov al, ' '
    call putc
    mov eax, [ebx + TF_ERR]
    call print_hex
    mov al, ' '
    call putc
    mov eax, cr2
    call print_hex
    mov al, ' '
    call putc
    mov eax, [ebx + TF_ECX]
    call print_hex
    call newline
    inc dword [faults]
    mov dword [PGTAB2 + 5*4], FRAME2 | PTE_P | PTE_W
    ret

msg_trap: db "trap ", 0
align 4
faults: dd 0
%include "lib.inc"
