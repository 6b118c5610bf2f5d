; lab_touch: hidden faults only -- 32 data pages, written and read back
;
; The kernel maps 32 pages at va 0x40000000 to frames from 0x300000 and
; the same frames again, read-only, at va 0x50000000; it writes a pattern
; through the first mapping, reads it back through both and prints the
; sums.  The guest's tables allow every access: each fault is hidden.
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
USTACK_TOP  equ 0x90000
PGDIR       equ 0x100000
KPT         equ 0x101000
DATA_PT     equ 0x102000
ALIAS_PT    equ 0x103000
DATA_VA     equ 0x40000000
ALIAS_VA    equ 0x50000000
FRAMES      equ 0x300000
NPAGES      equ 32

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov esi, banner
    call puts
    mov edi, DATA_PT
    mov ecx, 2 * PAGE_SIZE
    call memzero
    call map_kernel
    mov dword [PGDIR + (DATA_VA >> 22) * 4], DATA_PT | PTE_P | PTE_W
    mov dword [PGDIR + (ALIAS_VA >> 22) * 4], ALIAS_PT | PTE_P | PTE_W
    mov ecx, 0
.map:
    mov eax, ecx
    shl eax, 12
    add eax, FRAMES
    or eax, PTE_P | PTE_W
    mov [DATA_PT + ecx*4], eax
    and eax, ~PTE_W
    mov [ALIAS_PT + ecx*4], eax
    inc ecx
    cmp ecx, NPAGES
    jne .map
    call paging_on
    mov ecx, 0                      ; write i*7+1 at offset (i*52) & 0xffc of page i
.write:
    mov edx, ecx
    shl edx, 12
    mov eax, ecx
    imul eax, 52
    and eax, 0xFFC
    add edx, eax
    lea eax, [ecx*8]
    sub eax, ecx
    inc eax
    mov [DATA_VA + edx], eax
    inc ecx
    cmp ecx, NPAGES
    jne .write
    mov esi, DATA_VA
    call sum
    mov esi, msg_data
    call puts
    call print_line
    mov esi, ALIAS_VA
    call sum
    mov esi, msg_alias
    call puts
    call print_line
    mov eax, 0
    call poweroff

; sum(esi = base): eax = the sum of the pattern's words read back
sum:
    push ecx
    push edx
    push ebx
    mov ebx, 0
    mov ecx, 0
.next:
    mov edx, ecx
    shl edx, 12
    mov eax, ecx
    imul eax, 52
    and eax, 0xFFC
    add edx, eax
    add ebx, [esi + edx]
    inc ecx
    cmp ecx, NPAGES
    jne .next
    mov eax, ebx
    pop ebx
    pop edx
    pop ecx
    ret

trap:
    mov esi, msg_trap
    call puts
    mov eax, [eax + TF_VEC]
    call print_line
    mov eax, 99
    call poweroff

banner:    db "lab_touch: 32 pages, two mappings, hidden faults only", 10, 0
msg_data:  db "sum through the data mapping:  ", 0
msg_alias: db "sum through the alias mapping: ", 0
msg_trap:  db "unexpected trap ", 0

%include "lab.inc"
%include "lib.inc"
