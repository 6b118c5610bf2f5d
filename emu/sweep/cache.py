"""The content-addressed store of finished records.

One JSON file per key, ``ROOT/ab/abcdef....json``, written to a temporary
file in the same folder and renamed over its name, so a record is either
all there or not there: a sweep stopped at any point (Ctrl-C, a crash, a
lost machine) keeps every run that had finished, and the next sweep starts
from them.  A file that cannot be read back as the record of its key (cut
short by a full disk, edited by hand) is taken as missing.

Records marked ``transient`` (a host-time limit, a lost worker, a worker
with another emulator) are not stored: another attempt may end otherwise.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..errors import EmuError

UMASK = os.umask(0o022)         # read once (os.umask can only be read by setting it)
os.umask(UMASK)


def default_root() -> Path:
    """``$EMU_CACHE_DIR``, else ``$XDG_CACHE_HOME/emu/sweep``, else
    ``~/.cache/emu/sweep``."""
    if os.environ.get("EMU_CACHE_DIR"):
        return Path(os.environ["EMU_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "emu" / "sweep"


class Cache:
    """Records by key; ``root=None`` stores nothing (``--no-cache``)."""

    def __init__(self, root: str | os.PathLike | None):
        self.root = Path(root) if root is not None else None
        if self.root is not None:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise EmuError(f"cannot use {self.root} as the sweep cache: "
                               f"{e.strerror}") from None
            if not os.access(self.root, os.W_OK):
                raise EmuError(f"cannot write the sweep cache {self.root}")

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        if self.root is None:
            return None
        try:
            with open(self.path(key), encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("key") != key:
            return None
        record = data.get("record")
        return record if isinstance(record, dict) else None

    def put(self, key: str, record: dict) -> bool:
        """Store ``record`` (atomically); False when it is not to be kept."""
        if self.root is None or record.get("transient"):
            return False
        path = self.path(key)
        text = json.dumps({"key": key, "record": record}, sort_keys=True)
        try:
            path.parent.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
            os.fchmod(fd, 0o666 & ~UMASK)       # as open() would: a cache may be shared
        except OSError as e:
            raise EmuError(f"cannot write the sweep cache {self.root}: {e.strerror}") from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, path)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise EmuError(f"cannot write the sweep cache {self.root}: {e.strerror}") from None
        return True
