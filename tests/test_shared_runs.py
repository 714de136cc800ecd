"""The sharing of runs among tests (tests/runs.py): a shared run is the run the test
would have made itself, and runs that differ in any setting are never shared."""
from armvirt import paths
from armvirt.console import Console
from armvirt.machine import Machine, MachineConfig
from tests.runs import BootRuns, PathRuns, path_key


def test_paths_of_one_recording_share_a_key_and_settings_split_them():
    one = {path_key(p) for p in ("mmio-kernel", "io-out", "io-in")}
    assert len(one) == 1, f"mmio-kernel, io-out and io-in are one microbench run, got keys {one}"
    assert path_key("hypercall") == path_key("hypercall", {"gic_version": 2, "vgic": True}), \
        "explicit defaults are the same machine"
    keys = {path_key("hypercall", o) for o in ({}, {"gic_version": 3}, {"vgic": False}, {"hyp_mode": "vhe"})}
    assert len(keys) == 4, f"every setting is its own run, got {keys}"
    assert path_key("io-in") != path_key("io-in", {"smp": 1}), "the path's own settings can be overridden"


def test_a_shared_path_run_is_the_path_run(xgene):
    shared = PathRuns(xgene)("hypercall")
    fresh = paths.run_path("hypercall", xgene)
    assert [(s.where, s.what, s.cycles) for s in shared.segment.steps] == \
        [(s.where, s.what, s.cycles) for s in fresh.segment.steps], "the same steps"
    assert (shared.total, shared.guest_avg, shared.iterations) == (fresh.total, fresh.guest_avg, fresh.iterations)


def test_a_boot_read_from_another_worker_is_the_boot(xgene, tmp_path):
    """The first BootRuns runs and writes the record; a second (another worker's) reads it."""
    made, read = BootRuns(xgene, tmp_path)("hello.elf"), BootRuns(xgene, tmp_path)("hello.elf")
    assert len(list(tmp_path.glob("boot-*.pickle"))) == 1, f"one record, got {list(tmp_path.iterdir())}"
    fresh = Machine(MachineConfig(kernel=paths.image_path("hello.elf"), max_insns=400_000_000), xgene,
                    console=Console(echo=False)).run()
    for res, what in ((made, "made"), (read, "read back")):
        for field in ("status", "reason", "insns", "cycles", "stats", "counters", "guest_errors", "extra"):
            assert getattr(res, field) == getattr(fresh, field), \
                f"{what}: {field} expected {getattr(fresh, field)!r}, got {getattr(res, field)!r}"
        assert res.console.lines == fresh.console.lines, f"{what}: the console differs"
    assert read is not made and BootRuns(xgene, tmp_path)("hello.elf", smp=2) is not None
    assert len(list(tmp_path.glob("boot-*.pickle"))) == 2, "another config is another run"
