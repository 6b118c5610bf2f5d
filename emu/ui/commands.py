"""The stepper's command language: the commands' aliases and help, which
commands move the run, and reading the commands of a script file or of
standard input (whole, with a limit: a script from /dev/zero or ``yes |``
must not fill memory; every failure one line, ``EmuError``)."""

from __future__ import annotations

import re

from ..errors import EmuError

ALIASES = {"s": "step", "si": "step", "n": "next", "m": "micro", "c": "continue",
           "cont": "continue", "u": "back", "b": "break", "d": "delete",
           "x": "mem", "t": "trace", "h": "help", "?": "help", "q": "quit",
           "rs": "reverse-step", "rc": "reverse-continue", "rm": "reverse-micro",
           "lw": "last-write",
           "exit": "quit", "l": "show", "where": "show", "info": "break"}

HELP = {   # command: (usage, summary, more)
    "step": ("step [N]", "run N instructions (default 1)",
             "The VMM's work on the way (faults, exits) is done too, and listed."),
    "next": ("next", "run to the next fault or VM exit",
             "Stops at the fault's first step; port I/O exits (one per console byte) are "
             "passed. Natively and under nested paging the guest's own faults count too: "
             "the next exception the hardware delivers."),
    "micro": ("micro", "the next VMM step (the next trace event)",
              "Inside a fault, the next of its six steps; outside, the next TLB fill, "
              "walk, exit ..."),
    "continue": ("continue", "run to a breakpoint or the end", ""),
    "back": ("back [N]", "undo the last N motions (default 1)",
             "Back to the start of the run if need be: the run is replayed up to there "
             "(the same program and configuration give the same run)."),
    "reverse-step": ("reverse-step", "back to before the last instruction",
                     "The run replays from the nearest snapshot, one instruction at a time."),
    "reverse-continue": ("reverse-continue", "back to the last breakpoint hit (or fault)",
                         "Where a forward continue would last have stopped; with no "
                         "breakpoints set, the start of the last fault or VM exit."),
    "reverse-micro": ("reverse-micro", "back one trace event (inside a fault: a VMM step)",
                      "The run replays from the nearest snapshot up to that event."),
    "last-write": ("last-write va|pa|ma ADDR", "who last changed the dword at ADDR",
                   "The instruction, cycle and source line, and whether the guest, the "
                   "hardware walker (A/D bits) or the VMM (a shadow fill ...) wrote it."),
    "break": ("break [WHAT]", "set a breakpoint; alone: list them",
              "break ADDR         at an address or symbol (page_fault, trap+4, 0x1000)\n"
              "break fault KIND   at a fault of a kind: hidden, true, tracing, dirty ... "
              "or an exception the hardware delivers: pf, gp, ud ...\n"
              "break exit REASON  at a VM exit: pf, cr3_write, invlpg, io, hlt ...\n"
              "break write VA     after an instruction changes the dword at VA"),
    "delete": ("delete N|all", "delete a breakpoint, or all", ""),
    "show": ("show", "draw the screen again", ""),
    "tlb": ("tlb", "the TLBs: sets, ways, valid entries, hits, misses", ""),
    "pt": ("pt [VA]", "the guest's page table (or its walk of VA)",
           "Present ranges folded, flags decoded."),
    "spt": ("spt [VA]", "the shadow table beside the guest's (or both entries of VA)",
            "Differences marked. Nested mode: the nested table."),
    "pmap": ("pmap", "the PMap: guest-physical -> machine pages", ""),
    "mem": ("mem va|pa|ma ADDR [N]", "N bytes of memory (default 64)",
            "ADDR may be a number, a symbol or a register, with + and -."),
    "stats": ("stats", "the counters so far", ""),
    "trace": ("trace [N]", "the last N trace events (default 20)", ""),
    "export": ("export FILE", "save the screen on show: FILE.svg, FILE.html or FILE.txt",
               "The screen as the last motion drew it, at the console's width; '-' writes "
               "it to standard output."),
    "help": ("help [COMMAND]", "the commands, or one in full", ""),
    "quit": ("quit", "leave the stepper", ""),
}

MOTIONS = ("step", "next", "micro", "continue", "back", "reverse-step", "reverse-continue",
           "reverse-micro")


MAX_SCRIPT = 1 << 20        # characters of commands read from a script or stdin


def read_script(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            return script_lines(fh, path)
    except OSError as e:
        raise EmuError(f"cannot read script {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise EmuError(f"cannot read script {path}: not UTF-8 text") from None


def script_lines(fh, name: str) -> list[str]:
    """The command lines of ``fh``, read up to ``MAX_SCRIPT`` characters (a
    script from /dev/zero or ``yes |`` must not fill memory)."""
    text = fh.read(MAX_SCRIPT + 1)
    if len(text) > MAX_SCRIPT:
        raise EmuError(f"script {name} holds more than {MAX_SCRIPT >> 20} MiB of commands")
    if "\0" in text:
        raise EmuError(f"cannot read script {name}: it holds NUL bytes (a binary file?)")
    return text.splitlines()


_TERM = re.compile(r"\s*([+-])\s*|\s*([^+\-\s]+)\s*")


def address_value(text: str, symbols: dict, registers: dict) -> int:
    """An address typed in a command: numbers, symbols and registers (a
    leading ``$`` allowed) joined by ``+`` and ``-``, in the 4 GiB address
    space.  Two values with nothing between them (``0x1000 0x2000``) or a
    value past 4 GiB is an error, never summed or cut to 32 bits."""
    text = text.strip()
    if not text:
        raise EmuError("an address is missing")
    total, sign, expect_value = 0, 1, True
    for op, tok in _TERM.findall(text):
        if op:
            if expect_value:                # a sign: "-4", "esp - -4"
                sign = -sign if op == "-" else sign
            else:
                sign, expect_value = (-1 if op == "-" else 1), True
            continue
        if not expect_value:
            raise EmuError(f"bad address '{text}': two values with no + or - between them")
        name = tok.lower().lstrip("$")
        if tok in symbols:
            value = symbols[tok]
        elif name in registers:
            value = registers[name]
        else:
            try:
                value = int(tok, 0)
            except ValueError:
                raise EmuError(f"bad address '{text}': '{tok}' is not a number, register "
                               "or symbol") from None
        total += sign * value
        sign, expect_value = 1, False
    if expect_value:
        raise EmuError(f"bad address '{text}': it ends with an operator")
    if not 0 <= total <= 0xFFFFFFFF:
        raise EmuError(f"bad address '{text}': {total:#x} is outside the 4 GiB address space")
    return total
