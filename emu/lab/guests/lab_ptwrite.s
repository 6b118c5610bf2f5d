; lab_ptwrite: the guest writes its live page tables
;
; va 0x40000000 is mapped to frame A, read; its PTE is rewritten to frame
; B (with INVLPG), read; made not present (INVLPG), read -- the #PF
; handler maps it to frame C and the read restarts; made read-only, written
; -- the handler makes it writable again.  A new PTE is filled in and used
; at once (a not-present entry is never cached).  Last, 16 PTEs are
; rewritten in a loop, CR3 is reloaded, and the 16 pages are summed.  A
; shadow that misses one of these writes reads the wrong frame.
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000
USTACK_TOP  equ 0x90000
PGDIR       equ 0x100000
KPT         equ 0x101000
DATA_PT     equ 0x102000
X           equ 0x40000000
Y           equ 0x40001000
MANY        equ 0x40010000          ; 16 pages
FRAME_A     equ 0x300000
FRAME_B     equ 0x301000
FRAME_C     equ 0x302000
FRAMES      equ 0x310000            ; 32 frames: word i holds 0x100 + i

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov esi, banner
    call puts
    mov dword [FRAME_A], 0xAAAA
    mov dword [FRAME_B], 0xBBBB
    mov dword [FRAME_C], 0xCCCC
    mov ecx, 0
.fill:
    mov eax, ecx
    shl eax, 12
    lea edx, [ecx + 0x100]
    mov [FRAMES + eax], edx
    inc ecx
    cmp ecx, 32
    jne .fill
    mov edi, DATA_PT
    mov ecx, PAGE_SIZE
    call memzero
    call map_kernel
    mov dword [PGDIR + (X >> 22) * 4], DATA_PT | PTE_P | PTE_W
    mov dword [DATA_PT], FRAME_A | PTE_P | PTE_W
    mov ecx, 0                      ; MANY -> frames 0..15
.many:
    mov eax, ecx
    shl eax, 12
    add eax, FRAMES | PTE_P | PTE_W
    mov [DATA_PT + 16*4 + ecx*4], eax
    inc ecx
    cmp ecx, 16
    jne .many
    call paging_on
    mov eax, [X]                    ; frame A
    call print_line
    mov dword [DATA_PT], FRAME_B | PTE_P | PTE_W
    invlpg [X]
    mov eax, [X]                    ; frame B
    call print_line
    mov dword [DATA_PT], 0
    invlpg [X]
    mov dword [pf_action], 1
    mov eax, [X]                    ; #PF: the handler maps frame C
    call print_line
    and dword [DATA_PT], ~PTE_W
    invlpg [X]
    mov dword [pf_action], 2
    mov dword [X + 4], 0x1234       ; #PF: the handler makes it writable
    mov eax, [X + 4]
    call print_line
    mov dword [DATA_PT + 4], FRAME_A | PTE_P | PTE_W
    mov eax, [Y]                    ; a new PTE, used at once
    call print_line
    call sum_many                   ; 0x100..0x10f
    call print_line
    mov ecx, 0                      ; MANY -> frames 16..31
.remap:
    mov eax, ecx
    add eax, 16
    shl eax, 12
    add eax, FRAMES | PTE_P | PTE_W
    mov [DATA_PT + 16*4 + ecx*4], eax
    inc ecx
    cmp ecx, 16
    jne .remap
    mov eax, cr3
    mov cr3, eax
    call sum_many                   ; 0x110..0x11f
    call print_line
    mov eax, [faults]
    call poweroff

sum_many:
    mov eax, 0
    mov ecx, 0
.next:
    mov edx, ecx
    shl edx, 12
    add eax, [MANY + edx]
    inc ecx
    cmp ecx, 16
    jne .next
    ret

trap:
    mov ebx, eax
    cmp dword [ebx + TF_VEC], T_PF
    jne .other
    inc dword [faults]
    mov esi, msg_pfc
    call puts
    mov eax, [ebx + TF_ERR]
    call print_line
    cmp dword [pf_action], 1
    jne .wr
    mov dword [DATA_PT], FRAME_C | PTE_P | PTE_W
    ret
.wr:
    or dword [DATA_PT], PTE_W
    ret
.other:
    mov esi, msg_trap
    call puts
    mov eax, [ebx + TF_VEC]
    call print_line
    mov eax, 99
    call poweroff

banner:    db "lab_ptwrite: page-table writes while paging is on", 10, 0
msg_pfc:   db "#PF, error code ", 0
msg_trap:  db "unexpected trap ", 0
pf_action: dd 0
faults:    dd 0

%include "lab.inc"
%include "lib.inc"
