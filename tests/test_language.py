"""The NASM subset: what is refused and how, the preprocessor's limits, the
program's entry point.  Every message is checked with its exact text,
line and column (what NASM accepts is checked against NASM in test_nasm)."""

from __future__ import annotations

import textwrap

import pytest

from emu.asm import assemble, assemble_file, preproc, smacros
from emu.cli import main
from emu.errors import AsmError


def error(source: str, **kw) -> AsmError:
    with pytest.raises(AsmError) as info:
        assemble(textwrap.dedent(source), "t.s", **kw)
    return info.value


ERRORS = [
    # --- outside the subset: refused by name ---
    ("%pragma preproc sane_empty_expansion true", "'%pragma preproc' is not supported (it "
     "changes what is assembled; see docs/language.md)", 1, 1),
    ("%line 5 x.s", "'%line' is not supported (see the language reference, "
     "docs/language.md)", 1, 1),
    ("warning -user", "'warning' is not supported (NASM takes it in brackets: "
     "[warning -user]; see docs/language.md)", 1, 1),
    ("default foo", "expected rel, abs, bnd or nobnd after 'default'", 1, 9),
    ("[warning error=user]\n%warning stop", "%warning: stop", 2, 1),
    ("%frob", "unknown preprocessor directive '%frob'", 1, 1),
    ("absolute 0x100\nmov eax, 1", "only labels, resb ... resz and alignb can "
     "follow 'absolute', not 'mov' (it places nothing: a 'section' line goes back to code "
     "and data)", 2, 1),
    ("absolute", "expected an address after 'absolute', found end of line", 1, 9),
    ("x: absolute 5", "'absolute' must begin its line", 1, 4),
    ("absolute 0\nendstruc", "'endstruc' without 'struc'", 2, 1),
    ("%rotate 1", "%rotate outside a macro", 1, 1),
    ("%macro m 0\n%rotate 1\n%endmacro\nm", "%rotate in a macro called without "
     "parameters (in macro 'm' called at t.s:4)", 2, 1),
    ("_start: dd 1\nsection .data\nx: dd 1\nsection .text\nabsolute x\ny equ $$\n"
     "section .text\ndd y", "'$$' inside an absolute section that starts in another "
     "section is not supported", 6, 7),
    ("extern foo", "'extern' is not supported (a flat binary links nothing; see "
     "docs/language.md)", 1, 1),
    ("incbin \"x.bin\"", "incbin file 'x.bin' not found (searched: .)", 1, 8),
    ("incbin", "expected a file name in quotes after incbin, found end of line", 1, 7),
    ("incbin x.bin", "expected a file name in quotes after incbin, found 'x.bin'", 1, 8),
    ("incbin \"x.bin\", -1", "incbin's skip must not be negative, not -1", 1, 17),
    ("incbin \"x.bin\", 0, 2 - 3", "incbin's count must not be negative, not -1", 1, 20),
    ("incbin \"x.bin\", 1, 2, 3", "expected end of line (incbin takes a file name, a skip "
     "and a count), found ','", 1, 21),
    ("l: nop\nincbin \"x.bin\", l", "incbin's skip must be a number known before assembly: "
     "'l' is a label (an address)", 2, 17),
    ("incbin \"x.bin\", n\nn equ 1", "incbin's skip must be known before assembly: 'n' is "
     "not defined above this line (%define, %assign or equ)", 1, 17),
    ("do 1", "'do' is not supported (16-byte data; see docs/language.md)", 1, 1),
    ("db %hex(5)", "'%hex()' is not supported (NASM's preprocessor functions here are "
     "%eval, %abs, %num, %str, %strlen, %strcat, %substr, %tok, %cond, %sel, %count and "
     "%is...; see docs/language.md)", 1, 4),
    ("db %substr('abc')", "%substr() takes 2 to 3 arguments, not 1", 1, 4),
    ("db %eval()", "%eval() needs a value", 1, 4),
    ("db %eval(1, x)", "%eval() must be known before assembly: 'x' is not defined above "
     "this line (%define, %assign or equ)", 1, 4),
    ("db %sel(3, 1, 2)", "%sel(3) exceeds the number of arguments (2)", 1, 4),
    ("db %num(5, 2, 37)", "invalid base 37 given to %num() (2 to 36)", 1, 4),
    ("db %cond(1)", "%cond() takes 2 to 3 arguments, not 1", 1, 4),
    ("%macro m 1-*\ndb %{2:3}\n%endmacro\nm 1, 2", "'%{2:3}': macro parameters out of "
     "range (the call has 2) (in macro 'm' called at t.s:4)", 2, 4),
    ("%macro m 0\ndb 1\n%endmacro\npush m", "undefined symbol 'm'", 4, 6),
    ("db %[X", "'%[' without its ']'", 1, 4),
    ("mov eax, [byte ebx + 1000]", "value 1000 out of range for a byte displacement "
     "(-128..127)", 1, 10),
    ("retf", "'retf' is not supported (far returns: there are no segments; see "
     "docs/language.md)", 1, 1),
    ("strict: nop", "'strict' is a reserved word, not a symbol name", 1, 1),
    ("%macro m 1\ndb %1\nm %1\n%endmacro\nm 1", "unknown mnemonic 'm' (in macro 'm' "
     "called at t.s:5)", 3, 1),
    ("%if 0\n%ifenv X\n%endif\n%endif", "'%ifenv' is not supported (the conditionals are "
     "%if, %ifdef, %ifidn, %ifidni, %ifid, %ifnum, %ifstr, %iftoken, %ifempty, %ifmacro, "
     "%ifctx, %ifusing and %ifusable, each with its %ifn form, their %elif forms, %else and "
     "%endif)", 2, 1),
    ("cpu 486\ncmove eax, ebx", "'cmove' needs cpu 686 or later (no instruction for this "
     "cpu level, as NASM says)", 2, 1),
    ("[cpu 386]\nbswap eax", "'bswap' needs cpu 486 or later (no instruction for this cpu "
     "level, as NASM says)", 2, 1),
    ("cpu 286", "'cpu 286' is not supported (the machine runs 32-bit code: 386 or later)", 1, 1),
    ("cpu z80", "unknown CPU level 'z80' (386, 486, 586, 686, p2, p3, p4, x64 ...)", 1, 1),
    ("db __?ilog2e?__(6)", "ilog2 argument is not a power of two", 1, 4),
    ("db __?ilog2e?__(0)", "ilog2 argument is not a power of two", 1, 4),
    ("dd 5 - u\nsection .data\nu: db 0", "value is neither a number nor an address plus a "
     "number: it subtracts an address of another section from a number", 1, 4),
    ("mov eax, [ebx - u]\nsection .data\nu: db 0", "value is neither a number nor an "
     "address plus a number: it subtracts an address of another section from a number", 1, 10),
    ("dd section.user.start - u\nsection user vstart=0x9000\nu: db 0", "value is neither a "
     "number nor an address plus a number: it subtracts an address of another section from "
     "a number", 1, 4),
    ("%use ifunc\ndb ilog2w(6)", "ilog2 argument is not a power of two", 2, 5),
    ("x: dd __?ilog2f?__(x)", "ilog2 needs numbers, not addresses: '$' and labels are "
     "addresses, '$ - $$' and 'label - $$' are numbers", 1, 7),
    ("%use altreg", "'%use altreg' is not supported (64-bit register names)", 1, 1),
    ("sectalign 3", "sectalign 3 is not a power of two", 1, 11),
    ("sectalign", "expected a boundary, 'on' or 'off' after 'sectalign', found end of line",
     1, 10),
    ("sectalign n\nn equ 8", "a section alignment must be known in pass 1, but 'n' is not "
     "defined above this line", 1, 11),
    ("sectalign 8, 4", "expected end of line, found ','", 1, 12),
    ("struc s\nsectalign 8\nendstruc", "only labels, resb ... resz and alignb can be inside "
     "struc 's', not 'sectalign' (its fields are offsets: the bytes go in an istruc)", 2, 1),
    ("%use smartalign", "'%use smartalign' is not supported (its align pads with long nops, "
     "0F 1F and 66 90, which this machine does not have)", 1, 1),
    ("%use fancy", "unknown %use package 'fancy' (ifunc)", 1, 1),
    ("%use", "%use needs a package name", 1, 5),
    ("%use ifunc extra", "%use takes one package name, not 'ifunc extra'", 1, 6),
    ("%use 'ifunc", "%use takes one package name, not ''ifunc'", 1, 6),
    ("%ifusing a b\n%endif", "%ifusing takes one package name, not 'a b'", 1, 10),
    ("dd 3 <=> 5", "'<=>' is not supported (NASM 2.16.01 computes it wrongly: 3 <=> 5 is "
     "not -1 there)", 1, 6),
    ("dd 1 ? 2", "expected ':' after the value of '?', found end of line", 1, 9),
    ("dd 1 ? 2 : 1 / 0", "division by zero", 1, 14),
    ("x: dd x ? 1 : 2", "'?' needs numbers, not addresses: '$' and labels are addresses, "
     "'$ - $$' and 'label - $$' are numbers", 1, 9),
    ("dd ? 1 : 2", "'?' is not supported in expressions ('?' follows a value, as in "
     "'A ? B : C')", 1, 4),
    ('dw __utf16__("a")', "'__utf16__' is not supported in expressions (NASM's string "
     "functions)", 1, 4),
    ("bits 16", "'bits 16' is not supported (the machine runs 32-bit code: write "
     "'bits 32')", 1, 1),
    ("db 1.5", "floating-point constants are not supported ('1.')", 1, 4),
    ("dd 1e5", "floating-point constants are not supported ('1e5')", 1, 4),
    ("dt 0", "'dt' is not supported (10-byte floats; see docs/language.md)", 1, 1),
    ("section x valign=4", "section attribute 'valign' is not supported (start=, vstart=, "
     "align=, follows=, progbits, nobits)", 1, 11),
    ("dd seg x", "'seg' is not supported in expressions (a flat binary has no segments)",
     1, 4),
    ("..start: nop", "'..start' is not supported (names that start with '..' are special "
     "symbols of other output formats)", 1, 1),
    ('include "x.inc"', "'include' is not supported: write '%include'", 1, 1),
    # prefixes: refused by name, never read as a label without its colon
    ("repne movsb", "'repne movsb' is not supported (x86 leaves the F2 prefix undefined on "
     "movs and stos: write 'rep movsb')", 1, 1),
    ("x: repnz stosd", "'repnz stosd' is not supported (x86 leaves the F2 prefix undefined "
     "on movs and stos: write 'rep stosd')", 1, 4),
    ("repne lodsb", "expected scasb, scasd, cmpsb or cmpsd after 'repne', found 'lodsb'",
     1, 7),
    ("repe add eax, 1", "expected movsd, stosd, movsb, stosb, scasb, scasd, cmpsb or cmpsd "
     "after 'repe', found 'add'", 1, 6),
    ("repz", "expected movsd, stosd, movsb, stosb, scasb, scasd, cmpsb or cmpsd after "
     "'repz', found end of line", 1, 5),
    ("scasd eax", "no form of 'scasd' takes (r32); forms: scasd", 1, 1),
    ("rep cmpsb [esi], [edi]", "no form of 'repe cmpsb' takes (m, m); forms: repe cmpsb",
     1, 1),
    ("cwd", "'cwd' is not supported (16-bit operands: it writes dx; cdq sign-extends eax "
     "into edx; see docs/language.md)", 1, 1),
    ("lock add eax, ebx", "'lock' is not supported (the LOCK prefix: one CPU, no bus to "
     "lock; see docs/language.md)", 1, 1),
    ("o16 mov eax, ebx", "'o16' is not supported (operand-size prefixes; see "
     "docs/language.md)", 1, 1),
    ("a32 mov eax, [ebx]", "'a32' is not supported (address-size prefixes; see "
     "docs/language.md)", 1, 1),
    ("repe nop", "expected movsd, stosd, movsb, stosb, scasb, scasd, cmpsb or cmpsd after "
     "'repe', found 'nop'", 1, 6),
    ("%macro m 1\n%!x\n%endmacro\nm 1", "'%!' is not supported in macros (parameters are "
     "%1 .. %N, %{A:B}, %+N, %-N, %0, %00, %?, %?? and %%label) (in macro 'm' called at "
     "t.s:4)", 2, 1),
    ("%deftok T `a\\nb`", "%deftok T: the string holds a control character", 1, 8),
    ("%macro m 1\nj%-1 $\n%endmacro\nm eax", "'%-1' needs a condition code (e, ne, a, "
     "be ...), not 'eax' (in macro 'm' called at t.s:4)", 2, 2),
    ("%push a\n%pop b", "%pop b: the context on top is 'a'", 2, 5),
    ("%pop", "%pop: the context stack is empty", 1, 5),
    ("db %$x", "'%$x': the context stack is empty (%push makes one)", 1, 4),
    ("%push a\ndb %$$x", "'%$$x': the context stack is only 1 deep", 2, 4),
    ("%ifctx\n%endif", "%ifctx needs context names", 1, 7),
    ("%arg a:dword", "%arg needs '%stacksize flat' before it (NASM's offsets without it "
     "depend on its passes)", 1, 5),
    ("%stacksize small", "%stacksize small is not supported (only flat: the machine runs "
     "32-bit code)", 1, 11),
    ("%stacksize flat\n%arg a", "%arg takes NAME:SIZE items, SIZE one of byte, word, "
     "dword, qword (not 'a')", 2, 5),
    ("%stacksize flat\n%local x:dword", "%local needs a context (%push) for its "
     "%$localsize", 2, 7),
    ("%stacksize flat\n%push f\n%local x:dword", "%local adds to %$localsize: write "
     "'%assign %$localsize 0' first", 3, 7),
    # --- the preprocessor ---
    ("%if 1\ndb 1", "%if without %endif", 1, 1),
    ("%endif", "%endif without %if", 1, 1),
    ("%if 1\n%else\n%else\n%endif", "%else after %else", 3, 1),
    ("%macro m 1\ndb %1", "%macro without %endmacro", 1, 1),
    ("%endrep", "%endrep without %rep", 1, 1),
    ("%exitrep", "%exitrep outside %rep", 1, 1),
    ("%rep -1\n%endrep", "%rep count -1 is negative", 1, 5),
    ("%rep 200001\n%endrep", "%rep count 200,001 too large (limit 200,000)", 1, 5),
    ("%macro m 1\ndb %1\n%endmacro\nm 1, 2", "macro 'm' takes 1 parameters, not 2", 4, 1),
    ("%macro m 1-2\n%endmacro\nm", "macro 'm' takes 1-2 parameters, not 0", 3, 1),
    ("%define F(a) a\ndb F(1, 2)", "'F' takes 1 arguments, not 2", 2, 4),
    ("db %1", "'%1' can only be used inside a %macro", 1, 4),
    ("x: db %%a", "'%%a' can only be used inside a %macro", 1, 7),
    ('%error "stop here"', "%error: stop here", 1, 1),
    ("%if X\n%endif", "%if must be known before assembly: 'X' is not defined above this "
     "line (%define, %assign or equ)", 1, 5),
    ("L: db 0\n%if L\n%endif", "%if must be a number known before assembly: 'L' is a "
     "label (an address)", 2, 5),
    ("%if $\n%endif", "'$' has no value in %if: the preprocessor runs before any address "
     "is known", 1, 1),
    ("%assign", "%assign needs a macro name", 1, 8),
    ("%ifdef\n%endif", "%ifdef needs one macro name", 1, 7),
    ("%macro m x\n%endmacro", "bad parameter count 'x' (write N, N-M or N-*)", 1, 7),
    ("%include", "expected a file name in quotes after include, found end of line", 1, 9),
    ("%macro a 0\n b\n%endmacro\n%macro b 0\n db 1, x\n%endmacro\na",
     "undefined symbol 'x' (in macro 'b' called at t.s:2, in macro 'a' called at t.s:7)",
     5, 8),
    ("%macro m 0\nm\n%endmacro\nm", "unknown mnemonic 'm' (a label needs a ':' after its "
     "name) (in macro 'm' called at t.s:4)", 2, 1),
    ("%rmacro m 0\nm\n%endmacro\nm", "macros nested too deeply (limit 64): does 'm' call "
     "itself without end? (in macro 'm' called at t.s:2, in macro 'm' called at t.s:2, in "
     "macro 'm' called at t.s:2, ... 60 more ..., in macro 'm' called at t.s:4)", 2, 1),
    ("%rep 2000\n%rep 2000\n%endrep\n%endrep", "more than 200,000 lines and %rep "
     "iterations made by macros and %rep (the limit) (in %rep iteration 100 of 2000 at "
     "t.s:1)", 2, 1),
    ("\n".join(["%define X0 1", *(f"%define X{i} X{i - 1} X{i - 1}" for i in range(1, 20)),
                "db X19"]), "line too long after macro expansion (limit 65,536 characters)",
     21, 4),
    # --- sections and org ---
    ("org 0x100\norg 0x200", "program origin redefined: a program has one org (0x100); "
     "place code elsewhere with 'section NAME start=ADDR'", 2, 1),
    ("section .bss\ndb 1", "code or data in the nobits section '.bss': only resb ... resz "
     "and alignb reserve space there", 2, 1),
    (f"section .bss\nincbin \"{__file__}\"", "code or data in the nobits section '.bss': only resb "
     "... resz and alignb reserve space there", 2, 1),
    ("section x start=5\nsection x start=6", "section 'x': start= redefined", 2, 17),
    ("section x start=0x1000 follows=.text", "start= and follows= cannot both be given",
     1, 9),
    ("section x follows=nowhere\ndb 1", "section 'x' follows unknown section 'nowhere' "
     "(or a nobits one)", 1, 1),
    ("section .text start=0x1000\norg 0x2000\ndb 1", "section '.text' starts at 0x1000, "
     "below the origin 0x2000", 2, 1),
    ("section a start=0x100\ndb 1, 2\nsection b start=0x101\ndb 3", "sections 'a' "
     "(0x100..0x101) and 'b' (0x101..0x101) overlap", 3, 1),
    ("section x frob", "unknown section attribute 'frob' (start=, vstart=, align=, "
     "follows=, progbits, nobits)", 1, 11),
    # --- numbers and addresses ---
    ("dd $ / 4", "'/' needs numbers, not addresses: '$' and labels are addresses, "
     "'$ - $$' and 'label - $$' are numbers", 1, 6),
    ("dd ~$", "'~' needs numbers, not addresses: '$' and labels are addresses, '$ - $$' "
     "and 'label - $$' are numbers", 1, 4),
    ("x: dd x * 2", "value is neither a number nor an address plus a number: it adds or "
     "multiplies addresses, or subtracts addresses of different sections", 1, 7),
    ("a: db 0\nsection y\nb: dd a - b", "value is neither a number nor an address plus a "
     "number: it adds or multiplies addresses, or subtracts addresses of different "
     "sections", 3, 7),
    ("times $ db 0", "a times count must be a number, not an address ('$ - $$' and "
     "'label - $$' are numbers)", 1, 7),
    ("resb -1", "cannot reserve -1 items (0 .. 4 GiB)", 1, 6),
    ("%exitmacro", "%exitmacro outside a macro", 1, 1),
    ("%ifidn a\n%endif", "%ifidn needs two texts separated by a comma", 1, 7),
    ("%strlen L abc", "%strlen L needs a quoted string, not 'abc'", 1, 8),
    ("%strcat L 'a', b", "%strcat L needs a quoted string, not ''a', b'", 1, 8),
    ("%substr L 'abc'", "%substr L needs a start after the string", 1, 1),
    ("%strlen L 'a' 'b'", "%strlen L: expected end of line after ''a' 'b''", 1, 8),
    ("%ifenv m\n%endif", "'%ifenv' is not supported (the conditionals are %if, "
     "%ifdef, %ifidn, %ifidni, %ifid, %ifnum, %ifstr, %iftoken, %ifempty, %ifmacro, "
     "%ifctx, %ifusing and %ifusable, each with its %ifn form, their %elif forms, %else and "
     "%endif)", 1, 1),
    ("%ifmacro\n%endif", "%ifmacro needs a macro name (and a parameter count, or none)",
     1, 9),
    ("%unmacro m", "%unmacro needs a macro name and a parameter count", 1, 9),
    ("%fatal 'no'", "%fatal: no", 1, 1),
    # --- structures ---
    ("struc s\n.a: resd 1", "struc 's' has no endstruc", 1, 1),
    ("endstruc", "'endstruc' without 'struc'", 1, 1),
    ("struc s\n.a: dd 1\nendstruc", "only labels, resb ... resz and alignb can be "
     "inside struc 's', not 'dd' (its fields are offsets: the bytes go in an istruc)", 2, 5),
    ("struc s\nstruc t", "'struc' inside struc 's' (close it with endstruc first)", 2, 1),
    ("struc", "expected the structure's name after 'struc', found end of line", 1, 6),
    ("struc .s\nendstruc", "a structure's name cannot be local ('.s')", 1, 7),
    ("struc s\nalignb 3\nendstruc", "alignb 3 is not a power of two", 2, 1),
    ("at s.a, dd 1", "'at' outside istruc", 1, 1),
    ("iend", "'iend' outside istruc", 1, 1),
    ("struc s\n.a: resd 1\nendstruc\nistruc s\nistruc s", "'istruc' inside istruc 's' "
     "(close it with iend first)", 5, 1),
    ("struc s\n.a: resd 1\nendstruc\nx: istruc s", "istruc 's' has no iend", 4, 4),
    ("struc s\n.a: resd 1\n.b: resd 1\nendstruc\nistruc s\nat s.b, dd 1\nat s.a, dd 2\n"
     "iend", "times count -8 is negative", 7, 4),
    # --- statements ---
    ("x", "unknown mnemonic 'x' (a label needs a ':' after its name)", 1, 1),
    ("bits", "expected 16, 32 or 64 after 'bits', found end of line", 1, 5),
]


@pytest.mark.parametrize("source, message, line, column", ERRORS)
def test_error_message_and_position(source, message, line, column):
    e = error(source)
    assert (e.message, e.line, e.column) == (message, line, column)


def test_incbin_takes_a_files_bytes_from_a_skip_a_count_of_them(tmp_path, monkeypatch):
    # NASM's meaning (test_nasm.py compares random ones with NASM): as many
    # bytes as there are from the skip, none past the end; the file looked
    # for as %include looks for one -- next to the program, then the
    # include directories.
    (tmp_path / "b.bin").write_bytes(b"ABCDEFGHIJ")
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc" / "c.bin").write_bytes(b"xy")
    (tmp_path / "p.s").write_text(
        'bits 32\n_start: db 1\nN equ 2\nincbin "b.bin"\nincbin "b.bin", 3, 4\n'
        'incbin \'b.bin\', 8, 100\nincbin `b.bin`, 20\nincbin "b.bin", 0, 0\n'
        'incbin "b.bin", N + 1, N * 2\ntimes 2 incbin "c.bin"\nx: incbin "c.bin", 1\n'
        'dd x, $ - _start\n')
    monkeypatch.chdir(tmp_path / "inc")        # (not where the file is looked for first)
    img = assemble_file(tmp_path / "p.s", include_dirs=[tmp_path / "inc"])
    assert img.segments == ((0, b"\x01ABCDEFGHIJ" b"DEFG" b"IJ" b"DEFG" b"xyxy" b"y"
                                 + (0x19).to_bytes(4, "little") + (0x1a).to_bytes(4, "little")),)


def test_a_changed_incbin_file_is_read_again(tmp_path):
    # The same source assembled again is the image made before only while
    # every file it read is the same (the runs of one guest in every mode).
    blob, src = tmp_path / "b.bin", tmp_path / "p.s"
    src.write_text('bits 32\n_start: incbin "b.bin", 1\n')
    blob.write_bytes(b"abc")
    assert assemble_file(src).segments == ((0, b"bc"),)
    blob.write_bytes(b"xyz!")
    assert assemble_file(src).segments == ((0, b"yz!"),)
    blob.unlink()
    with pytest.raises(AsmError) as info:
        assemble_file(src)
    assert info.value.message == f"incbin file 'b.bin' not found (searched: {tmp_path})"


@pytest.mark.parametrize("source, size", [
    ("rest 1", 10), ("reso 2", 32), ("resy 1", 32), ("resz 3", 192), ("resb s_size", 106),
    ("times 2 rest 1", 20),
])
def test_the_wide_reservations_reserve_what_nasm_does(source, size):
    # rest, reso, resy, resz: 10, 16, 32 and 64 bytes an item, in a nobits
    # section, a struc and times, as in NASM (test_nasm.py: at random)
    img = assemble("bits 32\nstruc s\n.a: rest 1\n.b: reso 2\n.c: resz 1\nendstruc\n"
                   f"section .bss\nbuf: {source}\nend_:\nsection .text\n"
                   "dd end_ - buf, s.b, s.c")
    assert img.segments[0][1] == b"".join(v.to_bytes(4, "little") for v in (size, 10, 42))


@pytest.mark.parametrize("hinted, plain", [
    ("mov eax, [dword ebx + 5]", "mov eax, [ebx + 5]"),
    ("mov eax, [byte ebx - 128]", "mov eax, [ebx - 128]"),
    ("mov eax, [nosplit ebx*2 + 4]", "mov eax, [ebx*2 + 4]"),
    ("mov eax, [dword nosplit ebx*2]", "mov eax, [ebx*2]"),
    ("lea eax, [byte esp]", "lea eax, [esp]"),
    ("mov eax, strict dword 5", "mov eax, 5"),
    ("add eax, strict byte 5", "add eax, byte 5"),
    ("push strict dword 5", "push dword 5"),
    ("jmp strict short $", "jmp short $"),
    ("retn", "ret"),
    ("retn 8", "ret 8"),
])
def test_nasms_hints_mean_what_they_mean_there(hinted, plain):
    # a displacement's size, nosplit and strict choose among x86's encodings
    # in NASM; here an instruction has one, so the same bytes (test_nasm.py
    # checks the addresses against NASM at random)
    assert assemble(hinted).segments == assemble(plain).segments


def test_an_unset_item_is_zeros_and_unset_items_alone_reserve_space():
    # NASM's '?': zeros among values (NASM warns outside a nobits section,
    # as it does for resb there); items all '?' are a reservation
    img = assemble("db ?, 'a', ?\nx: dd ?, 5\ntimes 2 dw ?\ny:\ndd y - x\n"
                   "section .bss\nb: dq ?, ?\nc:\nsection .text\ndd c - b")
    assert img.segments[0][1] == (b"\x00a\x00" + bytes(4) + (5).to_bytes(4, "little")
                                  + bytes(4) + (12).to_bytes(4, "little")
                                  + (16).to_bytes(4, "little"))
    e = error("section .bss\ndd ?, 5")
    assert e.message == ("code or data in the nobits section '.bss': only resb ... resz and "
                         "alignb reserve space there")


def test_an_rmacro_calls_itself_and_what_follows_is_assembled():
    # NASM's manual's meaning.  NASM 2.16.01 itself makes only 00 of this
    # program: after such a call it drops the rest of the macro's lines
    # and of the file, without a word (or fails on a later %if)
    img = assemble("%rmacro m 1\n%if %1 > 0\nm %1 - 1\n%endif\ndb %1\n%endmacro\n"
                   "m 2\ndb 9\nm 1\ndb 8")
    assert img.segments[0][1] == bytes([0, 1, 2, 9, 0, 1, 8])
    e = error("%macro m 1\n%if %1 > 0\nm %1 - 1\n%endif\n%endmacro\nm 1")
    assert (e.message, e.line) == ("unknown mnemonic 'm' (in macro 'm' called at t.s:6)", 3)


def test_nasms_version_macros_name_the_nasm_whose_language_this_is():
    img = assemble("dd __NASM_MAJOR__, __?NASM_MINOR?__, __NASM_SUBMINOR__, "
                   "__?NASM_PATCHLEVEL?__, __NASM_VERSION_ID__\ndb __?NASM_VER?__\n"
                   "%if __?NASM_VERSION_ID?__ >= 0x020F0000\ndb 1\n%endif")
    assert img.segments[0][1] == (b"".join(v.to_bytes(4, "little") for v in
                                           (2, 16, 1, 0, 0x02100100)) + b"2.16.01\x01")


def test_a_warning_is_said_and_the_assembly_goes_on(tmp_path, capsys):
    # %warning: the message as %error makes it (macros expanded, one string
    # unquoted), where it was written and the macro call that made it; the
    # command line prints each on stderr and goes on.
    p = tmp_path / "w.s"
    p.write_text("bits 32\n%define SIZE 5000\n%macro check 0\n%if SIZE > 4096\n"
                 "%warning table of SIZE bytes: more than a page\n%endif\n%endmacro\n"
                 "%if 0\n%warning never\n%endif\n_start: check\n%warning `done\\n`\n"
                 "mov eax, 0\nout 0xF4, eax\n")
    img = assemble_file(p)
    assert [str(w) for w in img.warnings] == [
        f"{p}:5:1: warning: %warning: table of 5000 bytes: more than a page "
        f"(in macro 'check' called at {p}:11)",
        f"{p}:12:1: warning: %warning: done?"]
    assert main(["run", str(p), "--quiet"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [f"emu: {w}" for w in img.warnings]


def test_an_error_in_a_macro_points_at_its_line_and_names_the_call(tmp_path):
    (tmp_path / "m.inc").write_text("%macro load 1\n    mov eax, %1 +\n%endmacro\n")
    (tmp_path / "p.s").write_text('bits 32\n%include "m.inc"\n_start:\n    load 5\n')
    with pytest.raises(AsmError) as info:
        assemble_file(tmp_path / "p.s")
    e = info.value
    assert str(e) == (f"{tmp_path}/m.inc:2:17: error: expected an expression, found end of "
                      f"line (in macro 'load' called at {tmp_path}/p.s:4)")
    assert e.excerpt() == "        mov eax, 5 +\n                    ^"


def test_the_expansion_limit_is_counted_over_the_whole_assembly(monkeypatch):
    monkeypatch.setattr(preproc, "MAX_EXPANDED", 10)
    e = error("%macro two 0\nnop\nnop\n%endmacro\ntwo\ntwo\ntwo\ntwo\ntwo\ntwo")
    assert (e.message, e.line) == ("more than 10 lines and %rep iterations made by macros "
                                   "and %rep (the limit) (in macro 'two' called at t.s:10)", 2)


def test_the_calls_a_line_makes_are_limited_and_counted_per_line(monkeypatch):
    monkeypatch.setattr(smacros, "MAX_CALLS", 8)
    ok = "%define z(x) x\n%define B z(z(z(1)))\ndb B, B\ndb B, B\n"
    assert assemble(ok).segments[0][1] == bytes([1, 1, 1, 1])    # 8 calls a line
    e = error(ok + "db B, B, z(1)")
    assert (e.message, e.line, e.column) == (
        "more than 8 single-line macro calls made for one line (the limit)", 5, 10)


# --- the entry point ----------------------------------------------------------------

EMPTY = "the program is empty: there is no code to run (execution starts at the label _start)"
NO_START = ("no '_start' label: execution starts at _start (put '_start:' where the program "
            "begins)")


@pytest.mark.parametrize("text, message", [
    ("", EMPTY), ("; only a comment\n", EMPTY), ("X equ 5\nsection .bss\nbuf: resb 16\n", EMPTY),
    ("bits 32\nmain: nop\n", NO_START), ("start: nop\n", NO_START),
])
def test_a_program_file_needs_start(tmp_path, text, message):
    p = tmp_path / "p.s"
    p.write_text(text)
    with pytest.raises(AsmError) as info:
        assemble_file(p)
    assert str(info.value) == f"{p}: error: {message}"


@pytest.mark.parametrize("command", ["run", "asm", "step"])
def test_the_command_line_says_so_in_one_line(tmp_path, capsys, command):
    p = tmp_path / "empty.s"
    p.write_text("")
    assert main([command, str(p)]) == 1
    assert capsys.readouterr().err == f"emu: {p}: error: {EMPTY}\n"


def test_start_may_be_anywhere_and_is_the_entry():
    img = assemble("bits 32\norg 0x1000\nhelper: ret\n_start: call helper\n",
                   require_start=True)
    assert img.entry == 0x1001


def test_a_fragment_needs_no_start():
    assert assemble("nop").entry == 0


@pytest.mark.parametrize("prefix", ["rep", "repe", "repz", "REPZ"])
def test_repe_and_repz_are_rep_on_movs_and_stos(prefix):
    """NASM assembles all three to F3: on movs and stos they mean rep."""
    plain = assemble("rep movsb\nrep stosd\n", "t.s")
    other = assemble(f"{prefix} movsb\n{prefix} stosd\n", "t.s")
    assert other.sections == plain.sections


def test_exitmacro_inside_a_rep_leaves_the_whole_macro():
    # (NASM 2.16.01 stops with an internal error on this one: the meaning
    # is its manual's -- %exitmacro ends the macro's expansion at once)
    image = assemble("%macro upto 1\n%assign i 0\n%rep 10\n%if i == %1\n%exitmacro\n"
                     "%endif\ndb i\n%assign i i + 1\n%endrep\ndb 0xFF\n%endmacro\n"
                     "_start: upto 3\nupto 20\nupto 0\ndb 0xEE\n")
    assert image.segments[0][1] == bytes([0, 1, 2, *range(10), 0xFF, 0xEE])
