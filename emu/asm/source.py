"""Reading source files: checks that turn every bad file into an AsmError.

A source file must be UTF-8 text without NUL bytes (a leading byte-order mark
is dropped).  Errors about a file's contents point at the offending byte's
line and column; errors about the file as a whole (missing, a directory,
unreadable) are reported against the place that named it: the ``%include``
line, or line 0 of the file itself for the top-level file.
"""

from __future__ import annotations

import os
import threading

from ..errors import AsmError
from .lexer import Loc

MAX_SOURCE = 1 << 20        # bytes in one source file (the largest kernel is ~27 KB)
MAX_BINARY = 64 << 20       # bytes one incbin may read (guest memory is 1 GiB at most)

# What an assembly read from the file system, while one is recorded
# (``recorded``): ("find", args, result), ("read", path, text) and
# ("bin", (path, skip, count), bytes), in order.
_record = threading.local()


class recorded:
    """``with recorded() as reads:`` the file system reads of the assembly
    within, for ``unchanged`` to check later."""

    def __enter__(self) -> list:
        self.outer = getattr(_record, "reads", None)
        _record.reads = []
        return _record.reads

    def __exit__(self, *exc) -> None:
        _record.reads = self.outer


def _note(entry: tuple) -> None:
    reads = getattr(_record, "reads", None)
    if reads is not None:
        reads.append(entry)


def unchanged(reads: list) -> bool:
    """Whether every read of ``reads`` gives the same answer now: the same
    include files found, with the same text."""
    try:
        for kind, what, answer in reads:
            if kind == "find":
                found = _find_include(*what)
                if (found, os.path.realpath(found[0])) != answer:
                    return False
            elif kind == "bin":
                if _read_binary(*what, what[0]) != answer:
                    return False
            elif _read_source(what, what) != answer:
                return False
    except AsmError:
        return False
    return True


def read_source(path: str, display: str, named_at: Loc | None = None,
                col: int = 0) -> str:
    """Text of the source file ``path`` (``_read_source``), noted when the
    assembly is recorded."""
    text = _read_source(path, display, named_at, col)
    _note(("read", path, text))
    return text


def read_binary(path: str, skip: int, count: int | None, display: str,
                named_at: Loc | None = None, col: int = 0) -> bytes:
    """``count`` bytes (None: all) of the file ``path`` from byte ``skip``
    (``incbin``): as many as there are, none past its end.  Noted when the
    assembly is recorded."""
    data = _read_binary(path, skip, count, display, named_at, col)
    _note(("bin", (path, skip, count), data))
    return data


def _read_binary(path: str, skip: int, count: int | None, display: str,
                 named_at: Loc | None = None, col: int = 0) -> bytes:
    def whole(message: str) -> AsmError:
        if named_at is None:
            return AsmError(message, display, 0, 0, "")
        return named_at.error(message, col)

    if os.path.isdir(path):
        raise whole(f"'{display}' is a directory, not a file to include")
    if os.path.exists(path) and not os.path.isfile(path):
        raise whole(f"'{display}' is not a regular file")
    want = MAX_BINARY + 1 if count is None else min(count, MAX_BINARY + 1)
    try:
        with open(path, "rb") as f:
            f.seek(skip)
            data = f.read(want)
    except FileNotFoundError:
        raise whole(f"cannot open '{display}': no such file") from None
    except (OSError, OverflowError) as e:
        raise whole(f"cannot read '{display}': {getattr(e, 'strerror', None) or e}") from None
    if len(data) > MAX_BINARY:
        raise whole(f"incbin of '{display}' is too large "
                    f"(more than {MAX_BINARY >> 20} MiB)")
    return data


def _read_source(path: str, display: str, named_at: Loc | None = None,
                 col: int = 0) -> str:
    """Text of the source file ``path``, named ``display`` in messages.

    Problems with the file as a whole are reported at ``named_at``, column
    ``col`` (the include line), or without one at line 0 of the file.
    """
    def whole(message: str) -> AsmError:
        if named_at is None:
            return AsmError(message, display, 0, 0, "")
        return named_at.error(message, col)

    if "\0" in path:
        raise whole(f"cannot open '{display}': the name contains a NUL character")
    if os.path.isdir(path):
        raise whole(f"'{display}' is a directory, not a source file")
    if os.path.exists(path) and not os.path.isfile(path):
        raise whole(f"'{display}' is not a regular file")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SOURCE + 1)
    except FileNotFoundError:
        raise whole(f"cannot open '{display}': no such file") from None
    except OSError as e:
        raise whole(f"cannot read '{display}': {e.strerror or e}") from None
    if len(data) > MAX_SOURCE:
        raise whole(f"'{display}' is too large for a source file "
                    f"(more than {MAX_SOURCE >> 20} MiB)")
    return decode_source(data, display)


def decode_source(data: bytes, display: str) -> str:
    """``data`` as text, or an AsmError pointing at the first bad byte."""
    nul = data.find(b"\0")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        if 0 <= nul < e.start:
            raise _at_byte(data, nul, display, "source contains a NUL byte "
                           "(is this a binary file?)") from None
        raise _at_byte(data, e.start, display, f"source is not UTF-8 text "
                       f"(byte 0x{data[e.start]:02x})") from None
    if nul >= 0:
        raise _at_byte(data, nul, display, "source contains a NUL byte "
                       "(is this a binary file?)")
    return text.removeprefix("\ufeff")


def _at_byte(data: bytes, offset: int, display: str, message: str) -> AsmError:
    line_start = data.rfind(b"\n", 0, offset) + 1
    line_end = data.find(b"\n", offset)
    if line_end < 0:
        line_end = len(data)
    line_no = data.count(b"\n", 0, offset) + 1
    prefix = data[line_start:offset].decode("utf-8", "replace")
    text = data[line_start:line_end].decode("utf-8", "replace").rstrip("\r")
    text = text.replace("\0", "\ufffd")
    return AsmError(message, display, line_no, len(prefix) + 1, text)


def find_include(name: str, including: str, include_dirs: tuple[str, ...]
                 ) -> tuple[str, list[str]]:
    """``_find_include``, noted when the assembly is recorded."""
    found = _find_include(name, including, include_dirs)
    _note(("find", (name, including, include_dirs), (found, os.path.realpath(found[0]))))
    return found


def _find_include(name: str, including: str, include_dirs: tuple[str, ...]
                  ) -> tuple[str, list[str]]:
    """Resolve ``%include name``: (path found or "", directories searched).

    Searched in order: the including file's directory (the current directory
    for sources without a file, named like ``<input>``), then each of
    ``include_dirs``.  Absolute names are used as they are.
    """
    if os.path.isabs(name):
        return (name if os.path.exists(name) else ""), []
    if including.startswith("<"):
        first = "."
    else:
        first = os.path.dirname(including) or "."
    searched = [first, *include_dirs]
    for d in searched:
        cand = os.path.normpath(os.path.join(d, name))
        if os.path.exists(cand):
            return cand, searched
    return "", searched
