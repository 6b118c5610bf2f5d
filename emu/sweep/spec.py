"""What a sweep runs: a spec (a TOML file and/or command-line axes) and the
runs it expands to.

A spec names *fields*: ``guest`` (a bundled program's name or a ``.s``
path) and any field of ``emu.system.Config`` (``mode``, ``tlb_entries``,
``shadow_policy`` ...), a cost-model number as ``costs.NAME``::

    [sweep]                          # all optional
    name = "forkwait"                # labels the results (default: the file's stem)
    timeout = 120                    # host seconds one run may take (default 600)

    [config]                         # fixed for every run
    max_cycles = 50_000_000

    [axes]                           # the cartesian product of these lists
    guest = ["forkwait", "hello"]
    mode = ["native", "shadow", "nested"]

    [[run]]                          # and/or an explicit list of runs
    guest = "paging"
    mode = "nested"
    tlb_entries = 16

Axes given on the command line (``--mode native,shadow``, ``--set
FIELD=V1,V2``) are crossed with every run of the file, and win over the
file's value of the same field.

Everything here happens before anything runs, and a mistake is one
``SpecError`` line: an unknown field, an empty axis, a value of the wrong
type, an unknown guest.
"""

from __future__ import annotations

import difflib
import itertools
import os
from dataclasses import dataclass, field, fields

from ..cost import CostModel
from ..errors import EmuError
from ..system import Config

DEFAULT_TIMEOUT = 600.0                  # host seconds one run may take
MAX_RUNS = 100_000                       # a product larger than this is refused


class SpecError(EmuError):
    """A spec that cannot be run; the message is one line."""


# The fields a spec may set, and the type of each value.  Config's
# annotations are strings (``from __future__ import annotations``).
_CONFIG_TYPES = {f.name: str(f.type) for f in fields(Config) if f.name != "costs"}
_COST_FIELDS = tuple(CostModel.names())
FIELDS = ("guest", *_CONFIG_TYPES, *(f"costs.{n}" for n in _COST_FIELDS))

# Fields that change nothing in some modes: a run leaves them at their
# default there (and its row shows none), so that e.g. ``mode x
# shadow_policy`` does not run the same native guest four times.
_ONLY_IN = {
    "shadow_policy": ("shadow",),
    "ntlb_entries": ("nested",),
    "machine_mib": ("shadow", "nested"),
    "swap_latency": ("shadow", "nested"),
    "swap_bandwidth": ("shadow", "nested"),
    "share_interval": ("shadow", "nested"),
    "reserve_pages": ("shadow", "nested"),
    "vmm": ("shadow",),
}


def applies(name: str, mode: str) -> bool:
    """Does field ``name`` change anything in ``mode``?"""
    return mode in _ONLY_IN.get(name, (mode,))


@dataclass
class Spec:
    """A sweep before expansion: fixed settings, axes, explicit runs."""

    name: str = "sweep"
    source: str = ""                    # the spec file, for messages ("": none)
    base: dict = field(default_factory=dict)        # [config]
    axes: dict = field(default_factory=dict)        # field -> list of values
    runs: list = field(default_factory=list)        # [[run]]: field -> value
    cli_axes: dict = field(default_factory=dict)    # from the command line
    timeout: float = DEFAULT_TIMEOUT
    folder: str = "."                   # relative guest paths start here


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name, FIELDS, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def field_name(name: str, where: str) -> str:
    """``name`` as a spec field (dashes read as underscores), or a SpecError."""
    name = name.strip().replace("-", "_")
    if name.startswith("costs."):
        if name[6:] in _COST_FIELDS:
            return name
        raise SpecError(f"{where}: unknown cost '{name[6:]}' "
                        f"(the cost model has: {', '.join(_COST_FIELDS)})")
    if name not in FIELDS:
        raise SpecError(f"{where}: unknown field '{name}'{_suggest(name)}")
    return name


def _bool(value, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise SpecError(f"{where}: '{value}' is not true or false")


def _int(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise SpecError(f"{where}: {value!r} is not a whole number")
    if isinstance(value, int):
        return value
    try:
        return int(value.strip(), 0)
    except ValueError:
        raise SpecError(f"{where}: '{value}' is not a whole number") from None


def coerce(name: str, value, where: str):
    """A value of field ``name`` from TOML or from the command line (text)."""
    where = f"{where}: {name}"
    if name == "guest":
        if not isinstance(value, str) or not value.strip():
            raise SpecError(f"{where}: {value!r} is not a program name or path")
        return value.strip()
    if name.startswith("costs."):
        number = _int(value, where)
        if number < 0:
            raise SpecError(f"{where}: a cost cannot be negative ({number})")
        return number
    kind = _CONFIG_TYPES[name]
    if kind == "bool":
        return _bool(value, where)
    if kind.startswith("int"):
        if "None" in kind and (value is None or str(value).strip().lower() == "default"):
            return None
        return _int(value, where)
    if "None" in kind and (value is None or str(value).strip().lower() == "default"):
        return None
    if not isinstance(value, str):
        raise SpecError(f"{where}: {value!r} is not a string")
    return value.strip()


def _values(name: str, raw, where: str) -> list:
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise SpecError(f"{where}: {name} is empty (an axis needs at least one value)")
    out = []
    for item in items:
        value = coerce(name, item, where)
        if value not in out:
            out.append(value)
    return out


def _table(data: dict, key: str, where: str) -> dict:
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise SpecError(f"{where}: [{key}] must be a table")
    return table


def _flat(table: dict, where: str) -> dict:
    """A TOML table with ``costs`` as a sub-table or as dotted keys."""
    out = {}
    for name, value in table.items():
        if name == "costs" and isinstance(value, dict):
            for cost, v in value.items():
                out[field_name(f"costs.{cost}", where)] = v
        else:
            out[field_name(name, where)] = value
    return out


def read_spec(path: str) -> Spec:
    """Read a TOML spec file; every mistake is a SpecError naming the file."""
    import tomllib
    try:
        with open(path, "rb") as fh:
            data = tomllib.loads(fh.read(1 << 20).decode("utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SpecError(f"{path} is a directory, not a sweep spec") from None
    except OSError as e:
        raise SpecError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a text file (a sweep spec is TOML)") from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: not valid TOML: {e}") from None
    unknown = sorted(set(data) - {"sweep", "config", "axes", "run"})
    if unknown:
        raise SpecError(f"{path}: unknown table [{unknown[0]}] "
                        "(a spec has [sweep], [config], [axes] and [[run]])")
    spec = Spec(name=os.path.splitext(os.path.basename(path))[0], source=path,
                folder=os.path.dirname(os.path.abspath(path)))
    head = _table(data, "sweep", path)
    for key, value in head.items():
        if key == "name":
            if not isinstance(value, str) or not value:
                raise SpecError(f"{path}: [sweep] name must be a non-empty string")
            if not value.isprintable() or "/" in value or "\\" in value or \
                    value.startswith(".") or value != value.strip():
                # (it names the results folder, NAME-results, here)
                raise SpecError(f"{path}: [sweep] name {value!r} must be a plain name (no "
                                "folders, not starting with '.'): it names NAME-results")
            spec.name = value
        elif key == "timeout":
            spec.timeout = timeout_value(value, f"{path}: [sweep] timeout")
        else:
            raise SpecError(f"{path}: unknown key '{key}' in [sweep] (name, timeout)")
    for name, value in _flat(_table(data, "config", path), f"{path}: [config]").items():
        spec.base[name] = coerce(name, value, f"{path}: [config]")
    for name, raw in _flat(_table(data, "axes", path), f"{path}: [axes]").items():
        spec.axes[name] = _values(name, raw, f"{path}: [axes]")
    runs = data.get("run", [])
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise SpecError(f"{path}: [[run]] must be an array of tables")
    for i, run in enumerate(runs, 1):
        where = f"{path}: [[run]] #{i}"
        spec.runs.append({name: coerce(name, value, where)
                          for name, value in _flat(run, where).items()})
    if not spec.axes and not spec.runs:
        raise SpecError(f"{path}: nothing to run (give [axes] or [[run]] tables)")
    return spec


def timeout_value(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SpecError(f"{where}: {value!r} is not a number of seconds")
    try:
        seconds = float(value)
    except ValueError:
        raise SpecError(f"{where}: '{value}' is not a number of seconds") from None
    if not 0 < seconds <= 86400 * 7:
        raise SpecError(f"{where}: must be more than 0 seconds and at most a week (604800), "
                        f"not {value}")
    return seconds


def add_cli_axis(spec: Spec, name: str, text: str, where: str) -> None:
    """``--mode native,shadow`` or ``--set tlb_entries=16,64``: one more
    value list for ``name`` (repeating an option adds values)."""
    name = field_name(name, where)
    items = [t for t in text.split(",")]
    if not text.strip() or any(not t.strip() for t in items):
        raise SpecError(f"{where}: an empty value in '{text}'")
    values = spec.cli_axes.setdefault(name, [])
    for value in _values(name, items, where):
        if value not in values:
            values.append(value)


def expand(spec: Spec) -> list[dict]:
    """Every run's settings (field -> value), in order: the product of the
    file's axes, then its explicit runs, each crossed with the command
    line's axes; ``[config]`` underneath all of them."""
    def product(axes: dict) -> list[dict]:
        names = list(axes)
        return [dict(zip(names, combo)) for combo in
                itertools.product(*(axes[n] for n in names))]

    count = 1
    for values in [*spec.axes.values(), *spec.cli_axes.values()]:
        count *= len(values)
        if count > MAX_RUNS:
            raise SpecError(f"{at(spec)}the axes make more than {MAX_RUNS:,} runs")
    file_runs = (product(spec.axes) if spec.axes else []) + spec.runs
    if not file_runs:
        file_runs = [{}]
    out = []
    for run in file_runs:
        for extra in product(spec.cli_axes):
            out.append({**spec.base, **run, **extra})
    if len(out) > MAX_RUNS:
        raise SpecError(f"{at(spec)}more than {MAX_RUNS:,} runs")
    return out


def at(spec: Spec) -> str:
    """``file.toml: `` to start a message about ``spec`` (nothing for the
    command line's own axes)."""
    return f"{spec.source}: " if spec.source else ""


def describe(settings: dict) -> str:
    """``guest=hello mode=shadow tlb_entries=16``: a run, for messages."""
    return " ".join(f"{k}={v}" for k, v in settings.items())
