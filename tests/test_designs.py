"""Hypervisor designs compared: the relations a reviewer of the KVM/ARM papers
expects, and `armvirt compare` end to end.  (The invariant for every design and
path is in test_invariant.py.)"""
import glob
import json
import os
import subprocess
import sys

import pytest

from armvirt import compare, paths
from armvirt.compare_report import OPERATIONS
from el2.design import Design


@pytest.fixture(scope="module")
def table(xgene):
    return compare.run_compare(["nvhe", "vhe", "type1"], xgene, {})


def test_every_design_runs_the_microbenchmark_to_the_end(table):
    for d, (status, reason, message) in table.statuses.items():
        assert (status, reason) == (0, "shutdown"), f"{d}: expected status 0, got {status} ({reason}: {message})"
    missing = [(op, d) for op, cells in table.rows.items() for d, v in cells.items() if v is None]
    assert not missing, f"expected every operation measured under every design, missing {missing}"


def test_hypercall_type1_below_vhe_below_split_mode(table):
    h = table.rows["hypercall"]
    assert h["type1"] < h["vhe"] < h["nvhe"], f"expected type1 < vhe < nvhe, got {h}"


def test_vhe_saves_at_least_70_percent_of_the_split_mode_hypercall(table):
    h = table.rows["hypercall"]
    assert h["vhe"] <= 0.3 * h["nvhe"], f"expected vhe <= 30% of nvhe ({0.3 * h['nvhe']:.0f}), got {h}"


def test_eoi_with_a_vgic_is_under_5_percent_of_eoi_without(xgene):
    with_vgic = paths.run_path("eoi", xgene).total
    without = paths.run_path("eoi", xgene, {"vgic": False}).total
    assert with_vgic < 0.05 * without, f"expected {with_vgic} < 5% of {without}"


def test_gicv3_vgic_save_costs_less_than_gicv2(xgene):
    def vgic_save(gic):
        run = paths.run_path("hypercall", xgene, {"gic_version": gic})
        return next(r["save"] for r in paths.world_switch_rows(run.segment) if r["group"] == "VGIC registers")
    v2, v3 = vgic_save(2), vgic_save(3)
    assert v3 < v2, f"expected GICv3 vGIC save < GICv2, got {v3} vs {v2}"


def test_split_mode_io_to_user_space_costs_more_than_to_the_kernel(table):
    assert table.rows["mmio_user"]["nvhe"] > table.rows["mmio_kernel"]["nvhe"], \
        f"expected mmio_user > mmio_kernel under nvhe, got {table.rows['mmio_user']} {table.rows['mmio_kernel']}"


def test_type1_sends_user_io_to_dom0(table):
    """Xen's guest I/O to a device model crosses to dom0 and back: dearer than KVM's."""
    u = table.rows["mmio_user"]
    assert u["type1"] > u["nvhe"] > u["vhe"], f"expected type1 > nvhe > vhe for mmio_user, got {u}"


def test_world_switch_groups_follow_the_design(table):
    ws = table.world_switch
    assert ws["nvhe"]["EL1 system registers"]["save"] > 0, f"split mode switches EL1 on a trap: {ws['nvhe']}"
    assert ws["vhe"]["EL1 system registers"] == {"save": 0, "restore": 0}, f"VHE defers EL1: {ws['vhe']}"
    nonzero = {g for g, v in ws["type1"].items() if v["save"] or v["restore"]}
    assert nonzero == {"GP registers"}, f"Xen touches only GP registers on a hypercall, got {nonzero}"


def test_eager_switching_costs_vhe_its_advantage(xgene):
    lazy = paths.run_path("hypercall", xgene, {"hyp_mode": "vhe"}).total
    eager = paths.run_path("hypercall", xgene, {"hyp_mode": "vhe", "lazy": False}).total
    nvhe = paths.run_path("hypercall", xgene).total
    assert lazy < eager < nvhe, f"expected lazy VHE < eager VHE < split mode, got {lazy}, {eager}, {nvhe}"


def test_design_names():
    assert Design.make("kvm-split") == Design.make("nvhe") == Design("nvhe", False)
    assert Design.make("vhe").lazy and not Design.make("vhe", False).lazy
    with pytest.raises(ValueError, match="hyp-mode"):
        Design.make("kvm")


def armvirt(*args):
    return subprocess.run([sys.executable, "-m", "armvirt", *args], capture_output=True, text=True, timeout=120)


def test_compare_json_has_the_documented_shape(tmp_path):
    png = tmp_path / "c.png"
    r = armvirt("compare", "--format", "json", "--plot", str(png))
    assert r.returncode == 0, f"expected exit 0, got {r.returncode}: {r.stderr}"
    doc = json.loads(r.stdout)
    assert list(doc["rows"]["hypercall"]) == ["nvhe", "vhe", "type1"], f"got {doc['rows']['hypercall']}"
    assert list(doc["rows"]) == list(OPERATIONS), f"expected the operations {OPERATIONS}, got {list(doc['rows'])}"
    assert png.read_bytes()[:4] == b"\x89PNG", "expected a PNG plot"


def test_compare_breakdown_totals_match_the_trap_paths(xgene):
    r = armvirt("compare", "--breakdown", "hypercall", "--designs", "kvm-split,type1", "--format", "json")
    assert r.returncode == 0, f"expected exit 0, got {r.returncode}: {r.stderr}"
    doc = json.loads(r.stdout)
    for d in ("nvhe", "type1"):
        want = paths.run_path("hypercall", xgene, {"hyp_mode": d}).total
        got = doc["designs"][d]["total"]
        assert got == want, f"{d}: expected {want}, got {got}"


@pytest.mark.parametrize("args,needle", [(["--designs", "kvm"], "hyp-mode"),
                                         (["--plot", "x.pdf"], ".png or .svg"),
                                         (["--breakdown", "nope"], "invalid choice")])
def test_compare_rejects_bad_options(args, needle):
    r = armvirt("compare", *args)
    assert r.returncode == 2 and needle in r.stderr, f"expected exit 2 mentioning {needle!r}, got {r.returncode}: {r.stderr}"


@pytest.mark.parametrize("design,fp,expect_fp_steps", [
    ("nvhe", None, 4), ("nvhe", True, 0), ("vhe", None, 0), ("vhe", False, 4), ("type1", False, 0)])
def test_fp_switching_follows_the_fp_switch(xgene, design, fp, expect_fp_steps):
    """Eager FP/SIMD moves guest and host registers on every trap; lazy, only when the
    guest uses them (these guests never do); Xen never on a trap."""
    run = paths.run_path("hypercall", xgene, {"hyp_mode": design, "lazy_fp": fp})
    fp_steps = [s.what for s in run.segment.steps if s.group == "FP/SIMD registers"]
    assert len(fp_steps) == expect_fp_steps, f"{design} fp={fp}: expected {expect_fp_steps} FP steps, got {fp_steps}"
    assert run.guest_avg == run.total, f"{design} fp={fp}: guest {run.guest_avg} != table {run.total}"


def test_type1_vm_switch_moves_every_group_at_put_and_load(xgene):
    run = paths.run_path("vm-switch", xgene, {"hyp_mode": "type1", "lazy": False})
    moved = {(s.group, s.kind) for s in run.segment.steps if "vcpu_" in s.what}
    want = {(g, k) for g in ("FP/SIMD registers", "EL1 system registers", "VGIC registers", "Timer registers",
                             "EL2 virtual memory registers") for k in ("save", "restore")}
    assert want <= moved, f"expected put/load of {sorted(want - moved)} too, got {sorted(moved)}"


def test_gicv3_era_profile_runs_every_design(tmp_path):
    r = armvirt("compare", "--profile", "gicv3-server", "--gic", "3", "--format", "csv")
    assert r.returncode == 0, f"expected exit 0, got {r.returncode}: {r.stderr}"
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "operation,nvhe,vhe,type1" and len(lines) == 1 + len(OPERATIONS), \
        f"expected a header and {len(OPERATIONS)} operations, got {lines}"
    assert all(cell for line in lines[1:] for cell in line.split(",")), f"every cell measured: {lines}"


SMP_IMAGES = {"smp-hello.elf": 4, "spinlock.elf": 4, "ipi.elf": 2, "microbench.elf": 2, "smp-mmu.elf": 4}
# Images that read their input: the scripted stdin and initrd they are given (images/README.md)
INPUT = {"serial-in.elf": dict(stdin=open(paths.image_path("serial-in/input.txt"), "rb").read(),
                               initrd=paths.image_path("serial-in/env.txt"))}


@pytest.mark.parametrize("gic", [2, 3])
@pytest.mark.parametrize("design", ["vhe", "type1"])
@pytest.mark.parametrize("image", sorted(os.path.basename(p) for p in glob.glob(paths.image_path("*.elf"))))
def test_every_image_runs_unchanged_under_each_design(boot, image, design, gic):
    res = boot(image, smp=SMP_IMAGES.get(image, 1), gic_version=gic, hyp_mode=design, **INPUT.get(image, {}))
    assert (res.status, res.reason) == (0, "shutdown"), \
        f"{image} under {design}, GICv{gic}: expected status 0, got {res.status} ({res.reason}: {res.message})\n" \
        f"{res.console.text[-2000:]}"
