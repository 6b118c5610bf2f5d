; stepper: a long demand-paging run for the stepper benchmark
;
; The kernel maps 0-4 MiB (itself) and leaves a 64-page window at 4 MiB
; unmapped.  Each round touches the 64 pages in turn, with about 800
; instructions of work after each touch, then unmaps them all (PTE := 0,
; INVLPG).  Every first touch is a #PF the kernel's handler answers by
; mapping a frame: natively one fault; under shadow paging a true fault, a
; tracing fault (the handler writes a PTE) and a hidden fault.  A round is
; about 60,000 instructions; ROUNDS of them make a run of about 3 million.
bits 32
%include "kernel.inc"
KSTACK_TOP  equ 0x80000
PGDIR       equ 0x100000
KPGTAB      equ 0x101000            ; identity 0-4 MiB, supervisor
WPGTAB      equ 0x102000            ; the window's page table
WINDOW      equ 0x400000
PAGES       equ 64
FRAMES      equ 0x200000            ; frame of window page i: FRAMES + i * 4096
ROUNDS      equ 50

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov ecx, 0
.kmap:
    mov eax, ecx
    shl eax, 12
    or eax, PTE_P | PTE_W
    mov [KPGTAB + ecx*4], eax
    mov dword [WPGTAB + ecx*4], 0
    mov dword [PGDIR + ecx*4], 0
    inc ecx
    cmp ecx, 1024
    jne .kmap
    mov dword [PGDIR], KPGTAB | PTE_P | PTE_W
    mov dword [PGDIR + 4], WPGTAB | PTE_P | PTE_W
    mov eax, PGDIR
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax
    mov ebx, 0                      ; round
round:
    mov esi, 0
.page:
    mov edi, esi
    shl edi, 12
    add edi, WINDOW
    mov [edi], ebx                  ; the first touch faults
    mov ecx, 200
.work:
    add eax, [edi]
    xor eax, ecx
    dec ecx
    jne .work
    inc esi
    cmp esi, PAGES
    jne .page
    mov esi, 0
.unmap:
    mov dword [WPGTAB + esi*4], 0
    mov edi, esi
    shl edi, 12
    add edi, WINDOW
    invlpg [edi]
    inc esi
    cmp esi, PAGES
    jne .unmap
    inc ebx
    cmp ebx, ROUNDS
    jne round
    and eax, 0x7F
    out POWER, eax

; trap(eax = trap frame): map the faulting window page, restart
trap:
    mov edx, cr2
    mov ecx, edx
    shr ecx, 12
    and ecx, 0x3FF
    mov eax, ecx
    shl eax, 12
    add eax, FRAMES | PTE_P | PTE_W
    mov [WPGTAB + ecx*4], eax
    ret

%include "lib.inc"
