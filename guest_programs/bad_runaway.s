; bad_runaway: a kernel that waits forever -- the cycle budget stops it
; emu-options: --max-cycles 2000000 --clock cycles
;
; The kernel's idle loop halts until the timer interrupt sets a flag.  But
; the kernel programmed the timer with a period of 0xFFFFFFFF cycles, some
; 4.3 billion: the loop will not end in any reasonable time.  The emulator
; stops the run when the cycle budget runs out (2,000,000 cycles, from the
; emu-options line above) and reports outcome "budget", exit status 4,
; with the console output so far.
;
; The emu-options line also picks the cycle clock, so that the timer counts
; simulated cycles while the CPU sleeps in hlt.  Halted, the CPU retires
; nothing: the run stops on the same instruction natively and under a VMM.
; (A busy loop would not: the budget also pays for the VMM's work, so under
; shadow paging it would have gone round fewer times when it is stopped.)
bits 32
%include "kernel.inc"

KSTACK_TOP  equ 0x80000

org 0x1000
_start:
    mov esp, KSTACK_TOP
    call idt_init
    mov esi, banner
    call puts
    mov eax, 0xFFFFFFFF             ; meant: a short period; got: 4.3e9 cycles
    out TIMER_PERIOD, eax
    sti
.idle:                              ; while (!ticked) hlt;
    hlt
    cmp dword [ticked], 0
    je .idle
    mov esi, msg_never
    call puts
    mov eax, 0
    call poweroff

trap:                               ; the timer interrupt
    mov dword [ticked], 1
    ret

banner:     db "bad_runaway: idle until a timer tick that is 4.3 billion cycles away", 10, 0
msg_never:  db "never printed", 10, 0
ticked:     dd 0

%include "lib.inc"
