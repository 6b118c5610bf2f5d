"""The target description GDB reads (``qXfer:features:read:target.xml``).

The i386 core registers in the order GDB numbers them (its
``org.gnu.gdb.i386.core`` feature: the eight GPRs, eip, eflags, the six
segment selectors, then the x87 registers GDB requires of that feature;
the machine has no x87, they read as zeros), the SSE feature GDB's i386
description requires (zeros too), and the control registers as a feature
of their own: ``info registers cr3`` works, and ``p/x $cr3``.
"""

from __future__ import annotations

# (name, bytes, type) in register-number order
_GPRS = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"]
REGISTERS: list[tuple[str, int, str]] = (
    [(n, 4, "data_ptr" if n in ("esp", "ebp") else "int32") for n in _GPRS]
    + [("eip", 4, "code_ptr"), ("eflags", 4, "i386_eflags")]
    + [(n, 4, "int32") for n in ("cs", "ss", "ds", "es", "fs", "gs")]
    + [(f"st{i}", 10, "i387_ext") for i in range(8)]
    + [(n, 4, "int") for n in ("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff",
                               "fop")]
    + [(f"xmm{i}", 16, "vec128") for i in range(8)]
    + [("mxcsr", 4, "i386_mxcsr")]
    + [(n, 4, "int32") for n in ("cr0", "cr2", "cr3", "cr4")]
)
REGNUM = {name: i for i, (name, _, _) in enumerate(REGISTERS)}
CONTROL_FEATURE = "org.emu.control"

_EFLAGS = [("CF", 0), ("", 1), ("PF", 2), ("AF", 4), ("ZF", 6), ("SF", 7), ("TF", 8),
           ("IF", 9), ("DF", 10), ("OF", 11), ("NT", 14), ("RF", 16), ("VM", 17),
           ("AC", 18), ("VIF", 19), ("VIP", 20), ("ID", 21)]
_MXCSR = ["IE", "DE", "ZE", "OE", "UE", "PE", "DAZ", "IM", "DM", "ZM", "OM", "UM", "PM",
          "FZ"]


def _reg(name: str, size: int, kind: str, group: str = "") -> str:
    g = f' group="{group}"' if group else ""
    return (f'    <reg name="{name}" bitsize="{size * 8}" type="{kind}" '
            f'regnum="{REGNUM[name]}"{g}/>')


def target_xml() -> str:
    flags = "\n".join(f'      <field name="{n}" start="{b}" end="{b}"/>' for n, b in _EFLAGS)
    mx = "\n".join(f'      <field name="{n}" start="{i}" end="{i}"/>'
                   for i, n in enumerate(_MXCSR))
    core = "\n".join(_reg(n, s, t, "float" if t == "int" else "")
                     for n, s, t in REGISTERS if REGNUM[n] < 32)
    sse = "\n".join(_reg(n, s, t) for n, s, t in REGISTERS if 32 <= REGNUM[n] <= 40)
    control = "\n".join(_reg(n, s, t, "system") for n, s, t in REGISTERS if REGNUM[n] > 40)
    vec = ('    <vector id="v4f" type="ieee_single" count="4"/>\n'
           '    <vector id="v2d" type="ieee_double" count="2"/>\n'
           '    <vector id="v16i8" type="int8" count="16"/>\n'
           '    <vector id="v8i16" type="int16" count="8"/>\n'
           '    <vector id="v4i32" type="int32" count="4"/>\n'
           '    <vector id="v2i64" type="int64" count="2"/>\n'
           '    <union id="vec128">\n'
           '      <field name="v4_float" type="v4f"/>\n'
           '      <field name="v2_double" type="v2d"/>\n'
           '      <field name="v16_int8" type="v16i8"/>\n'
           '      <field name="v8_int16" type="v8i16"/>\n'
           '      <field name="v4_int32" type="v4i32"/>\n'
           '      <field name="v2_int64" type="v2i64"/>\n'
           '      <field name="uint128" type="uint128"/>\n'
           '    </union>\n')
    return (
        '<?xml version="1.0"?>\n'
        '<!DOCTYPE target SYSTEM "gdb-target.dtd">\n'
        '<target version="1.0">\n'
        '  <architecture>i386</architecture>\n'
        '  <feature name="org.gnu.gdb.i386.core">\n'
        '    <flags id="i386_eflags" size="4">\n' + flags + '\n    </flags>\n'
        + core + '\n  </feature>\n'
        '  <feature name="org.gnu.gdb.i386.sse">\n' + vec
        + '    <flags id="i386_mxcsr" size="4">\n' + mx + '\n    </flags>\n'
        + sse + '\n  </feature>\n'
        f'  <feature name="{CONTROL_FEATURE}">\n' + control + '\n  </feature>\n'
        '</target>\n')
