"""Runs shared by the tests that only read them (the session fixtures in conftest.py):
each keyed by what it depends on (the whole machine config), made once."""
from __future__ import annotations

import copy
import dataclasses
import fcntl
import hashlib
import pickle
from pathlib import Path

from armvirt import compare, paths
from armvirt.console import Console
from armvirt.machine import Machine, MachineConfig, RunResult
from armvirt.profile import CostProfile
from armvirt.serial import ScriptInput

KEEP_RECORDINGS = 4       # a microbench recording holds ~300k steps (20-30 MB)


def path_key(path: str, overrides: dict | None = None) -> str:
    """What a path's recording depends on: its image, its peer VM, the whole machine
    config (so mmio-kernel, io-out and io-in, one microbench run, have one key).  Short,
    and without the '@' and ']' that xdist's loadgroup reads in a node id."""
    spec = paths.PATHS[path]
    digest = hashlib.sha1(f"{spec.peer}:{paths.path_config(spec, overrides)!r}".encode()).hexdigest()
    return f"{spec.image[:-4]}-{digest[:10]}"


class PathRuns:
    """paths.run_path, with one recording per path_key; the last KEEP_RECORDINGS are
    kept (conftest orders the cases of one run next to each other)."""

    def __init__(self, profile: CostProfile):
        self.profile = profile
        self.recordings: dict[str, tuple] = {}

    def __call__(self, path: str, overrides: dict | None = None) -> paths.PathRun:
        spec, key = paths.PATHS[path], path_key(path, overrides)
        if key not in self.recordings:
            self.recordings[key] = paths.record_path(spec, self.profile, paths.path_config(spec, overrides))
            while len(self.recordings) > KEEP_RECORDINGS:      # the oldest first (a dict keeps order)
                del self.recordings[next(iter(self.recordings))]
        return paths.select_path(spec, *self.recordings[key])


RUN_COMPARE = compare.run_compare        # the real one, also while a test patches the module's


class Comparisons:
    """compare.run_compare, one run per (designs, profile, machine config) when no trace is
    asked for (a trace is written while running: those run every time).  The key is the
    MachineConfig the features make, so the CLI's explicit defaults and {} are one run."""

    def __init__(self):
        self.done: dict[str, compare.Comparison] = {}

    def __call__(self, designs, profile: CostProfile, features: dict, trace_out=None) -> compare.Comparison:
        if trace_out is not None:
            return RUN_COMPARE(designs, profile, features, trace_out)
        key = repr((list(designs), profile, MachineConfig(kernel="", **features)))
        if key not in self.done:
            self.done[key] = RUN_COMPARE(list(designs), profile, features)
        return self.done[key]


class BootRuns:
    """Machine(...).run() of a bundled image for tests that only read the result: each
    config booted once per session, by the first xdist worker that needs it (under a
    file lock in `shared`, the session's directory for every worker), the others read
    its pickled RunResult (a few KB: console lines, counters, exit statistics)."""

    def __init__(self, profile: CostProfile, shared: Path):
        self.profile, self.shared = profile, shared
        self.done: dict[str, RunResult] = {}

    def __call__(self, name: str, stdin: bytes | None = None, **cfg) -> RunResult:
        config = MachineConfig(kernel=paths.image_path(name), max_insns=400_000_000, **cfg)
        key = hashlib.sha1(repr((config, stdin)).encode()).hexdigest()[:16]
        if key not in self.done:
            record = self.shared / f"boot-{key}.pickle"
            with open(self.shared / f"boot-{key}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if record.exists():
                    self.done[key] = pickle.loads(record.read_bytes())
                else:
                    m = Machine(config, self.profile, console=Console(echo=False),
                                serial_input=None if stdin is None else ScriptInput(stdin))
                    res = self.done[key] = m.run()
                    quiet = copy.copy(res.console)
                    quiet.out = None                    # the console's stream stays here
                    part = record.with_suffix(".part")        # whole, or not there (an interrupted run)
                    part.write_bytes(pickle.dumps(dataclasses.replace(res, console=quiet)))
                    part.rename(record)
        return self.done[key]
