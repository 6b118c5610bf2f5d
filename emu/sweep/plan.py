"""From a spec to the runs: guests found and assembled, one validated
``Config`` per run, each run's content key.  Nothing runs here; every
mistake is one line (a ``SpecError``, or the assembler's own error)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from .. import programs
from ..asm import Image
from ..cost import DEFAULT_COSTS, CostModel
from ..errors import ConfigError, EmuError
from ..system import Config
from .cell import emulator_version, run_key
from .spec import Spec, SpecError, applies, at, describe, expand

CONFIG_FIELDS = tuple(f.name for f in fields(Config) if f.name != "costs")


@dataclass(frozen=True)
class Run:
    """One row of the sweep to be."""

    index: int
    guest: str              # as the spec names it
    path: str               # the source file
    config: Config
    key: str                # content address of its record
    cost_fields: tuple      # the cost-model numbers the spec sets (row columns)

    def labels(self) -> dict:
        """The row's columns that say what ran: the guest and every
        configuration field (none where it changes nothing in this mode)."""
        c = self.config
        out = {"guest": self.guest}
        for name in CONFIG_FIELDS:
            out[name] = getattr(c, name) if applies(name, c.mode) else None
        if out["machine_mib"] is not None or c.mode != "native":
            out["machine_mib"] = c.machine_bytes >> 20     # what the machine had
        for name in self.cost_fields:
            out[f"costs.{name}"] = getattr(c.costs, name)
        return out


@dataclass
class Plan:
    spec: Spec
    runs: list
    images: dict            # path -> Image
    emulator: str
    merged: int = 0         # runs the spec named twice (the same guest and config)


def find_guest(name: str, folder: str) -> str:
    """A guest named in a spec: a path (from the spec's folder, then from
    here) or a bundled program's name."""
    if not os.path.isabs(name):
        near = os.path.join(folder, name)
        if os.path.isfile(near):
            return near
    try:
        return programs.resolve(name)
    except EmuError:
        raise SpecError(f"unknown guest '{name}': no such file, and no bundled guest "
                        "program of that name ('emu list' shows them)") from None


def find_vmm(name: str, folder: str) -> str:
    """A VMM named in a spec (``vmm``, a shadow-paging VMM of ``emu lab``):
    ``builtin``, or a Python file (from the spec's folder, then from here),
    as an absolute path; it must load (one line if it does not)."""
    from ..lab.loader import BUILTIN, load_vmm
    if name == BUILTIN:
        return name
    near = os.path.join(folder, name)
    path = os.path.abspath(near if not os.path.isabs(name) and os.path.isfile(near) else name)
    try:
        load_vmm(path)
    except EmuError as e:
        raise SpecError(f"vmm {name}: {e}") from None
    return path


def guest_options(path: str) -> dict:
    """The config fields a program's ``; emu-options:`` line changes."""
    extra = programs.default_options(path)
    if not extra:
        return {}
    from ..cli import UsageError, build_parser, config_from
    try:
        config = config_from(build_parser().parse_args(["run", path, *extra]))
    except (UsageError, ConfigError) as e:
        raise SpecError(f"{path}: its emu-options line: {e}") from None
    default = Config()
    return {name: getattr(config, name) for name in CONFIG_FIELDS
            if getattr(config, name) != getattr(default, name)}


def make_config(settings: dict, base: dict, where: str) -> Config:
    """Config defaults, then the guest's own options, then the sweep's."""
    values = {**base, **{k: v for k, v in settings.items()
                         if k != "guest" and not k.startswith("costs.")}}
    mode = values.get("mode", Config.mode)
    default = Config()
    for name in list(values):          # fields that change nothing in this mode
        if not applies(name, mode):
            values[name] = getattr(default, name)
    costs = {k[6:]: v for k, v in settings.items() if k.startswith("costs.")}
    try:
        return Config(**values, costs=CostModel(**{**DEFAULT_COSTS.describe(), **costs}))\
            .validate()
    except ConfigError as e:
        raise SpecError(f"{where}: {e}") from None


def make_plan(spec: Spec, load=None) -> Plan:
    """Expand, find, assemble (``load(path) -> Image``), validate, key."""
    if load is None:
        from ..cli import load
    settings_list = expand(spec)
    if any("guest" not in s for s in settings_list):
        raise SpecError(f"{at(spec)}no guest to run (give a guest axis, a guest in "
                        "every [[run]], or --guest)")
    emu = emulator_version()
    paths, options, images = {}, {}, {}
    cost_fields = sorted({k[6:] for s in settings_list for k in s if k.startswith("costs.")})
    runs, seen, merged = [], set(), 0
    vmms: dict = {}
    for settings in settings_list:
        guest = settings["guest"]
        if guest not in paths:
            try:
                paths[guest] = find_guest(guest, spec.folder)
            except SpecError as e:
                raise SpecError(f"{at(spec)}{e}") from None
            path = paths[guest]
            options[path] = guest_options(path)
            if path not in images:
                images[path] = load(path)
        path = paths[guest]
        config = make_config(settings, options[path],
                             f"{at(spec)}run {describe(settings)}")
        if config.vmm is not None:          # (in shadow mode: elsewhere it was reset)
            if config.vmm not in vmms:
                try:
                    vmms[config.vmm] = find_vmm(config.vmm, spec.folder)
                except SpecError as e:
                    raise SpecError(f"{at(spec)}{e}") from None
            config = config.with_(vmm=vmms[config.vmm])
        identity = (guest, config)
        if identity in seen:
            merged += 1
            continue
        seen.add(identity)
        image: Image = images[path]
        runs.append(Run(len(runs), guest, path, config, run_key(image, config, emu),
                        tuple(cost_fields)))
    return Plan(spec, runs, images, emu, merged)
