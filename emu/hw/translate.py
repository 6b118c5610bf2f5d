"""The block translator: guest code -> a Python function per basic block.

A block is a run of instructions from one eip to the first branch (which
ends it, included), system instruction (which ends it, excluded: the CPU
executes those itself), page boundary, undecodable byte or ``MAX_BLOCK``
instructions.  An out to the console is the exception among system
instructions: the block holds it and goes on (``_gen_out``), with the
counts of the separate blocks it stands for.  Its function loads the
registers and flags it touches into locals, runs straight-line code
generated from ``semantics.py``, stores what it wrote back and returns the
next eip.  Flags nobody reads before they are overwritten are not computed
(liveness within the block; at the end of a block and before every
instruction that may fault, all flags are live, so a fault always sees
exact flags).

On a fault the function stores its state, records in ``cpu.partial`` how many
of its instructions retired and re-raises; the CPU accounts for them.

A translation is a ``Block`` tuple ``(fn, ninsns, cycles, drefs, meta)``: the
dispatcher adds the counts after each call.  The code of a block does not
depend on where it is: its addresses are offsets from ``E``, the block's
first eip, which the dispatcher passes its function -- so the same
instructions at another address (a library routine in another guest, a
test's harness at another ``org``) are compiled once per process.

Blocks live in the dict of the physical page holding their code
(``Mmu.code``), cleared when a byte they were read from is written
(``Mmu.code_bytes``: a kernel's variables beside its code cost no
translation), so self-modifying code and reused pages stay correct.  A
store that makes code stale while a block runs ends that block after the
storing instruction (its ``_smc`` check raises ``CodeWritten``): the next
instruction may be one the store rewrote.
"""

from __future__ import annotations

import re
from types import CodeType, FunctionType
from typing import NamedTuple

from .. import isa
from .devices import CONSOLE_PORT
from .exceptions import BudgetEnd, CodeWritten, GuestFault
from .semantics import ALL_FLAGS, PFB, SEMANTICS, Gen, Sem

MAX_BLOCK = 32
SINGLE = 1 << 32   # key offset of one-instruction translations (exact stepping)
PRE = 2 << 32      # key offset of a block's piece before its first out (see below)


class BlockMeta(NamedTuple):
    offsets: tuple[int, ...]       # each instruction's offset from the block's first eip
    cycles_before: tuple[int, ...]  # cycles of the instructions before each one
    drefs_before: tuple[int, ...]  # data references before each one
    source: str                    # the generated Python (for the curious)
    out: int = -1                  # the index of its out to the console, if any

    @property
    def first_piece(self) -> int:
        """The instructions before the out (0: none, or no out)."""
        return max(self.out, 0)

    @property
    def pieces(self) -> tuple[int, ...]:
        """The offsets of the pieces after the first: the out, unless it
        begins the block, and the instructions after it, if any."""
        i, offsets = self.out, self.offsets
        if i < 0:
            return ()
        return offsets[i:i + 2] if i else offsets[i + 1:i + 2]


class Block(NamedTuple):
    fn: object          # (eip) -> next eip; a loop block (or one with an out):
                        # (max_insns, max_cycles, eip) -> next eip, cpu.iters its iterations
    ninsns: int
    cycles: int
    drefs: int
    loop: bool          # a loop block runs its own back edge (see ``translate``)
    meta: BlockMeta | None


def decode_block(fetch, eip: int, single: bool, outs: bool = False):
    """Decode instructions from ``eip``: a list of ``isa.Decoded`` that can
    be translated together, and what stopped the block.

    With ``outs``, one ``out`` of a register to the console's port (an
    immediate port) does not stop the block: the block holds it and goes
    on, and the instructions after it may be ``MAX_BLOCK`` more -- so the
    block is, piece by piece, the blocks it would have been without it
    (``_generate`` keeps their counts).  One only: where a batch ends at
    an out (the character not taken in place), the next begins at the
    piece after it, a block of its own -- with more outs in a block, code
    that prints N characters would be made N times, each time longer."""
    out = []
    page = eip >> 12
    pos = eip
    limit = 1 if single else MAX_BLOCK
    held = False
    while len(out) < limit:
        try:
            d = isa.decode(fetch, pos)
        except (isa.DecodeError, GuestFault, LookupError):
            break  # executed on its own: raises #UD / #PF at the right eip
        if (pos + d.length - 1) >> 12 != page:
            break  # crosses the page: executed on its own
        if d.insn.kind in (isa.SYSTEM, isa.PRIV):
            if held or not (outs and console_out(d)):
                break
            held = True
            limit = len(out) + 1 + MAX_BLOCK
        out.append(d)
        pos += d.length
        if d.insn.kind == isa.BRANCH:
            break
    return out


def console_out(d) -> bool:
    """Is ``d`` an ``out`` of a register to the console's port, an immediate?"""
    return (d.insn.mnemonic == "out" and d.insn.operands[0] == "i8"
            and d.args[0] == CONSOLE_PORT)


# Translations already made, by what determines them: (loops, costs, the
# decoded instructions) -> (code object, the Block's counts and meta, with
# offsets for addresses).  Code is generated and compiled once per process
# for every run that meets it (every mode and policy of a guest, a page
# written and translated again, the same instructions elsewhere); only the
# function is made anew, in the CPU's environment.
_MADE: dict = {}
MADE_LIMIT = 50_000


def translate(cpu, decoded: list, costs, loops: bool = True) -> Block:
    """The block for ``decoded`` (generated and compiled, or found already
    made), bound to ``cpu``."""
    return bind_block(made_block(decoded, costs, loops), cpu)


def made_block(decoded: list, costs, loops: bool = True) -> tuple:
    """The compiled block for ``decoded`` (wherever it is), not yet bound to
    a CPU and an address: (code, ninsns, cycles, drefs, loop, meta)."""
    key = (loops, costs, *decoded)
    made = _MADE.get(key)
    if made is None:
        if len(_MADE) >= MADE_LIMIT:
            _MADE.clear()
        made = _MADE[key] = _generate(decoded, costs, loops)
    return made


def bind_block(made: tuple, cpu) -> Block:
    """The ``Block`` of a compiled block for ``cpu``."""
    code, n, cycles, drefs, loop, meta = made
    return _new(Block, (_bind(code, cpu), n, cycles, drefs, loop, meta))


def _generate(decoded: list, costs, loops: bool) -> tuple:
    """Generate and compile the block: (the code of its function, ninsns,
    cycles, drefs, loop, meta).  Addresses are offsets from ``E``."""
    n = len(decoded)
    # Liveness of flags after each instruction.
    live_after = [ALL_FLAGS] * n
    live = ALL_FLAGS
    sems = [_OUT if d.insn.kind in (isa.SYSTEM, isa.PRIV) else SEMANTICS[d.insn.mnemonic]
            for d in decoded]
    out = next((i for i, s in enumerate(sems) if s is _OUT), -1)   # (one at most)
    for i in range(n - 1, -1, -1):
        # (an instruction that may write memory may end the block after it
        # -- CodeWritten -- so all flags are live after it too)
        touches = sems[i].faults or any(k in isa.MEM_KINDS for k in decoded[i].insn.operands)
        live_after[i] = ALL_FLAGS if touches and i < n - 1 else live
        live = ALL_FLAGS if touches else (live - sems[i].writes) | sems[i].reads
    body: list[str] = []
    regs_read: set[int] = set()
    regs_written: set[int] = set()
    flags_used: set[str] = set()
    flags_written: set[str] = set()
    offsets, cyc_before, drefs_before = [], [], []
    cycles = drefs = 0
    pos = 0                         # (offsets from the block's first eip)
    ends_with_return = False
    for i, d in enumerate(decoded):
        nxt = pos + d.length
        g = Gen(d.insn, d.args, pos, nxt, live_after[i])
        if sems[i] is _OUT:
            _gen_out(g, i, i == n - 1, cycles, cycles + d.insn.cycles)
        else:
            sems[i].gen(g)
        may_fault = g.mem_refs > 0 or sems[i].faults
        if may_fault:
            body.append(f"k = {i}")
        body.extend(g.lines)
        if g.stores and i < n - 1:
            # Self-modifying code: a store that made translated code stale
            # (Mmu.code_gone) ends the block here; the CPU goes on at the
            # next instruction, translated anew.
            body += ["if _smc:", f"    k = {i + 1}", "    raise CodeWritten"]
        regs_read |= g.regs_read
        regs_written |= g.regs_written
        flags_used |= sems[i].reads | sems[i].writes
        flags_written |= sems[i].writes
        offsets.append(pos)
        cyc_before.append(cycles)
        drefs_before.append(drefs)
        cycles += d.insn.cycles + g.mem_refs * costs.mem_ref
        drefs += g.mem_refs
        ends_with_return = bool(g.lines) and g.lines[-1].startswith("return")
        if ends_with_return and i != n - 1:
            raise AssertionError("only the last instruction of a block branches")
        pos = nxt
    last = decoded[-1]
    loop = (loops and out < 0 and last.insn.kind == isa.BRANCH
            and last.insn.operands == ("rel",) and (pos + last.args[0]) & 0xFFFFFFFF == 0)
    regs = sorted(regs_read | regs_written)
    flags = sorted(flags_used)
    fresh = _set_before_use(body, {isa.REGS32[r] for r in regs} | set(flags))
    load = [f"{isa.REGS32[r]} = r[{r}]" for r in regs if isa.REGS32[r] not in fresh]
    load += [f"{f} = cpu.{f}" for f in flags if f not in fresh]
    store = [f"r[{r}] = {isa.REGS32[r]}" for r in sorted(regs_written)]
    store += [f"cpu.{f} = {f}" for f in sorted(flags_written)]
    if ends_with_return:
        body[-1] = "_next = " + body[-1][len("return "):]
    else:
        body.append(f"_next = {Gen.at(pos)}")
    may_fault = any(line.startswith("k = ") for line in body)
    if loop:
        # A loop block runs its back edge itself, as many iterations as the
        # budgets allow; cpu.iters tells the dispatcher how many ran.
        head = ["def block(max_insns, max_cycles, E):", *_indent(load, 1),
                "    it = 0",
                f"    limit = min(max_insns // {n}, -(-max_cycles // {max(cycles, 1)}))"]
        inner = ["while True:", *_indent(body, 1), "    it += 1",
                 "    if _next != E or it >= limit:", "        break"]
        store = store + ["cpu.iters = it"]
    elif out >= 0:
        # Called as a loop block is (its budgets tell it where the batch
        # would have ended between its pieces), one iteration.
        head = ["def block(max_insns, max_cycles, E):", *_indent(load, 1)]
        inner = body + ["cpu.iters = 1"]
    else:
        head = ["def block(E):", *_indent(load, 1)]
        inner = body
    lines = list(head)
    if may_fault:
        # The state goes back to the CPU on the way out, a fault's way too
        # (written once: the compiler copies a finally clause to each exit).
        lines += ["    try:", *_indent(inner, 2), "    except Exception:",
                  "        cpu.partial = k", *(["        cpu.iters = 0"] if out >= 0 else []),
                  "        raise"]
        if store:
            lines += ["    finally:", *_indent(store, 2)]
    else:
        lines += [*_indent(inner, 1), *_indent(store, 1)]
    lines.append("    return _next")
    source = "\n".join(lines)
    meta = BlockMeta(tuple(offsets), tuple(cyc_before), tuple(drefs_before), source, out)
    module = compile(source, "<block>", "exec")
    code = next(c for c in module.co_consts if isinstance(c, CodeType))
    return code, n, cycles, drefs, loop or out >= 0, meta


# An out to the console inside a block.  Without it the block would be
# pieces: the instructions before the out, the out (a system instruction,
# executed by the CPU), those after it -- each fetched by the dispatcher
# (an ITLB lookup), each begun only while the batch's cycle budget lasts.
# The block does what the dispatcher would have between them: it ends
# (``BudgetEnd``) where the budget ends, and ``_out`` (``Cpu.inline_out``)
# counts the out's fetch and the next piece's, and writes the character
# in place -- or, where the system cannot take it so, ends the batch as
# the out would have (an I/O stop or exit).  A block with an out is never
# a loop block; one that does not fit the batch's instruction budget runs
# its first piece alone (``PRE``), as the dispatcher would have.
_OUT = Sem(None, (), (), True)


def _gen_out(g: Gen, i: int, last: bool, before: int, after: int) -> None:
    """The code of the out at index ``i`` of a block (``last``: the
    block's last instruction): ``before`` and ``after`` are the block's
    cycles before and after it."""
    reg = g.reg(g.args[1])
    value = f"{reg} & 0xFF" if g.insn.operands[1] == "al" else reg
    if i:
        g.emit(f"if max_cycles <= {before}:")
        g.emit("    raise BudgetEnd")
    then = "False" if last else f"max_cycles > {after}"
    g.emit(f"_out({value}, {Gen.at(g.pos)}, {Gen.at(g.next_pos)}, {1 if i else 0}, {then})")
    if not last:
        g.emit(f"k = {i + 1}")
        g.emit(f"if max_cycles <= {after}:")
        g.emit("    raise BudgetEnd")


COUNTED = 4 << 32     # key offset of a page's marks of the blocks counted


def count_new(blocks: dict, at: int, block: Block) -> int:
    """``blocks_translated``'s count of a translation just made at ``at``
    (the block's address; a one-instruction one's key): the blocks it
    stands for -- a block with an out to the console, the separate blocks
    of its pieces -- that the page's code has not counted
    yet.  So a block made at a piece of one already counted (where a batch
    ended at an out, or inside) counts nothing, and the figure is the same
    wherever the batches end: watched or not, snapshot taken or not.  The
    marks go with the page's code."""
    new = 0
    if at | COUNTED not in blocks:
        blocks[at | COUNTED] = True
        new = 1
    meta = block.meta
    if meta is not None:
        for off in meta.pieces:
            if (at + off) | COUNTED not in blocks:
                blocks[(at + off) | COUNTED] = True
                new += 1
    return new


_NAME = re.compile(r"(?<![.\w])[a-z_]\w*")
_SET = re.compile(r"([a-z_]\w*) = (.*)")


def _set_before_use(body: list[str], names: set[str]) -> set[str]:
    """The ``names`` the block body sets, unconditionally, before it reads
    them and before its first instruction that may fault: their values at
    entry are never used (not by the body, not by the fault path, which
    stores them back), so they need not be loaded.  A line inside an ``if``
    reads every name it mentions (it may not run)."""
    fresh: set[str] = set()
    seen: set[str] = set()          # read, or set too late
    for line in body:
        if line.startswith("k = "):
            return fresh            # a fault may come: the rest must be loaded
        m = None if line[:1] == " " or line.endswith(":") else _SET.fullmatch(line)
        for name in _NAME.findall(m.group(2) if m else line):
            if name in names:
                seen.add(name)
        if m:
            target = m.group(1)
            if target in names and target not in seen:
                fresh.add(target)
                seen.add(target)
    return fresh


_new = tuple.__new__


def _indent(lines: list[str], level: int) -> list[str]:
    pad = "    " * level
    return [pad + line for line in lines]


def _bind(code, cpu):
    """The block's function, its globals the CPU's environment (the
    dispatcher passes it its address, ``E``: every argument, so that no
    call fills in a default -- see DECISIONS)."""
    env = cpu.mmu.env           # shared by all blocks: the MMU rebinds rd32 ...
    if "cpu" not in env:
        env.update(cpu=cpu, r=cpu.r, GuestFault=GuestFault, CodeWritten=CodeWritten,
                   PFB=PFB, BudgetEnd=BudgetEnd, _out=cpu.inline_out)
    return FunctionType(code, env, "block")
