"""What a program may store: a number, or one address plus or minus a number.

NASM's bin format resolves an address of a section (``label``, ``$``,
``label + 4``, even ``-label`` of the statement's own section) and any
number; it refuses values that add two addresses (``a + b``), multiply one
(``2*label``), subtract addresses of different sections or negate an
address of another section than the statement's (``5 - label``), since
none of them is an address in the program.
``check_stmt`` applies that rule to every value of a statement once, before
it is encoded (see ``expr`` for how a value's addresses are counted).
"""

from __future__ import annotations

from .expr import NUMBERS_ONLY, Env
from .operands import ImmOp, MemOp

NOT_SIMPLE = ("value is neither a number nor an address plus a number: it adds or "
              "multiplies addresses, or subtracts addresses of different sections")
NEGATED = ("value is neither a number nor an address plus a number: it subtracts an "
           "address of another section from a number")


def check_value(rel: dict, env: Env, col: int) -> None:
    if not rel:
        return
    if len(rel) == 1:
        (section, k), = rel.items()
        if k == 1 or (k == -1 and section is env.section):
            return
        if k == -1:
            raise env.loc.error(NEGATED, col)
    raise env.loc.error(NOT_SIMPLE, col)


def check_stmt(stmt, env: Env) -> None:
    """Raise the error of the first value of ``stmt`` that is not storable."""
    for item in getattr(stmt, "items", ()):
        if item is not None and not isinstance(item, bytes):
            check_value(item.rel(env), env, item.start)
    for op in getattr(stmt, "ops", ()):
        if isinstance(op, ImmOp):
            check_value(op.expr.rel(env), env, op.col)
        elif isinstance(op, MemOp):
            total: dict = {}
            for term, sign in op.disp:
                for section, k in term.rel(env).items():
                    total[section] = total.get(section, 0) + sign * k
            check_value({s: k for s, k in total.items() if k}, env, op.col)
            for _, factor, _, _ in op.regs:
                if factor is not None and factor.rel(env):
                    raise env.loc.error(f"a scale {NUMBERS_ONLY}", factor.start)
