; many_spaces: a hundred address spaces, each its own page directory and
; page table mapping the same va to its own page, visited in turn three
; times.  Under shadow paging with a cache policy every visited directory
; keeps a shadow, and every shadowed guest table stays in memory: on a
; 1 MiB machine (256 pages) they cannot all stay, and the VMM must give
; shadow pages back when nothing else can go (docs/design.md).
;
; What each line must be:
;  1 0x00003a66  pass 1 wrote 3i+1 in space i and read it back:
;                sum over i < 100 of 3i+1 = 3*4950 + 100 = 14,950
;  2 0x00003a66  pass 2 reads the same (and adds 1 to each)
;  3 0x00003aca  pass 3 reads 3i+2: 14,950 + 100 = 15,050
;  4 0x00000064  and counts the spaces whose page holds it: 100
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
KPT         equ 0x100000            ; the kernel's page table: 0-4 MiB, va = pa
SPACES      equ 0x200000            ; space i: its directory, then its page table
DATA        equ 0x300000            ; space i's page
NSPACES     equ 100
VA          equ 0x400000            ; in every space: its own page

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov edi, KPT
    mov ecx, PAGE_SIZE
    call memzero
    mov ecx, 0
.kmap:
    mov eax, ecx
    shl eax, 12
    or eax, PTE_P | PTE_W
    mov [KPT + ecx*4], eax
    inc ecx
    cmp ecx, 1024
    jne .kmap
    mov ebx, 0                      ; each space: directory and table
.space:
    mov edi, ebx
    shl edi, 13
    add edi, SPACES
    mov ecx, PAGE_SIZE*2
    call memzero
    mov edi, ebx
    shl edi, 13
    add edi, SPACES                 ; edi: the directory, edi + 4 KiB its table
    mov dword [edi], KPT | PTE_P | PTE_W
    lea eax, [edi + PAGE_SIZE + PTE_P + PTE_W]
    mov [edi + 4], eax              ; pde 1 (va 4 MiB): its table
    mov eax, ebx
    shl eax, 12
    add eax, DATA + PTE_P + PTE_W
    mov [edi + PAGE_SIZE], eax      ; pte 0: its page
    inc ebx
    cmp ebx, NSPACES
    jne .space
    mov eax, SPACES
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax
    ; pass 1: write 3i+1 through VA in space i, read it back, sum
    mov ebx, 0
    mov edx, 0
.pass1:
    call enter_space
    mov eax, ebx
    imul eax, eax, 3
    inc eax
    mov [VA], eax
    add edx, [VA]
    inc ebx
    cmp ebx, NSPACES
    jne .pass1
    mov eax, edx
    call show                       ; 1
    ; pass 2: read each, add 1
    mov ebx, 0
    mov edx, 0
.pass2:
    call enter_space
    mov eax, [VA]
    add edx, eax
    inc eax
    mov [VA], eax
    inc ebx
    cmp ebx, NSPACES
    jne .pass2
    mov eax, edx
    call show                       ; 2
    ; pass 3: read each; count those that hold 3i+2
    mov ebx, 0
    mov edx, 0
    mov esi, 0
.pass3:
    call enter_space
    mov eax, [VA]
    add edx, eax
    mov ecx, ebx
    imul ecx, ecx, 3
    add ecx, 2
    cmp eax, ecx
    jne .next
    inc esi
.next:
    inc ebx
    cmp ebx, NSPACES
    jne .pass3
    mov eax, edx
    call show                       ; 3
    mov eax, esi
    call show                       ; 4
    mov eax, 0
    call poweroff

; enter_space: CR3 := space ebx's directory
enter_space:
    mov eax, ebx
    shl eax, 13
    add eax, SPACES
    mov cr3, eax
    ret

%include "show_trap.inc"
