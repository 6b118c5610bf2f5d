"""The language is NASM's: checked against NASM itself.

* every program of the project (guests, benchmarks, test programs,
  regressions, examples, the NASM-style programs of tests/nasm) is accepted
  by ``nasm -f bin`` without a warning -- the encodings differ, the
  language must not;
* a program made only of data (db/dw/dd/dq, strings, times, align, sections,
  the preprocessor) assembles to exactly NASM's bytes: data has the same
  encoding in both, so NASM is the independent model of numbers, strings,
  operators, macros and section layout;
* NASM-style programs written outside the project run with their expected
  output in every mode.

NASM must be installed (scripts/system-tools installs it); without it these
tests fail rather than skip.
"""

from __future__ import annotations

import ast
import pathlib
import re
import shutil
import subprocess
import textwrap

import pytest

from emu import isa
from emu.asm import Image, assemble, assemble_file
from emu.errors import AsmError
from emu.system import MODES, Config, System

ROOT = pathlib.Path(__file__).resolve().parent.parent
INCLUDE = ROOT / "guest_programs" / "include"
NASM_DIR = ROOT / "tests" / "nasm"
PROGRAMS = sorted(
    [*ROOT.glob("guest_programs/*.s"), *ROOT.glob("benchmarks/*.s"),
     *ROOT.glob("tests/programs/*.s"), *ROOT.glob("tests/regressions/*.s"),
     *NASM_DIR.glob("*.s")])


def nasm(path: pathlib.Path, out: pathlib.Path) -> subprocess.CompletedProcess:
    exe = shutil.which("nasm")
    assert exe is not None, "nasm is not installed (scripts/system-tools installs it)"
    # (-i the program's own folder: emu looks for an include there first)
    return subprocess.run([exe, "-f", "bin", f"-i{path.parent}/", f"-i{INCLUDE}/",
                           f"-i{NASM_DIR}/", "-o", str(out), str(path)],
                          capture_output=True, text=True, timeout=60)


def example_sources() -> list[tuple[str, str]]:
    """(name, text) of each assembly string ``SOURCE`` in examples/*.py."""
    out = []
    for path in sorted((ROOT / "examples").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and any(
                    getattr(t, "id", "") == "SOURCE" for t in node.targets):
                out.append((path.name, node.value.value))   # type: ignore[attr-defined]
    return out


def test_there_are_programs_and_examples_to_check():
    assert len(PROGRAMS) >= 25 and example_sources()


@pytest.mark.parametrize("path", PROGRAMS, ids=lambda p: str(p.relative_to(ROOT)))
def test_nasm_accepts_every_program(path, tmp_path):
    done = nasm(path, tmp_path / "out.bin")
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    # Without it NASM assembles 16-bit code: the same text, another meaning.
    assert "bits 32" in [line.split(";")[0].strip().lower()
                         for line in path.read_text().splitlines()]


@pytest.mark.parametrize("name,source", example_sources())
def test_nasm_accepts_the_examples(name, source, tmp_path):
    src = tmp_path / name.replace(".py", ".s")
    src.write_text(source)
    done = nasm(src, tmp_path / "out.bin")
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    assert "bits 32" in source


# --- data: our bytes are NASM's bytes ----------------------------------------------

def blob(image: Image) -> bytes:
    """The image as NASM's bin file: from the lowest byte to the highest."""
    lo = image.segments[0][0]
    out = bytearray(max(a + len(b) for a, b in image.segments) - lo)
    for a, b in image.segments:
        out[a - lo:a - lo + len(b)] = b
    return bytes(out)


DATA = {
    "numbers": """
        dq 200, 0200, 0200d, 0d200, 0c8h, 0xc8, 0hc8, $0c8, 0x_c8, 0C8H
        dq 310q, 310o, 0o310, 0q310, 11001000b, 1100_1000y, 0b1100_1000, 0y11001000
        dq 1_000_000, 0xFFFFFFFFFFFFFFFF, 0bh, 0b1h, 0x, 0b, 0d, 0h1F, 19t, 0t19
        """,
    "operators": """
        dq 1 + 2 * 3, (1 + 2) * 3, 1 << 2 + 1, 6 & 3 | 8, 2 ^ 3 & 1, 10 - 4 - 3
        dq -7 / 2, -7 // 2, -7 % 2, -7 %% 2, 7 %% -2, 100 / 10 / 5
        dq -16 >> 2, -16 >>> 2, 1 <<< 4, ~0, -(2 + 3), +4, !0, !7
        dq 3 == 3, 3 = 4, 3 != 4, 3 <> 3, -1 < 0, 2 <= 1, 3 > 2, 3 >= 4
        dq 1 && 0, 1 || 0, 1 ^^ 1, 0 ^^ 2, 5 && 7, 0 || 0
        dq (1 << 40) >> 20, 'A' + 1, 'ab', 'abcdefgh', "xy" + 0x100
        """,
    "strings": r"""
        db "double", 'single', `back\ttick\n\x41\102\u00e9\\\``, 0
        db 'no \n escape', "", '"', "'"
        dw 'a', 'abc', "hello"
        dd 'abcde', "x"
        dq 'ABCDEFGHI'
        db 'é', 1, -1, 255, -128
        dw -1, 65535, 0x1234
        dd -1, 0xFFFFFFFF, -0x80000000
        """,
    "labels": """
        org 0x7C00
        start: dd start, end, .local, $, $$, $ - $$, end - start
        .local: db 1
        times 32 - ($ - $$) db 0xAA
        SIZE equ end - start
        COUNT equ (SIZE + 3) / 4
        dd SIZE, COUNT, LATER
        LATER equ SIZE * 2
        msg db "label without a colon", 0
        len equ $ - msg
        dw len
        align 8, db 0
        alignb 4, db 0xCC
        times 3 dd $
        end:
        """,
    "preprocessor": """
        %define ONE 1
        %define ADD(a, b) ((a) + (b))
        %idefine Shout 7
        %define NEST ADD(ONE, ONE)
        db ONE, ADD(2, 3), SHOUT, shout, NEST
        %undef ONE
        %ifdef ONE
          db 0xFF
        %elifndef TWO
          db 2
        %else
          db 0xFE
        %endif
        %assign i 0
        %rep 10
          %if i == 4
            %exitrep
          %elif i % 2
            db 'o'
          %else
            db 'e'
          %endif
          %assign i i + 1
        %endrep
        db i
        %macro pair 2
          db %1, %2, %0
        %endmacro
        %macro opt 1-3 20, 30
          db %1, %2, %3, %0
        %endmacro
        %macro rest 1+
          db %1
        %endmacro
        %macro mark 0
          %%here: dd %%here
        %endmacro
        %macro nested 1
          pair %1, %1
          opt {%1}
        %endmacro
        pair 1, 2
        opt 1
        opt 1, 2
        opt 1, 2, 3
        rest 4, 5, 6
        mark
        mark
        tag: nested 9
        dd tag
        %rep 3
          db 0x11
        %endrep
        %if ADD(1, 1) > 1 && !(3 < 2)
          db 0x22
        %endif
        """,
    "sections": """
        org 0x1000
        section .text
        t0: dd b0, b1, d0, r0, f0, v0, $$
        section .data
        d0: db 1
        align 16, db 0
        d1: dd d1, $$
        section .rodata
        r0: db 2, 3, 4
        section .bss
        b0: resb 3
        b1: resd 2
        section far start=0x3000
        f0: dd f0, $, $$
        section .text
        t1: dd t1
        section follower follows=.data
        w0: dd w0
        section v start=0x4000 vstart=0x500000
        v0: dd v0, $$, $
        section a align=32
        a0: dd a0
        """,
    "times_in_sections": """
        section .data
        x: times 5 db 0x5A
        section .text
        y: times 2 dw 0x1234, $
        times 4 - ($ - $$) % 4 db 0
        z: dd x, y, z
        """,
    "conditions": """
        %define A 1
        %xdefine B A + 1
        %define A 10
        %define C A + 1
        dd B, C
        %xdefine A A + 5
        dd A
        %ixdefine Low 3
        dd LOW, low
        %strlen LEN 'hello'
        %strlen NONE ""
        %define WORD "four"
        %strlen WLEN WORD
        db LEN, NONE, WLEN
        %macro kind 1
        %ifidn %1, eax
            db 'a'
        %elifidni %1, EBX
            db 'b'
        %elifnidn %1, [ecx + 4]
            db 'n'
        %else
            db 's'
        %endif
        %endmacro
        kind eax
        kind EAX
        kind ebx
        kind Ebx
        kind [ecx+4]
        kind [ ecx + 4 ]
        kind [ecx+8]
        %ifidn "a,b", "a,b"
            db 1
        %endif
        %ifnidni x, X
            db 2
        %else
            db 3
        %endif
        %macro unless 2
        %if %1
        %exitmacro
        %endif
            db %2
        %endmacro
        unless 0, 5
        unless 1, 6
        unless 0, 7
        """,
    "strings compared by value": """
        %macro same 2
        %ifidn %1, %2
            db 1
        %elifidni %1, %2
            db 2
        %else
            db 0
        %endif
        %endmacro
        same 'abc', "abc"
        same 'abc', `abc`
        same 'ABC', "abc"
        same `a\\x41`, 'aA'
        same 'a\\n', `a\\n`
        same 'a', 'a '
        same "it's", 'it''s'
        same 'eax', eax
        same '', ""
        %defstr D hello
        same D, "hello"
        same `a\\`,b`, 'a`,b'
        %defstr E x `a\\`  b`   y
        db E
        """,
    "absolute": """
        org 0x1000
        dd buffer, buffer.end, count, table, table.two, later, buf_len, N
        absolute 0x8000
        buffer: resb 16
        .end:
        count   resd 1
                alignb 8
        table:  resq 2
        .two:   resw N
        section .data
        x: dd 1
        absolute x + 4
        later: resb 1
        N equ 3
        buf_len equ buffer.end - buffer
        [section .text]
        dd later + 1
        """,
    "data bounds": """
        db -256, -200, -129, -128, 255
        dw -65536, -40000, 65535
        dd -4294967296, -3189548651, 4294967295, 0xffffffffffffffff
        dq -9223372036854775808, 18446744073709551615
        """,
    "comparisons": """
        dq 0x7fffffffffffffff > -1, 0x7fffffffffffffff < -1, -1 < 5, 5 > -1
        dq 0x8000000000000000 < 5, 0x8000000000000000 > 5, 0x8000000000000000 <= 5
        dq 0xffffffffffffffff == -1, 0xffffffffffffffff < 0, 3 >= 3, 2 <> 2, 1 != 2
        """,
    "not": """
        %if ~1111111111111111111111111111111111111111111111111111111111111111b
        db 1
        %else
        db 2
        %endif
        dq ~0xffffffffffffffff, ~0x8000000000000000, ~0, ~-1
        """,
    "follows groups": """
        org 0x100
        section .text
        t: db 1
        section .data
        d: db 2
        section user progbits align=8
        u: db 3
        section extra progbits follows=.data
        e: db 4
        section .rodata progbits follows=user
        r: db 5
        section more nobits follows=user
        m: resb 1
        section .text
        dd t, d, u, e, r, m
        """,
    "continued lines": """
        db 1, \\
         2
        db 5 ; a comment that ends in a backslash takes the next line in \\
        db 6
        %define X 7 + \\
          1
        db X
        db 9\\
        0
        db "a\\
        b"
        """,
    "standard macros": """
        %macro where 0
        db __LINE__
        db __FILE__
        %endmacro
        db __LINE__
        where
        db __?LINE?__, __BITS__, __?BITS?__
        %rep 2
        db __LINE__
        %endrep
        %assign L __LINE__
        db L
        %define Q __LINE__

        db Q
        %defstr F __OUTPUT_FORMAT__
        db F
        %ifdef __LINE__
        db 'd'
        %endif
        """,
    "rotate": """
        %macro multi 1-*
        %rep %0
        db %1
        %rotate 1
        %endrep
        %endmacro
        %macro back 1-*
        %rep %0
        %rotate -1
        db %1
        %endrep
        %endmacro
        %macro two 2
        %rotate 1
        db %1, %2, %0
        %rotate 3
        db %1, %2
        %endmacro
        multi 1, 2, 3
        back 4, 5, 6
        two 7, 8
        %macro outer 1-*
        %rotate 1
        %macro inner 1
        db %1, %0
        %endmacro
        inner %1
        inner 5
        %endmacro
        outer 9, 10
        %macro deflt 0-2 5, 1
        db %0, %1, %2
        %endmacro
        deflt
        deflt 7
        """,
    "ifmacro": """
        %macro foo 1
        db 1
        %endmacro
        %macro bar 1-3
        db 2
        %endmacro
        %imacro Qux 2+
        db 3
        %endmacro
        %ifmacro foo
        db 'a'
        %endif
        %ifmacro foo 1
        db 'b'
        %endif
        %ifmacro foo 2
        db 'c'
        %endif
        %ifmacro foo 0-2
        db 'd'
        %endif
        %ifmacro bar 2
        db 'e'
        %endif
        %ifmacro bar 4
        db 'f'
        %endif
        %ifmacro bar 0-*
        db 'g'
        %endif
        %ifnmacro baz
        db 'h'
        %endif
        %ifmacro FOO
        db 'i'
        %endif
        %ifmacro QUX 5
        db 'l'
        %endif
        %ifmacro qux 1
        db 'm'
        %endif
        %unmacro foo 1
        %ifmacro foo
        db 'j'
        %endif
        %unmacro bar 2
        %if 0
        %elifmacro bar 3
        db 'k'
        %endif
        %unimacro qux 2+
        %ifmacro qux
        db 'n'
        %endif
        """,
    "wrapping": """
        dq 3 << 63, 0xffffffffffffffff + 1, -0x8000000000000000 - 1
        dq 0x100000000 * 0x100000000, 0x8000000000000000 * 3, -(-0x8000000000000000)
        dd 0xffffffffffffffff, 0xffffffff00000000 + 5
        db 0xffffffffffffffff, 0xffffffffffffff00 + 0x80
        """,
    "context stack": """
        %push outer
        %define %$v 7
        %assign %$n 3
        db %$v, %$n
        %push inner
        %define %$v 9
        db %$v, %$$v
        %ifctx inner
        db 'y'
        %endif
        %ifnctx outer
        db 'z'
        %endif
        %ifctx foo inner
        db 'w'
        %endif
        %repl renamed
        %ifctx renamed
        db 'r'
        %endif
        %$here: db $ - %$here
        %pop
        %pop outer
        %ifctx outer
        db 'q'
        %endif
        %macro cc 1
        %defstr P %+1
        %defstr N %-1
        db P, '/', N, ' '
        %endmacro
        cc e
        cc nz
        cc a
        cc ge
        cc po
        cc nae
        cc c
        cc pe
        cc nle
        cc E
        """,
    "stack frame": """
        %push f
        %stacksize flat
        %arg a:dword, b:word, c:byte, d:qword
        %assign %$localsize 0
        %local x:dword, y:word, z:byte, w:qword
        %defstr A a
        %defstr B b
        %defstr C c
        %defstr D d
        %defstr X x
        %defstr Y y
        %defstr Z z
        %defstr W w
        %defstr LS %$localsize
        db A, B, C, D, X, Y, Z, W, LS
        %pop
        %push g
        %arg e:dword
        %assign %$localsize 4
        %local v:dword
        %defstr E e
        %defstr V v
        %defstr LS %$localsize
        db E, V, LS
        %pop
        """,
    "pasting": """
        %define AB 5
        %define X A %+ B
        db X
        %define CAT(a, b) a %+ b
        db CAT(A, B)
        %define pre lab
        pre %+ el: db 7
        db labe %+ l - $$
        %macro m 1
        %1 %+ _x: db 9
        %1_y: db 10
        %endmacro
        m foo
        dd foo_x, foo_y
        db 1 %+ 2
        """,
    "macro names and deftok": """
        %imacro Show 0
        %defstr N1 %?
        %defstr N2 %??
        db N1, '/', N2, ' '
        %endmacro
        show
        SHOW
        Show
        %deftok T 'db 5'
        T
        %deftok U "AB"
        %define AB 7
        db U
        %defstr S Hello
        %deftok V S
        %define Hello 9
        db V
        """,
    "shift counts": """
        dd 1 << 200
        dq 1 << -1
        dq 0x100 >> 70, -256 >>> 66, -256 >> 66, 5 <<< 65, 0x123 << 64
        dd (0b10000000 - 09a77h >> 9 * (29412) + 0o3) & 0xffffffff
        """,
    "absolute here": """
        org 0x1000
        dd 1, 2
        absolute $
        v1: resd 1
        vend equ $
        vlen equ $ - v1
        start equ $$
        absolute 0x2000
        buf:    resb 16
        bufend  equ $
        buflen  equ $ - buf
        pad:    resb 0x20 - ($ - buf)
        tail:   resd 1
        absolute $ + 8
        after:  resb 1
        e1 equ ($ - after) * 3
        absolute $
        again: resb 2
        struc rec
        .a: resb 3
        in_rec equ $
        .b: resb 8 - ($ - rec.a)
        .c: resd 1
        endstruc
        section .text
        x equ $
        dd v1, vend, vlen, start, buf, bufend, buflen, pad, tail, after, e1, again
        dd in_rec, rec.b, rec.c, rec_size, x, $$
        db bufend >> 8, vlen << 2
        """,
    "string macros": """
        %defstr A hello   world
        %define X 5
        %defstr B X + 1
        %idefstr Low x
        %strcat E 'ab', "cd", `e\\n`
        %strcat F "it's", 'x'
        %strcat Q "it's", '"x"', `\\x01`
        %substr G 'xyzw' 2
        %substr H 'xyzw' 2, -1
        %substr I 'xyzw' 2, -2
        %substr J 'xyzw' 9
        %substr K 'xyzw' 1, 3
        %substr L "abc" 3, 5
        %substr M 'xyzw' 0
        %substr N 'xyzw' -1, 2
        %substr O 'xyzw' 2, -9
        %define S 'abc'
        %strlen R S
        %substr T S X - 3, 2
        %strlen U `a\\nb`
        db A, 0, B, 0, LOW, low, 0, E, 0, F, 0, Q, 0, G, 0, H, 0, I, 0, J, 0, K, 0, L, 0
        db M, 0, N, 0, O, 0, R, T, U
        """,
    "token tests": """
        %macro kind 0-1
        %ifnum %1
            db 'n'
        %elifstr %1
            db 's'
        %elifid %1
            db 'i'
        %elifempty %1
            db 'e'
        %else
            db '?'
        %endif
        %iftoken %1
            db 't'
        %endif
        %ifntoken %1
            db 'm'
        %endif
        %endmacro
        kind 5
        kind 0x10
        kind 10h
        kind $1F
        kind 'ab'
        kind "x y"
        kind eax
        kind .local
        kind _x
        kind $eax
        kind $
        kind $$
        kind
        kind 1 + 2
        kind [eax]
        kind -1
        kind --1
        kind + 1
        kind a b
        %define N 3
        kind N
        %ifnnum x
            db 'X'
        %endif
        %ifnid 5
            db 'Y'
        %endif
        %ifnstr 5
            db 'Z'
        %endif
        %ifnempty 5
            db 'W'
        %endif
        %if 0
        %elifnnum 7
        %elifntoken a b
            db 'V'
        %endif
        """,
    "conditional_operator": """
        N equ 3
        dd 1 ? 2 : 3, 0 ? 2 : 3, 1 ? 2 : 0 ? 3 : 4, 0 ? 2 : 0 ? 3 : 4, 0 ? 2 : 1 ? 3 : 4
        dd 1 + 1 ? 5 : 6, 0 || 0 ? 5 : 6, (1 ? 2 : 3) + 1, 1 ? 2 + 3 : 4
        dd (1 ? 2 : 3) ? 4 : 5, 1 ? 0 ? 7 : 8 : 9, N > 2 ? N * 2 : -N
        dd 0x8000000000000000 ? 1 : 2, 0x100000000 ? 3 : 4
        x: dd 1 ? x : 0, 0 ? 0 : x + 1, ($ - $$ ? 10 : 20)
        %if N == 3 ? 0 : 1
        db 1
        %else
        db 2
        %endif
        %assign v N ? 3 : 4
        times N < 5 ? 2 : 1 db v
        """,
    "same_value_again": """
        x:
        x: db 1
        y equ 5
        y equ 2 + 3
        z equ 0xffffffffffffffff
        z equ -1
        a: db 0
        absolute 0
        .f: resb 1
        section .text
        absolute 0
        .f: resb 1
        section .text
        dd x, y, z, a.f
        """,
    # (an %rmacro that does not call itself: NASM 2.16.01 drops what follows
    # a call of one that does -- test_language.py)
    "more_directives": """
        %ifn 0
        db 1
        %endif
        %if 0
        %elifn 0
        db 2
        %endif
        %ifn 1
        db 3
        %elifn 1
        db 4
        %else
        db 5
        %endif
        %iassign count 5
        %iassign COUNT count + 1
        db Count
        %macro twice 1
        db %1, %1
        %endm
        twice 6
        %irmacro UP 2
        db %1, %2
        %endmacro
        Up 1, 3
        """,
    "functions": """
        %define N 3
        %define A "hi"
        %define T "A"
        %define FOO
        %macro mm 1
        db %str(%1), %eval(%1 * 2)
        %endmacro
        dq %eval(1 + 2), %eval(-5), %eval(0xffffffffffffffff), %abs(-5)
        db %eval(1 + 2, 3 * 4), %eval(N * 2), %EVAL(1), %eval (1)
        db %num(5), %num(255, 4, 16), %num(255, 0, 16), %num(10, 8, 2), %num(255, -1, 16)
        db %num(65536, 1, 16), %num(5, 3), %num(0), %num(0, 0), %num(12, 4, 10), %num(-5)
        db %str(abc), %str(a, b), %str( a  b ), %str("q"), %str(), %str(%eval(1 + 1))
        db %strlen("abc"), %strlen(abc), %strlen(A), %strlen(), %eval(%strlen("ab") * 2)
        db %strcat("a", 'b', `c`), %strcat(A, "x"), %strcat(a, 5), %strcat("it's", 'say "x"')
        db %tok('5'), %tok("1 + 2"), %tok(T), %tok(5)
        db %cond(1, 7, 8), %cond(0, 7, 8), %cond(N > 2, 1, 2), %cond(0, 7) 9
        db %sel(2, 5, 6, 7), %sel(1 + 1, 5, 6), %count(a b, c), %count(a), %count()
        db %isdef(FOO), %isdef(BAR), %isndef(BAR), %isnum(5), %isnum(x), %isid(abc)
        db %isstr("a"), %istoken(a), %isempty(), %isidn(a, a), %isidni(a, A), %isnidn(a, b)
        db %ismacro(mm), %ismacro(x), %isctx(foo), %is(0), %is(2), %isn(2), %isnstr(5)
        mm 3
        %if %isdef(Q) || %eval(N) != 3
        db 1
        %else
        db 2
        %endif
        %assign v %eval(5) + %abs(-2)
        db v
        """,
    "nested_calls": """
        %define A(x) (x+1)
        %define B A(A(1))
        %define C A(A(A(0)))
        %define D(y) A(A(y))
        db B, C, D(2), D(A(1))
        %defstr S1 A(A(1)) A(A(1))
        %xdefine X A(A(1))
        %defstr S2 X
        db S1, S2
        %define f(x) x
        %define g(y) f(y)
        %defstr S3 f(g(3)) g(f(2))
        %define Z f(g(3))
        db S3, Z
        %define sq(x) x*x
        %defstr S4 sq(sq(2))
        %xdefine Q sq(sq(2))
        db S4, Q
        %define a(x) 1+a(x)
        %defstr S5 a(a(3))
        %define Y a(3)
        %defstr S6 Y
        %xdefine W a(3)
        %defstr S7 W
        db S5, S6, S7
        %define p(x) [b(x)]
        %define b(x) (p(x))
        %define V p(3)
        %defstr S8 V p(4)
        db S8
        %define m(x) x
        %define k m
        %define q m(
        db k(3)
        db 1, q 4)
        %define MAX(x, y) ((x) > (y) ? (x) : (y))
        %define MAX3(x, y, z) MAX(MAX(x, y), z)
        db MAX3(1, 7, 3), %eval(MAX3(9, 2, 4))
        %define s(x) %str(s x)
        %define T(x) %str(x)
        db s(1), T(A(A(1)))
        """,
    "sect": """
        %defstr S0 __?SECT?__
        db S0, __?PASS?__, __PASS__
        x: section .data   align=8 ; the operands' spaces made one
        %defstr S1 __SECT__
        db S1
        [section .text]
        db 1
        struc pair
        .a: resb 1
        endstruc
        db 2
        [section .text]
        __?SECT?__
        db 3
        %macro string 1
        [section .rodata]
        %%s: db %1, 0
        __?SECT?__
        dd %%s
        %endmacro
        string 'hi'
        %define __SECT__ [section .other]
        __?SECT?__
        db 4
        segment .data
        %defstr S2 __?SECT?__
        db S2
        %define __LINE__ 77
        db __?LINE?__
        %undef __?BITS?__
        %ifndef __BITS__
        db 5
        %endif
        absolute $
        a: resb 4
        struc s
        .x: resb 2
        endstruc
        b: resb 1
        absolute 0x100
        %defstr S3 __?SECT?__
        section .data
        dd a, b, s.x
        db S3
        %use ifunc
        %ifdef __?USE_IFUNC?__
        db 6
        %endif
        z section .zz
        %defstr S4 __?SECT?__
        db S4
        dd z
        %define __?SECT?__ [absolute 5]
        struc t
        endstruc
        y: resb 1
        section .zz
        dd y
        """,
    "sectalign": """
        db 1
        section .a
        db 2
        sectalign 16
        section .b align=64
        sectalign 8
        db 3
        section .c
        sectalign off
        align 32, db 0xaa
        alignb 16
        db 4
        section .d
        SECTALIGN ON
        align 8, db 0xbb
        db 5
        section .e align=2
        [sectalign 1 << 5]
        db 6
        section .bss
        resb 1
        sectalign 128
        section .f
        sectalign $ - $$ + 4
        dd $$
        """,
    "packages": """
        %ifusable ifunc
        db 9
        %endif
        %use ifunc
        %use "IFUNC"
        PAGE_SIZE equ 4096
        PAGE_SHIFT equ ilog2e(PAGE_SIZE)
        dd PAGE_SHIFT, 1 << ilog2c(3000), __?ilog2f?__(-1), __ilog2c__(0)
        db ilog2(8), ILOG2E(8), ilog2f(6), ilog2c(6), ilog2w(16), ilog2f(0), ilog2c(1)
        %if ilog2e(64) == 6
        db 1
        %endif
        %ifusing ifunc
        db 3
        %endif
        %ifusable smartalign
        db 5
        %endif
        %ifnusing smartalign
        db 6
        %endif
        db %isusing(ifunc), %isusable(smartalign), %isnusing(IFUNC), %isusing(altreg)
        %ifnusing altreg
        db 4
        %endif
        """,
    "unset_items": """
        struc s
        .a: dd ?
        .b: db ?, ?
        .c dw ?
        endstruc
        absolute 0x100
        p1: dd ?
        p2: db ?
        section .bss
        x: dd ?
        y: db ?, ?
        times 3 dw ?
        z:
        section .text
        dd s_size, s.b, s.c, p1, p2, y - x, z - x
        """,
    "call_labels": """
        %macro named 0
        %ifnempty %00
        %00: db 5
        %else
        db 6
        %endif
        %endmacro
        %macro plain 1
        db %1
        %endmacro
        %macro pair 1
        %00 equ %1
        %endmacro
        named
        first: named
        second named
        third: plain 7
        fourth plain 8
        five pair 5
        dd first, second, third, fourth, five
        """,
    "param_ranges": """
        %macro r 1-*.nolist
        db %{1:3}, %{3:1}, %{2:-1}, %{-1:-3}, %{2:2}, %{1:-1}
        %endmacro
        r 1, 2, 3, 4
        r {5, 6}, 7, 8
        %macro s 1+.nolist
        %defstr t %{1:1}
        db t
        %endmacro
        s 9, 10
        """,
    "indirect": """
        %assign i 3
        %define name%[i] 9
        %define A B
        %define B 7
        %define W 5
        %define P %[W]
        %undef W
        %define W 6
        db name3, %[A], P
        %assign j 1
        %rep 3
        %xdefine r%[j] j * 2
        %define q%[j] j * 2
        %assign j j + 1
        %endrep
        db r1, r2, r3, q1, q3
        %macro v 1
        %define v%[%1] %1 + 1
        db v%1
        %endmacro
        v 4
        """,
    "structures": """
        struc proc, 4
            .pid:    resd 1
            .name:   resb 5
                     alignb 4
            .state   resd 1
            .label:
            .kids:   resw 3
            .tail    resq 1
        endstruc
        struc point
            x_of: resd 1
            .more: resb 3
            y_of: resd 1
        endstruc
        tbl: istruc proc
            at proc.pid, dd 7
            at proc.name, db "ab"
            at proc.kids, dw 1, 2
        iend
        pt: istruc point
            at y_of, dd 0x11223344
        iend
        empty: istruc point
        iend
        dd proc, proc.pid, proc.name, proc.state, proc.label, proc.kids, proc.tail
        dd proc_size, point, x_of, x_of.more, y_of, point_size
        dd tbl, pt, empty, $ - tbl
        .after: dd .after, tbl + proc.kids - proc
        """,
    "section symbols": """
        org 0x1000
        db 1, 2, 3
        dd section..text.start, section..text.vstart, -start, 5 - start
        start: dd section..data.start, section..data.vstart, section.user.start
        dd section.user.vstart, section..bss.start, section..bss.vstart
        dd section..data.vstart + 4, here - section..data.vstart
        dd __?ilog2f?__(0), __?ilog2c?__(0), __?ilog2c?__(5), __?ilog2f?__(5)
        section .data
        db 4, 5
        here: dw section..data.vstart - here
        section user start=0x3000 vstart=0x8000
        db 7
        u: db 8
        dd u - section.user.vstart, -u
        section .bss
        resb 10
        """,
}


@pytest.mark.parametrize("name", list(DATA))
def test_data_assembles_to_nasms_bytes(name, tmp_path):
    source = "bits 32\n" + textwrap.dedent(DATA[name])
    src = tmp_path / f"{name}.s"
    src.write_text(source)
    done = nasm(src, tmp_path / "out.bin")
    assert (done.returncode, done.stderr) == (0, "")
    assert blob(assemble(source, str(src))) == (tmp_path / "out.bin").read_bytes()


def test_incbin_and_the_wide_reservations_assemble_to_nasms_bytes(tmp_path):
    # incbin's skip and count at and past the file's end, times, labels,
    # sections; rest/reso/resy/resz in .bss, a struc and absolute.  NASM
    # runs where the files are (it looks there, and in no -i directory
    # after times); emu finds them next to the program.
    (tmp_path / "b.bin").write_bytes(bytes(range(200)))
    (tmp_path / "e.bin").write_bytes(b"")
    source = textwrap.dedent("""\
        bits 32
        org 0x7c00
        N equ 3
        start: incbin "b.bin"
        incbin "b.bin", 199
        incbin "b.bin", 200
        incbin 'b.bin', 250, 4
        incbin `b.bin`, N * 10, N
        incbin "b.bin", 0, 0
        incbin "e.bin"
        incbin "e.bin", 5, 5
        times 3 incbin "b.bin", 190, 4
        .in: incbin "b.bin", 100, 1
        dd .in, $ - start
        section .data align=16
        d: incbin "b.bin", 10, 7
        section .bss
        r1: rest 3
        r2: reso 1
        r3: resy 2
        r4: resz 1
        section .text
        struc wide
        .a: rest 1
        .b: reso 1
        .c: resz 2
        endstruc
        absolute 0x100
        a1: resy 1
        a2: rest 1
        section .text
        dd d, r1, r2, r3, r4, wide_size, wide.b, wide.c, a1, a2
        """)
    src = tmp_path / "p.s"
    src.write_text(source)
    out = tmp_path / "out.bin"
    done = subprocess.run([shutil.which("nasm"), "-f", "bin", "-o", str(out), str(src)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")
    assert blob(assemble(source, str(src))) == out.read_bytes()


@pytest.mark.parametrize("control", [
    "", "[warning -user]", "[warning -user]\n[warning +user]", "[warning -all]",
    "[warning push]\n[warning -user]\n%warning inside\n[warning pop]",
    "[warning -w-user]", "[warning *user]", "[warning -nosuch]", "[warning -error=user]",
    "[warning error=user]", "[warning +error=user]", "[warning error]", "[warning pop]",
    "%pragma list options\n%pragma limit passes 5\n[warning -user]\n[warning *all]",
])
def test_warning_control_is_nasms(control, tmp_path):
    # [warning ...] on %warning: said, silenced or an error, as NASM has it
    source = f"bits 32\n_start: db 1\n{control}\n%warning last\ndb 2\n"
    src = tmp_path / "w.s"
    src.write_text(source)
    done = nasm(src, tmp_path / "out.bin")
    theirs = (done.returncode != 0, [line.split(": warning: ")[1].removesuffix(" [-w+user]")
                                     for line in done.stderr.splitlines()
                                     if ": warning: " in line and "[-w+user]" in line])
    try:
        ours = (False, [w.message.removeprefix("%warning: ")
                        for w in assemble(source, str(src)).warnings])
    except AsmError as e:
        assert e.message == "%warning: last"
        ours = (True, [])
    assert ours == (theirs[0], [] if theirs[0] else theirs[1])


MESSAGES = ['"a" X', 'X "a"', "`tab\\there`", "  X  ", '"X"', "X ; comment", '"a", "b"',
            "X + X", "'quoted'", "Y(2)"]


@pytest.mark.parametrize("directive", ["warning", "error"])
def test_warning_and_error_messages_are_nasms(directive, tmp_path):
    # single-line macros expanded, one string alone unquoted: NASM's words
    lines = [f"%{directive} {m}" for m in MESSAGES]
    source = "bits 32\n%define X 5\n%define Y(a) a*a\n_start: db 1\n" + "\n".join(lines) + "\n"
    src = tmp_path / "m.s"
    src.write_text(source)
    done = nasm(src, tmp_path / "out.bin")
    theirs = [line.split(f": {directive}: ", 1)[1].removesuffix(" [-w+user]")
              for line in done.stderr.splitlines()]
    if directive == "error":
        ours = []
        for line in lines:
            with pytest.raises(AsmError) as info:
                assemble(f"%define X 5\n%define Y(a) a*a\n{line}\n")
            ours.append(info.value.message.removeprefix("%error: "))
    else:
        ours = [w.message.removeprefix("%warning: ")
                for w in assemble(source, str(src)).warnings]
    assert ours == theirs


# One text of each row of the ISA table (a memory operand sized, but where
# NASM takes no size: the descriptor tables' and invlpg's).
_ROW_OPERAND = {"r": "eax", "b": "al", "m": "dword [ebx]", "mb": "byte [ebx]", "i": "dword 5",
                "i8": "1", "i16": "8", "rel": "$", "c": "cr0", "dx": "dx", "cl": "cl",
                "al": "al", "w": "ax"}
_UNSIZED = ("lidt", "lgdt", "invlpg")


def _row_text(row) -> str:
    ops = [_ROW_OPERAND.get(k, k) for k in row.operands]
    if row.mnemonic in _UNSIZED:
        ops = [o.replace("dword ", "") for o in ops]
    return f"{row.mnemonic} {', '.join(ops)}".strip()


@pytest.mark.parametrize("level", ["386", "486", "586", "pentium", "686", "p2", "p3", "p4",
                                   "x64", "x86-64", "ia64", "nehalem", "default", "all"])
def test_cpu_levels_refuse_what_nasm_refuses(level, tmp_path):
    # `cpu LEVEL`: every row of the ISA table, the ones NASM refuses at that
    # level refused here, the others taken (486: xadd, bswap, invlpg; 586:
    # cmpxchg; 686: cmovcc)
    texts = [_row_text(row) for row in isa.TABLE]
    src = tmp_path / "cpu.s"
    src.write_text(f"bits 32\ncpu {level}\n" + "\n".join(texts) + "\n")
    done = nasm(src, tmp_path / "out.bin")
    refused = {int(line.split(":")[1]) - 3 for line in done.stderr.splitlines()
               if ": error: " in line}
    ours = set()
    for i, text in enumerate(texts):
        try:
            assemble(f"bits 32\ncpu {level}\n{text}\n")
        except AsmError as e:
            assert "cpu" in e.message, (text, e.message)
            ours.add(i)
    assert {texts[i] for i in ours} == {texts[i] for i in refused}
    assert len(refused) == {"386": 38, "486": 34, "586": 32, "pentium": 32}.get(level, 0)


# --- the string prefixes: each spelling means what NASM encodes -----------------------

# x86's bytes of the rows (Intel SDM vol. 2): F3 is rep/repe, F2 repne.
X86_STRING = {"movsb": "a4", "movsd": "a5", "stosb": "aa", "stosd": "ab", "cmpsb": "a6",
              "cmpsd": "a7", "scasb": "ae", "scasd": "af"}
X86_PREFIX = {"rep": "f3", "repe": "f3", "repne": "f2"}
X86_LOOP = {"loope": "e1", "loopne": "e0", "loop": "e2"}
SPELLINGS = ([f"{p} {s}" for p in ("rep", "repe", "repz", "repne", "repnz")
              for s in ("cmpsb", "cmpsd", "scasb", "scasd")]
             + [f"{p} {s}" for p in ("rep", "repe", "repz") for s in ("movsb", "stosd")]
             + ["cmpsb", "scasd", "loope x", "loopz x", "loopne x", "loopnz x"])


def _x86_of_row(mnemonic: str) -> str:
    prefix, _, name = mnemonic.rpartition(" ")
    if name in X86_LOOP:
        return X86_LOOP[name] + "fe"             # rel8 -2: to itself
    return X86_PREFIX.get(prefix, "") + X86_STRING[name]


def test_string_prefixes_and_loops_mean_what_nasm_encodes(tmp_path):
    # Each spelling emu accepts makes the row whose x86 bytes NASM writes
    # for it (rep on cmps is repe, repnz is repne, loopz is loope ...).
    for text in SPELLINGS:
        src = tmp_path / "one.s"
        src.write_text(f"bits 32\nx: {text}\n")
        done = nasm(src, tmp_path / "one.bin")
        assert (done.returncode, done.stdout + done.stderr) == (0, ""), text
        code = assemble(f"x: {text}").segments[0][1]
        row = isa.decode(code.__getitem__, 0).insn
        assert _x86_of_row(row.mnemonic) == (tmp_path / "one.bin").read_bytes().hex(), text


# --- NASM-style programs run -------------------------------------------------------

NASM_PROGRAMS = sorted(p.stem for p in NASM_DIR.glob("*.s"))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", NASM_PROGRAMS)
def test_nasm_style_programs_run_in_every_mode(name, mode):
    image = assemble_file(NASM_DIR / f"{name}.s", include_dirs=[NASM_DIR])
    r = System(image, Config(mode=mode, mem_mib=1)).run()
    status = NASM_DIR / "expected" / f"{name}.status"
    assert (r.outcome, r.exit_status) == (
        "poweroff", int(status.read_text()) if status.exists() else 0), r.message
    assert r.console == (NASM_DIR / "expected" / f"{name}.txt").read_text()


def test_the_example_of_the_language_reference_runs_and_nasm_accepts_it(tmp_path):
    doc = (ROOT / "docs" / "language.md").read_text()
    source = doc.split("```nasm\n", 1)[1].split("```", 1)[0]
    src = tmp_path / "hello.s"
    src.write_text(source)
    done = nasm(src, tmp_path / "out.bin")
    assert (done.returncode, done.stderr) == (0, "")
    for mode in MODES:
        r = System(assemble_file(src), Config(mode=mode, mem_mib=1)).run()
        assert (r.outcome, r.exit_status, r.console) == ("poweroff", 0, "hello\n")


# --- the bit scans, double shifts, rotates through CF ... : NASM's meaning --------------

# Each spelling as NASM assembles it and ndisasm (NASM's disassembler) reads
# those x86 bytes back, against emu's row for it read back by emu's
# disassembler: the same instruction, operands and sizes.
X86_SPELLINGS = [
    "bsf eax, ebx", "bsf ecx, [esi + 8]", "bsr edi, dword [eax]", "bsr ebp, esp",
    "cbw", "cwde", "int3", "int 3", "pause",
    "shld eax, ebx, 3", "shld [eax], ecx, cl", "shld dword [eax], ecx, 31",
    "shrd edx, esi, cl", "shrd [ebx + esi*4 - 4], eax, 1", "shrd ecx, ecx, 0",
    "rcl eax, 1", "rcl eax, 5", "rcl eax, cl", "rcl dword [eax], 1", "rcl byte [eax], cl",
    "rcl al, 7", "rcl dl, 1", "rcr bh, cl", "rcr byte [0x1234], 9", "rcr dword [eax], 200",
    "rcr esi, cl", "rcr byte [ecx + 2], 1", "rcr edi, 33",
    # immediates at NASM's bounds (it warns past them)
    "mov al, -256", "add bl, -200", "cmp byte [eax], -129", "test dh, 255", "ret -65536",
    "enter 65535, 255", "shl eax, 255", "int 255",
    # values read as 64 bits (0xffffffffffffffff is -1), as NASM's
    "mov eax, 0xffffffffffffffff", "add byte [ebx], 0xffffffffffffff80",
    "mov ecx, [eax + 0xffffffffffffffff]",
]


def _canonical(text: str) -> str:
    """An instruction's text with spacing, number bases and redundant sizes
    (dword, NASM's 'byte' before an imm8) made alike."""
    t = re.sub(r"byte (?=[0-9])", "", text.lower().replace("dword ", ""))
    return re.sub(r"0x[0-9a-f]+|\d+", lambda m: str(int(m.group(0), 0)), t.replace(" ", ""))


def test_new_instructions_mean_what_nasm_encodes(tmp_path):
    src = tmp_path / "x86.s"
    src.write_text("bits 32\n" + "\n".join(X86_SPELLINGS) + "\n")
    done = nasm(src, tmp_path / "x86.bin")
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    ndisasm = shutil.which("ndisasm")
    assert ndisasm is not None, "ndisasm (NASM's) is not installed"
    listing = subprocess.run([ndisasm, "-b", "32", str(tmp_path / "x86.bin")],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    theirs = [line.split(None, 2)[2] for line in listing.splitlines()]
    code = assemble("\n".join(X86_SPELLINGS)).segments[0][1]
    ours, at = [], 0
    while at < len(code):
        d = isa.decode(code.__getitem__, at)
        ours.append(isa.format_insn(d, at))
        at += d.length
    assert len(theirs) == len(ours) == len(X86_SPELLINGS)
    for spelling, mine, nasms in zip(X86_SPELLINGS, ours, theirs, strict=True):
        assert _canonical(mine) == _canonical(nasms), (spelling, mine, nasms)


# --- the string and token directives, on random lines ---------------------------------

TOKENS = ["5", "-5", "+ 7", "0x1f", "1fh", "$12", "abc", ".x", "$x", "$", "$$", "'s'",
          '"t"', "[eax]", "a b", "", "1 + 2", "- -3", "_q", "@w", "?z"]
BACKQUOTED = ["\\n", "\\t", "\\x41", "\\101", "\\\\", "\\'", '\\"', "\\`", "\\e", "\\u00e9",
              "a", "b", " ", ","]
DEFTOKS = [r"`'ab'`", r"""'"x y"'""", r"`\`a\\n\``", r"'0x41'", r'"12"', r"`\`\\u00e9\``",
           r"`'\xff'`", r"`\`\u00e9\x80\``", r"`'\x7f'`"]
TEXTS = ["eax", "EAX", "[eax+1]", "[ eax + 1 ]", "'a,b'", "x y", "xy", "1", '"a,b"', "`A,b`",
         "`a\\x2cb`", "'a\\n'", "`a\\n`", "a,b", "'eax'", r"`a\`,b`", r"'a`,b'"]


def _random_directive(rng) -> str:
    """One line (or %if block) that defines V as a string."""
    def string():
        q = rng.choice("'\"`")
        if q == "`":                        # (escapes: NASM's values, quotes inside)
            return q + "".join(rng.choice(BACKQUOTED) for _ in range(rng.randint(0, 5))) + q
        return q + "".join(rng.choice("abxyz 12") for _ in range(rng.randint(0, 6))) + q
    kind = rng.randrange(7)
    if kind == 6:                           # a string's text read as tokens
        return f"%deftok V {rng.choice(DEFTOKS)}"
    if kind == 0:
        return (f"%substr V {string()} {rng.randint(-3, 8)}"
                + (f", {rng.randint(-8, 8)}" if rng.random() < 0.7 else ""))
    if kind == 1:
        return "%strcat V " + ", ".join(string() for _ in range(rng.randint(1, 4)))
    if kind == 2:
        return f"%strlen V {string()}"
    if kind == 5:
        return "%defstr V " + "".join(rng.choice("ab 1+x") for _ in range(rng.randint(0, 8)))
    if kind == 3:
        test = rng.choice(["num", "id", "str", "token", "empty"])
        head = f"%if{rng.choice(['', 'n'])}{test} {rng.choice(TOKENS)}"
    else:
        head = (f"%if{rng.choice(['', 'n'])}idn{rng.choice(['', 'i'])} "
                f"{rng.choice(TEXTS)}, {rng.choice(TEXTS)}")
    return f"{head}\n%define V 'Y'\n%else\n%define V 'N'\n%endif"


def test_string_and_token_directives_agree_with_nasm_on_random_lines(tmp_path):
    # NASM is the model: each random line assembles to NASM's bytes (lines
    # NASM warns about or refuses are not compared; most are taken).
    import random
    rng = random.Random(2026)
    src, out = tmp_path / "p.s", tmp_path / "p.bin"
    compared = 0
    for _ in range(150):
        source = f"bits 32\n{_random_directive(rng)}\ndb V, 0\n"
        src.write_text(source)
        done = nasm(src, out)
        if done.returncode or done.stderr:
            continue
        compared += 1
        assert blob(assemble(source, str(src))) == out.read_bytes(), source
    assert compared >= 100


# --- data programs at random: layouts, expressions, numbers ---------------------------

def test_random_data_programs_assemble_to_nasms_bytes():
    # 300 programs of tests/nasmgen.py (seeded): each NASM assembles without
    # a word gives NASM's bytes here, or one of the documented refusals
    # ("stricter here").  `python tests/nasmgen.py --programs N --seed S`
    # runs more.  A shift by 64 or more, a comparison whose difference
    # wraps, `$` inside an absolute section, `dd -3000000000`: each was a
    # difference it found.
    import nasmgen
    counts, reports = nasmgen.compare(seed=2026, programs=300)
    assert reports == []
    assert counts["same bytes"] >= 120, counts


def test_random_memory_operands_mean_nasms_addresses():
    # 2,000 random memory operands (lea r32, [...]): for each that NASM
    # takes without a word, the address it encodes (read back by ndisasm)
    # is the one encoded here -- NASM's algebra of registers included
    # ([eax*5] is [eax + eax*4], [eax*4 - eax] is [eax + eax*2]).
    import nasmgen
    counts, reports = nasmgen.compare_addresses(seed=2026, lines=2000)
    assert reports == []
    assert counts["same address"] >= 1200, counts


def test_random_instructions_mean_what_nasm_encodes():
    # 2,000 random instructions, a row of the ISA table each with random
    # operands (registers, memory operands of any spelling, immediates at
    # their bounds): for each NASM takes without a word, the mnemonic,
    # registers, addresses and immediates NASM encodes (read back by
    # ndisasm) are the ones encoded here.
    import nasmgen
    counts, reports = nasmgen.compare_instructions(seed=2026, lines=2000)
    assert reports == []
    assert counts["same meaning"] >= 1400, counts
