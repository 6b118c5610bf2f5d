"""What the fuzzer feeds the emulator (``fuzz.py``): random token soup,
mutated programs, absurd command lines, kernels that run garbage."""

from __future__ import annotations

import os
import random

TOKENS = ("mov", "add", "jmp", "call", "ret", "int", "iret", "push", "pop", "lea", "rep",
          "movsd", "eax", "esp", "cr3", "al", "[", "]", "+", "*", "-", ",", ":", "$", "$$",
          "dword", "byte", "org", "align", "times", "db", "dd", "equ", "%include", '"',
          "'", "0x", "0x1000", "4096", "-1", "1 << 40", "(", ")", "~", ".", ".x", "label",
          "; c", "\t", "\\", "é", "\u202e", "\U0001F600", "9" * 40)
GARBAGE = ("\0", "\x00\xff", "\ufffd", "\u200b", "\x1b[2J", "%include", "times 99999999",
           "org -1", "org 0xffffffff", "dd 1 /", "db '", "[[[[", "]" * 9, "\r", "\x7f")


def random_source(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(1, 30)):
        lines.append(" ".join(rng.choice(TOKENS) for _ in range(rng.randint(0, 8))))
    return "\n".join(lines) + rng.choice(("\n", ""))


def mutate(text: str, rng: random.Random) -> bytes:
    """A few random edits of ``text``; the result may not be UTF-8."""
    lines = text.splitlines(keepends=True) or ["\n"]
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        i = rng.randrange(len(lines))
        if op == 0 and len(lines) > 1:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[i])
        elif op == 2:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 3 and lines[i]:
            k = rng.randrange(len(lines[i]))
            lines[i] = lines[i][:k] + chr(rng.randrange(32, 0x3000)) + lines[i][k + 1:]
        elif op == 4:
            lines.insert(i, rng.choice(GARBAGE) + "\n")
        elif op == 5:
            del lines[i:]
            lines.append("")
        else:
            lines.insert(i, random_source(rng) + "\n")
    data = "".join(lines).encode("utf-8", "surrogatepass")
    if rng.random() < 0.1:
        k = rng.randrange(len(data) + 1)
        data = data[:k] + bytes([rng.randrange(0x80, 0x100)]) + data[k:]
    return data


BAD_NUMBERS = ("-1", "0", "-0", "10" + "0" * 29, "1e9", "nan", "NaN", "inf", "-inf", "",
               " ", "0x", "0b2", "1_000", "٣", "１２", "9" * 5000, "\u202e1", "--", "None")
NUMERIC_OPTIONS = ("--mem-mib", "--machine-mib", "--max-cycles", "--tlb-entries",
                   "--tlb-ways", "--tlb-large", "--ntlb-entries", "--seed")
CHOICE_OPTIONS = ("--mode", "--shadow-policy", "--clock", "--tlb-policy", "--tlb-kind")
# Files that cannot take an output, or are not a program: never replaced,
# never read forever.
BAD_FILES = tuple(f for f in ("/dev/full", "/dev/zero", "/", "/proc/version",
                              "/nonexistent/dir/out.json") if os.name == "posix")
BAD_WORDS = ("", "NATIVE", "shadow ", "Shadow", "ñ", "\U0001F600", "-", "--", "x" * 3000)


def absurd_argv(rng: random.Random, program: str) -> tuple[list[str], bool]:
    """``emu`` arguments with one or two absurd options, and whether they
    must be refused (a bad choice or no program; an odd number such as
    "-0", "1_000" or "１２" may be a fine number, a device may take output)."""
    argv = [rng.choice(("run", "compare", "asm", "disasm", "step", "run")), program]
    if argv[0] in ("run", "compare"):
        # a budget first, which an absurd --max-cycles after it replaces: a
        # mutant that runs away would take minutes to its default budget,
        # six times over under compare, and look hung
        argv += ["--max-cycles", "300000"]
    refuse = program in ("", "/", "nope.s", "/dev/zero")
    for _ in range(rng.randint(1, 2)):
        if rng.random() < 0.6:
            argv += [rng.choice(NUMERIC_OPTIONS), rng.choice(BAD_NUMBERS)]
        else:
            argv += [rng.choice(CHOICE_OPTIONS), rng.choice(BAD_WORDS)]
            refuse = True
    if argv[0] == "run":
        argv.append("--quiet")
        if rng.random() < 0.2:
            argv += [rng.choice(("--stats-json", "--trace")), rng.choice(BAD_FILES)]
    if argv[0] == "step":
        argv += ["--script", rng.choice((os.devnull, os.devnull, "/dev/zero", "/"))]
    if rng.random() < 0.15:                 # an include directory, or not one
        folder = rng.choice((*BAD_FILES, *BAD_WORDS, "/", "a\nb"))
        argv += ["-I", folder]
        refuse = refuse or not os.path.isdir(folder)
    return argv, refuse


# --- the checks ------------------------------------------------------------------------


def garbage_kernel(code: bytes, paging: bool) -> str:
    """A kernel that jumps into ``code``: every exception or interrupt skips
    one byte; the 64th powers off with status 64."""
    setup = ""
    if paging:
        setup = """
    mov dword [0x100000], 0x000087      ; va 0..4 MiB: identity, 4 MiB, P W U
    mov dword [0x100004], 0x400083      ; va 4..8 MiB: identity, 4 MiB, P W s
    mov eax, cr4
    or eax, CR4_PSE
    mov cr4, eax
    mov eax, 0x100000
    mov cr3, eax
    mov eax, cr0
    or eax, CR0_PG | CR0_WP
    mov cr0, eax
"""
    data = "\n".join("    db " + ", ".join(f"{b:#04x}" for b in code[i:i + 16])
                     for i in range(0, len(code), 16))
    return f"""%include "kernel.inc"
KSTACK_TOP equ 0x80000
org 0x1000
_start:
    mov esp, 0x80000
    call idt_init
{setup}
    jmp garbage
trap:
    inc dword [traps]
    cmp dword [traps], 64
    jae .off
    inc dword [eax + TF_EIP]
    ret
.off:
    mov eax, 64
    out POWER, eax
traps: dd 0
%include "lib.inc"
align 16
garbage:
{data}
"""
