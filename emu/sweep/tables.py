"""The numbers of the report's sections, from the rows alone.

Each function returns a ``SectionData``: a title, a paragraph, tables (a
header row then data rows) and the figure to draw, or what the sweep
lacks for it.  Runs that did not end as the guest made them end (error,
timeout, lost) have no counters and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .plan import CONFIG_FIELDS

FINISHED = ("poweroff", "crash", "budget")
PAGE_KIB = 4
_LABELS = ("guest", *CONFIG_FIELDS)


@dataclass
class Panel:
    ylabel: str
    series: list                # (name, xs, ys)
    logy: bool = False


@dataclass
class Figure:
    file: str
    title: str
    kind: str                   # "bars": xs are categories; "lines": xs are numbers
    xlabel: str
    panels: list
    log2x: bool = False


@dataclass
class SectionData:
    title: str
    intro: str
    tables: list = field(default_factory=list)      # (caption, rows)
    figure: Figure | None = None
    missing: str | None = None


# --- helpers ---------------------------------------------------------------
def finished(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["outcome"] in FINISHED]


def label_columns(rows: list[dict]) -> list[str]:
    return [c for c in rows[0] if c in _LABELS or c.startswith("costs.")] if rows else []


def varying(rows: list[dict], exclude=()) -> list[str]:
    """Label columns that take more than one value (none counts as none)."""
    return [c for c in label_columns(rows) if c not in exclude
            and len({r[c] for r in rows if r[c] is not None}) > 1]


def at_baseline(rows: list[dict], names: list[str]) -> tuple[list[dict], dict]:
    """The rows at the first value of each of ``names`` (a row with none
    there -- the field changes nothing in its mode -- stays)."""
    base = {n: next(r[n] for r in rows if r[n] is not None) for n in names}
    return [r for r in rows if all(r[n] in (None, v) for n, v in base.items())], base


def mode_label(row: dict, policies: bool) -> str:
    if row["mode"] == "shadow" and policies:
        return f"shadow/{row['shadow_policy']}"
    return row["mode"]


def tlb_misses(row: dict) -> int:
    if row.get("tlb_kind") == "unified":
        return row.get("mmu.tlb.misses") or 0
    return (row.get("mmu.itlb.misses") or 0) + (row.get("mmu.dtlb.misses") or 0)


def vmm_cycles(row: dict) -> int:
    return sum(v or 0 for k, v in row.items() if k.startswith("cycles_by_category.")
               and k not in ("cycles_by_category.guest", "cycles_by_category.walk"))


def per_k(count, instructions) -> float | None:
    return None if not instructions or count is None else 1000.0 * count / instructions


def series_name(row: dict, names: list[str], policies: bool) -> str:
    parts = []
    for n in names:
        if n == "guest":
            parts.append(row["guest"])
        elif n == "mode":
            parts.append(mode_label(row, policies))
        elif n != "shadow_policy" and row[n] is not None:
            parts.append(f"{n}={row[n]}")
    return " · ".join(parts)


def _policies_vary(rows: list[dict]) -> bool:
    return len({r["shadow_policy"] for r in rows if r["mode"] == "shadow"}) > 1


def _series_rows(rows, x_name):
    """Series (name -> {x: row}) over ``x_name``, one per combination of
    every other varying label."""
    names = ["guest", "mode", *[n for n in varying(rows, ("guest", "mode", x_name))]]
    policies = _policies_vary(rows)
    out: dict[str, dict] = {}
    for r in rows:
        out.setdefault(series_name(r, names, policies), {})[r[x_name]] = r
    return out


# --- 1. exits and cycles ----------------------------------------------------
def exits_and_cycles(rows: list[dict]) -> SectionData:
    s = SectionData(
        "Exits and cycles per guest and mode",
        "The same guest natively, under shadow paging and under nested paging, as "
        "Adams & Agesen compared a software and a hardware-assisted VMM on forkwait: "
        "how much slower each mode is, and the VM exits that make it so. "
        "*× native* is the run's cycles over the native run's; *VMM* is the share of "
        "the cycles spent in VM exits, entries and the VMM's own steps.")
    done = finished(rows)
    if not done:
        s.missing = "no run finished"
        return s
    others = varying(done, ("guest", "mode", "shadow_policy"))
    done, base = at_baseline(done, others) if others else (done, {})
    if base:
        s.intro += " Other settings at " + ", ".join(f"{k}={v}" for k, v in base.items()) + "."
    policies = _policies_vary(done)
    native = {r["guest"]: r["cycles"] for r in done if r["mode"] == "native"}
    outcome = any(r["outcome"] != "poweroff" for r in done)
    table = [["guest", "mode", *(["outcome"] if outcome else []), "cycles", "× native",
              "VM exits", "exits / 1k instr.", "hidden", "true", "tracing", "VMM %"]]
    for r in done:
        cycles = r["cycles"]
        table.append([
            r["guest"], mode_label(r, policies), *([r["outcome"]] if outcome else []),
            cycles, cycles / native[r["guest"]] if native.get(r["guest"]) else None,
            r.get("vmm.exits_total"), per_k(r.get("vmm.exits_total"), r["instructions"]),
            r.get("vmm.faults.hidden"), r.get("vmm.faults.true"), r.get("vmm.faults.tracing"),
            100.0 * vmm_cycles(r) / cycles if cycles else None])
    s.tables.append(("", table))
    guests = list(dict.fromkeys(r["guest"] for r in done))
    modes = list(dict.fromkeys(mode_label(r, policies) for r in done))
    relative = all(native.get(g) for g in guests)
    cell = {(r["guest"], mode_label(r, policies)): r for r in done}

    def bars(value):
        return [(m, guests, [value(cell.get((g, m)), g) for g in guests]) for m in modes]
    s.figure = Figure("exits_cycles.svg", "Cycles and VM exits per guest and mode", "bars",
                      "guest", [
                          Panel("cycles × native" if relative else "cycles",
                                bars(lambda r, g: None if r is None else
                                     r["cycles"] / native[g] if relative else r["cycles"])),
                          Panel("VM exits", bars(lambda r, g: None if r is None else
                                                 r.get("vmm.exits_total") or 0))])
    return s


# --- 2. TLB size ------------------------------------------------------------
def tlb_vs_cycles(rows: list[dict]) -> SectionData:
    s = SectionData(
        "TLB size and cycles",
        "Entries per TLB against the run's cycles and TLB misses (instruction and "
        "data TLB together): past the guest's working set a larger TLB buys nothing, "
        "below it every miss is a walk -- and under a VMM the walk costs more.")
    done = finished(rows)
    sizes = sorted({r["tlb_entries"] for r in done})
    if len(sizes) < 2:
        s.missing = "one TLB size; give tlb_entries two values or more (--tlb-entries 16,64)"
        return s
    series = _series_rows(done, "tlb_entries")
    head = ["run", *[f"{n} entries" for n in sizes]]
    s.tables.append(("Cycles:", [head, *[[name, *[by[n]["cycles"] if n in by else None
                                                    for n in sizes]]
                                        for name, by in series.items()]]))
    s.tables.append(("TLB misses:", [head, *[[name, *[tlb_misses(by[n]) if n in by else None
                                                       for n in sizes]]
                                            for name, by in series.items()]]))
    s.figure = Figure("tlb_cycles.svg", "TLB size against cycles and misses", "lines",
                      "entries per TLB", [
                          Panel("cycles", _lines(series, lambda r: r["cycles"]), logy=True),
                          Panel("TLB misses", _lines(series, tlb_misses), logy=True)],
                      log2x=True)
    return s


def _lines(series: dict, value, x=lambda n: n) -> list:
    out = []
    for name, by in series.items():
        xs = sorted(by)
        out.append((name, [x(n) for n in xs], [value(by[n]) for n in xs]))
    return out


# --- 3. walk references against reach --------------------------------------
def walks_vs_reach(rows: list[dict]) -> SectionData:
    s = SectionData(
        "Nested walk references against TLB reach",
        "Page-walk references the hardware made, against the TLB's reach (entries x "
        f"{PAGE_KIB} KiB).  A native or shadow walk reads at most 2 entries; a nested "
        "walk translates each of them and the final address through the nested table, "
        "up to 8 references (the nested-translation cache saves some), so every miss "
        "that a larger reach avoids is worth more under nested paging.")
    done = finished(rows)
    sizes = sorted({r["tlb_entries"] for r in done})
    if len(sizes) < 2 or not any(r["mode"] == "nested" for r in done):
        s.missing = ("nested runs at two TLB sizes or more; give mode nested and "
                     "tlb_entries two values (--mode native,nested --tlb-entries 16,64)")
        return s
    series = _series_rows(done, "tlb_entries")
    head = ["run", *[f"{n * PAGE_KIB} KiB" for n in sizes]]
    s.tables.append(("Walk references:", [head, *[
        [name, *[by[n]["mmu.walk_refs"] if n in by else None for n in sizes]]
        for name, by in series.items()]]))
    s.tables.append(("References per walk:", [head, *[
        [name, *[_ratio(by[n]["mmu.walk_refs"], by[n]["mmu.walks"]) if n in by else None
                 for n in sizes]] for name, by in series.items()]]))
    s.figure = Figure("walks_reach.svg", "Walk references against TLB reach", "lines",
                      "TLB reach (KiB)", [
                          Panel("walk references",
                                _lines(series, lambda r: r["mmu.walk_refs"],
                                       lambda n: n * PAGE_KIB), logy=True),
                          Panel("references per walk",
                                _lines(series, lambda r: _ratio(r["mmu.walk_refs"],
                                                                r["mmu.walks"]),
                                       lambda n: n * PAGE_KIB))],
                      log2x=True)
    return s


def _ratio(a, b) -> float | None:
    return None if not b or a is None else a / b


# --- 4. shadow policy against page-table writes ----------------------------
def policy_vs_pt_writes(rows: list[dict]) -> SectionData:
    s = SectionData(
        "Shadow policy against the guest's page-table write rate",
        "Under a trace policy every guest write to a shadowed page table is a tracing "
        "fault, so its rate (per 1,000 instructions, measured under trace-cache or "
        "trace-drop) is the guest's page-table write rate.  Out-of-sync policies pay "
        "one unsync fault per table and a resync at the next CR3 load instead: they "
        "win when tables are written often, and lose on the resyncs when not.")
    shadow = [r for r in finished(rows) if r["mode"] == "shadow"]
    policies = list(dict.fromkeys(r["shadow_policy"] for r in shadow))
    if len(policies) < 2:
        s.missing = ("one shadow policy; give shadow_policy two values or more "
                     "(--mode shadow --shadow-policy trace-cache,oos-cache)")
        return s
    names = ["guest", *varying(shadow, ("guest", "mode", "shadow_policy"))]
    groups: dict[str, dict] = {}
    for r in shadow:
        groups.setdefault(series_name(r, names, False), {})[r["shadow_policy"]] = r
    rate = {}
    for name, by in groups.items():
        trace = by.get("trace-cache") or by.get("trace-drop")
        if trace is not None:
            rate[name] = per_k(trace.get("vmm.faults.tracing") or 0, trace["instructions"])
    if not rate:
        s.missing = "a trace policy (trace-cache or trace-drop) to measure the write rate"
        return s
    head = ["guest", "PT writes / 1k instr.", *[f"{p} cycles" for p in policies],
            *[f"{p} exits" for p in policies]]
    body = []
    for name in sorted(rate, key=lambda n: (rate[n], n)):
        by = groups[name]
        body.append([name, rate[name], *[by[p]["cycles"] if p in by else None for p in policies],
                     *[by[p].get("vmm.exits_total") if p in by else None for p in policies]])
    s.tables.append(("", [head, *body]))
    order = sorted(rate, key=lambda n: (rate[n], n))
    series = []
    for p in policies:
        pts = [(rate[n], groups[n][p]) for n in order if p in groups[n]]
        series.append((p, [x for x, _ in pts],
                       [_ratio(r["cycles"], r["instructions"]) for _, r in pts]))
    s.figure = Figure("policy_pt_writes.svg", "Shadow policy against page-table writes",
                      "lines", "guest page-table writes per 1,000 instructions",
                      [Panel("cycles per instruction", series)])
    return s
