"""Rows: one per run, every statistic the run reports, as flat columns.

A row is the run's labels (the guest and every configuration field) and
its record flattened: ``Result``'s own fields, ``registers.eax`` ..., and
every counter of ``Result.stats`` by its path, dot-separated
(``cycles_by_category.vm_exit``, ``vmm.exits.pf``, ``vmm.faults.hidden``,
``mmu.dtlb.misses``, ``mmu.walk_refs``, ``host.swap_ins`` ...).

A counter that a run's statistics do not list where they list its
siblings (an exit kind that never happened) is 0; a column that does not
apply to the run at all (``vmm.*`` natively, counters of a run that never
started) is empty (null).

The rows are written as a Parquet dataset -- a folder holding
``runs.parquet`` -- that ``pandas.read_parquet(DIR)`` reads in one line,
and as CSV with ``--csv``.
"""

from __future__ import annotations

import json
import os
import sys

from ..errors import EmuError
from ..outputs import replace_file, write_json_atomic

HEAD = ("key", "outcome", "exit_status", "message", "instructions", "cycles", "host_seconds")
_SKIP = ("mode", "transient", "stats")
PARQUET_NAME = "runs.parquet"
INFO_NAME = "_sweep.json"       # '_': not part of the dataset for pyarrow or pandas


def flatten(record: dict) -> tuple[dict, set]:
    """(leaf path -> value, the set of paths that are dicts)."""
    leaves, parents = {}, set()

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            if prefix:
                parents.add(prefix)
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, (list, tuple)):
            leaves[prefix] = json.dumps(value)
        else:
            leaves[prefix] = value

    for name, value in record.items():
        if name not in _SKIP:
            walk(name, value)
    walk("", record.get("stats") or {})
    return leaves, parents


def build_rows(runs, records: dict) -> list[dict]:
    """One row per run, in the plan's order; ``records``: key -> record."""
    flat = []
    for run in runs:
        leaves, parents = flatten(records[run.key])
        flat.append(({**run.labels(), "key": run.key, **leaves}, parents))
    columns: dict[str, None] = {}
    for name in (*(runs[0].labels() if runs else ()), *HEAD):
        columns[name] = None
    for row, _ in flat:
        for name in row:
            columns.setdefault(name, None)
    columns = _grouped(columns)
    numeric = {name for name in columns
               if any(isinstance(r.get(name), (int, float)) and not isinstance(r.get(name), bool)
                      for r, _ in flat)}
    rows = []
    for row, parents in flat:
        out = {}
        for name in columns:
            value = row.get(name)
            if value is None and name in numeric and "." in name \
                    and name.rsplit(".", 1)[0] in parents:
                value = 0
            out[name] = value
        rows.append(out)
    return rows


def _grouped(columns: dict) -> dict:
    """Columns in first-seen order, siblings kept together (every
    ``vmm.exits.*`` beside the others, wherever a run first lists one)."""
    rank: dict[str, int] = {}
    for name in columns:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            rank.setdefault(".".join(parts[:i]), len(rank))

    def order(name: str) -> list:
        parts = name.split(".")
        return [rank[".".join(parts[:i])] for i in range(1, len(parts) + 1)]
    return dict.fromkeys(sorted(columns, key=order))


def to_table(rows: list[dict], meta: dict | None = None):
    import pyarrow as pa
    names = list(rows[0]) if rows else []
    columns = {}
    for name in names:
        values = [r[name] for r in rows]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            columns[name] = pa.array([None if v is None else str(v) for v in values],
                                     type=pa.string())
    table = pa.table(columns)
    if meta:
        table = table.replace_schema_metadata({"emu.sweep": json.dumps(meta, sort_keys=True)})
    return table


def write_dataset(rows: list[dict], folder: str, meta: dict) -> str:
    """``folder/runs.parquet`` (replaced atomically) and ``folder/_sweep.json``."""
    import pyarrow.parquet as pq
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise EmuError(f"cannot write {folder}: not a folder (the results are a "
                       "Parquet dataset: a folder)")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise EmuError(f"cannot write {folder}: {e.strerror}") from None
    table = to_table(rows, meta)
    path = os.path.join(folder, PARQUET_NAME)
    replace_file(path, lambda tmp: pq.write_table(table, tmp))
    write_json_atomic(os.path.join(folder, INFO_NAME), meta)
    return path


def write_csv(rows: list[dict], path: str) -> None:
    """The rows as CSV; ``-`` is standard output."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    table = to_table(rows)
    # CSV cannot hold a column of nothing but nulls as its own type.
    table = pa.table({name: (col.cast(pa.string()) if pa.types.is_null(col.type) else col)
                      for name, col in zip(table.column_names, table.columns)})
    if path == "-":
        sink = pa.BufferOutputStream()
        pcsv.write_csv(table, sink)
        sys.stdout.write(sink.getvalue().to_pybytes().decode())
        sys.stdout.flush()
        return
    replace_file(path, lambda tmp: pcsv.write_csv(table, tmp))
