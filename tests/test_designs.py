"""Hypervisor designs compared: the relations a reviewer of the KVM/ARM papers
expects, and `armvirt compare` end to end.  (The invariant for every design and
path is in test_invariant.py.)"""
import glob
import json
import os
import subprocess
import sys

import pytest

from armvirt import cli, compare, knobs, paths
from armvirt.compare_report import OPERATIONS
from el2.design import Design


@pytest.fixture
def table(xgene_table):
    return xgene_table


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


def test_eoi_with_a_vgic_is_under_5_percent_of_eoi_without(path_run):
    with_vgic = path_run("eoi").total
    without = path_run("eoi", {"vgic": False}).total
    assert with_vgic < 0.05 * without, f"expected {with_vgic} < 5% of {without}"


def test_gicv3_vgic_save_costs_less_than_gicv2(path_run):
    def vgic_save(gic):
        run = path_run("hypercall", {"gic_version": gic})
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


def test_eager_switching_costs_vhe_its_advantage(path_run):
    lazy = path_run("hypercall", {"hyp_mode": "vhe"}).total
    eager = path_run("hypercall", {"hyp_mode": "vhe", "lazy": False}).total
    nvhe = path_run("hypercall").total
    assert lazy < eager < nvhe, f"expected lazy VHE < eager VHE < split mode, got {lazy}, {eager}, {nvhe}"


def test_design_names():
    assert Design.make("kvm-split") == Design.make("nvhe") == Design("nvhe", False)
    assert Design.make("vhe").lazy and not Design.make("vhe", False).lazy
    with pytest.raises(ValueError, match="hyp-mode"):
        Design.make("kvm")


def armvirt(*args):
    return subprocess.run([sys.executable, "-m", "armvirt", *args], capture_output=True, text=True, timeout=120)


def test_compare_json_has_the_documented_shape(tmp_path, table, shared_compare, capsys):
    """In process, on the table's runs (the CLI's defaults make the same machines)."""
    png = tmp_path / "c.png"
    rc = cli.main(["compare", "--format", "json", "--plot", str(png)])
    out, err = capsys.readouterr()
    assert rc == 0, f"expected exit 0, got {rc}: {err}"
    doc = json.loads(out)
    assert doc["rows"] == table.rows, f"expected the table's cycles {table.rows}, got {doc['rows']}"
    assert list(doc["rows"]["hypercall"]) == ["nvhe", "vhe", "type1"], f"got {doc['rows']['hypercall']}"
    assert list(doc["rows"]) == list(OPERATIONS), f"expected {OPERATIONS}, got {list(doc['rows'])}"
    assert set(doc["definitions"]) == set(OPERATIONS), f"expected a definition per operation, got {doc['definitions']}"
    assert png.read_bytes()[:4] == b"\x89PNG", "expected a PNG plot"


def test_compare_breakdown_totals_match_the_trap_paths(path_run):
    r = armvirt("compare", "--breakdown", "hypercall", "--designs", "kvm-split,type1", "--format", "json")
    assert r.returncode == 0, f"expected exit 0, got {r.returncode}: {r.stderr}"
    doc = json.loads(r.stdout)
    for d in ("nvhe", "type1"):
        want = path_run("hypercall", {"hyp_mode": d}).total
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
def test_fp_switching_follows_the_fp_switch(path_run, design, fp, expect_fp_steps):
    """Eager FP/SIMD moves guest and host registers on every trap; lazy, only when the
    guest uses them (these guests never do); Xen never on a trap."""
    run = path_run("hypercall", {"hyp_mode": design, "lazy_fp": fp})
    fp_steps = [s.what for s in run.segment.steps if s.group == "FP/SIMD registers"]
    assert len(fp_steps) == expect_fp_steps, f"{design} fp={fp}: expected {expect_fp_steps} FP steps, got {fp_steps}"
    assert run.guest_avg == run.total, f"{design} fp={fp}: guest {run.guest_avg} != table {run.total}"


def test_type1_vm_switch_moves_every_group_at_put_and_load(path_run):
    run = path_run("vm-switch", {"hyp_mode": "type1", "lazy": False})
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


# The benchmark workloads run here with their .data knob (armvirt.knobs) set smaller: what
# this matrix checks is that every exit path of an image works under each design, and a few
# rounds of the same code take the same exits as the 224 rounds (50,000 hypercalls) that
# bench/engine.py times.  16 rounds still take compute-tick's timer IRQ a dozen times.
WORKLOAD = {"compute.elf": 16, "compute-tick.elf": 16, "hvc-storm.elf": 2000}
WORKLOAD_LINE = {"compute.elf": "compute: rounds={}", "compute-tick.elf": "compute: rounds={}",
                 "hvc-storm.elf": "hvc-storm: calls={0} not_supported={0}"}


@pytest.fixture(scope="session")
def workload(shared_tmp):
    """The image to run: a bundled one, or its copy with the knob set to WORKLOAD's size
    (written once, whole, where every xdist worker finds the same path)."""
    def image(name: str) -> str:
        if name not in WORKLOAD:
            return name
        mine = shared_tmp / "workloads" / str(os.getpid())      # this worker's, then renamed
        mine.mkdir(parents=True, exist_ok=True)
        part = knobs.patched(paths.image_path(name), WORKLOAD[name], str(mine))
        final = os.path.join(mine.parent, os.path.basename(part))
        os.replace(part, final)          # atomic; a concurrent worker's copy has the same bytes
        return final
    return image


def _checksum(res) -> str | None:
    return next((l.split("=", 1)[1] for l in res.console.lines if l.startswith("compute: checksum=")), None)


@pytest.mark.parametrize("gic", [2, 3])
@pytest.mark.parametrize("design", ["vhe", "type1"])
@pytest.mark.parametrize("image", sorted(os.path.basename(p) for p in glob.glob(paths.image_path("*.elf"))))
def test_every_image_runs_unchanged_under_each_design(boot, workload, image, design, gic):
    res = boot(workload(image), smp=SMP_IMAGES.get(image, 1), gic_version=gic, hyp_mode=design,
               **INPUT.get(image, {}))
    assert (res.status, res.reason) == (0, "shutdown"), \
        f"{image} under {design}, GICv{gic}: expected status 0, got {res.status} ({res.reason}: {res.message})\n" \
        f"{res.console.text[-2000:]}"
    if image in WORKLOAD:
        want = WORKLOAD_LINE[image].format(WORKLOAD[image])
        assert want in res.console.lines, f"{image}: expected {want!r} (the knob set), got {res.console.lines}"
    if image.startswith("compute"):        # the same work under every design, with or without a tick
        ref = _checksum(boot(workload("compute.elf")))
        assert ref and _checksum(res) == ref, \
            f"{image} under {design}, GICv{gic}: expected checksum {ref} (compute.elf, nvhe), got {_checksum(res)}"


# --- issue 10 item 5: relations the model must reproduce without tuning (xgene, GICv2) -----------

@pytest.mark.parametrize("op", ["hypercall", "gic_trap"])
def test_type1_below_split_mode(table, op):
    """ISCA'16: Xen ARM's hypercall and interrupt-controller trap are cheaper than KVM/ARM's."""
    r = table.rows[op]
    assert r["type1"] < r["nvhe"], f"expected type1 < nvhe for {op}, got {r}"


@pytest.mark.parametrize("op", ["hypercall", "gic_trap", "mmio_kernel", "mmio_user"])
def test_vhe_below_split_mode_for_every_trap(table, op):
    r = table.rows[op]
    assert r["vhe"] < r["nvhe"], f"expected vhe < nvhe for {op}, got {r}"


@pytest.mark.parametrize("design", ["nvhe", "vhe", "type1"])
def test_eoi_with_a_vgic_is_under_100_cycles_and_never_exits(table, path_run, design):
    cycles = table.rows["eoi"][design]
    assert cycles is not None and cycles < 100, f"{design}: expected eoi < 100 cycles, got {cycles}"
    run = path_run("eoi", {"hyp_mode": design})
    where = {s.where for s in run.segment.steps}
    assert where == {"guest EL1"} and len(run.segment.steps) == 1, \
        f"{design}: expected one EOI access by the guest, no exit, got {run.segment.steps}"


def test_mmio_kernel_has_no_device_model(table, path_run):
    """I/O kernel: the trap completes in the host kernel (an ioeventfd), so it costs less than
    the GICD_IIDR read that the vGIC distributor emulates, and no step is a device's."""
    r, g = table.rows["mmio_kernel"], table.rows["gic_trap"]
    assert all(r[d] < g[d] for d in r), f"expected mmio_kernel < gic_trap in every design, got {r} {g}"
    steps = [s.what for s in path_run("mmio-kernel").segment.steps]
    assert any(w.startswith("ioeventfd_write") for w in steps), f"expected the ioeventfd step, got {steps}"
    assert not any("in-kernel device" in w for w in steps), f"expected no device model, got {steps}"


# --- issue 10 item 4: VHE and Xen checked against their mechanisms -------------------------------

def _steps(path_run, path, **cfg):
    return path_run(path, cfg).segment.steps


def test_vhe_user_exit_puts_and_loads_the_deferred_state(path_run):
    """ATC'17: a user-space exit ends KVM_RUN, so kvm_arch_vcpu_put / kvm_arch_vcpu_load move
    the lazily switched state (kvm_vcpu_put_sysregs_vhe / kvm_vcpu_load_sysregs_vhe)."""
    steps = _steps(path_run, "mmio-user", hyp_mode="vhe")
    what = [s.what for s in steps]
    out = what.index("return to user space (KVM_EXIT_MMIO)")
    back = what.index("ioctl(KVM_RUN): re-enter the kernel")
    put = [s for s in steps[out + 1:back] if s.group]
    load = [s for s in steps[back + 1:] if s.group and "vcpu_load" in s.what]
    assert any(s.group == "EL1 system registers" and s.kind == "save" for s in put), \
        f"expected vcpu_put to save the guest's EL1 registers, got {[s.what for s in put]}"
    assert any(s.group == "EL1 system registers" and s.kind == "restore" for s in load), \
        f"expected vcpu_load to restore the guest's EL1 registers, got {[s.what for s in load]}"
    assert {s.group for s in put} >= {"VGIC registers", "Timer registers"}, \
        f"expected the deferred vGIC and timer state at put, got {[s.what for s in put]}"
    hvc = [s.what for s in _steps(path_run, "hypercall", hyp_mode="vhe")]
    assert not any("vcpu_put" in w or "vcpu_load" in w for w in hvc), \
        f"a hypercall stays inside KVM_RUN: no put/load expected, got {hvc}"


def test_split_mode_user_exit_defers_nothing(path_run):
    """Linux 4.0's split mode switches everything on each trap: vcpu_put has nothing to move."""
    what = [s.what for s in _steps(path_run, "mmio-user")]
    assert not any("vcpu_put" in w or "vcpu_load" in w for w in what), \
        f"expected no deferred state under eager nvhe, got {what}"


def test_xen_hypercall_touches_only_its_trap_frame(path_run):
    """A Xen no-op hypercall saves and restores the trap frame of entry.S (GPRs, ELR/SPSR_EL2,
    SPSR/SP/ELR_EL1, SP_EL0), switches no EL1 system register, and calls the hypercall table."""
    from el2.context import XEN_FRAME_SPECIAL, XEN_FRAME_X
    steps = _steps(path_run, "hypercall", hyp_mode="type1")
    groups = {s.group for s in steps if s.group}
    assert groups == {"GP registers"}, f"expected only the GP trap frame, got {groups}"
    frame = [s for s in steps if s.group]
    want = len(XEN_FRAME_X) + len(XEN_FRAME_SPECIAL)
    assert [s.regs for s in frame] == [want, want], f"expected the {want}-register frame saved and restored, got {frame}"
    assert any(s.what.startswith("do_trap_hypercall") for s in steps), \
        f"expected the return through do_trap_hypercall, got {[s.what for s in steps]}"


@pytest.mark.parametrize("path,words", [("eoi", "1023"), ("gic-trap", "GICD_IIDR"), ("mmio-user", "DeviceID"),
                                        ("mmio-kernel", "no device model"), ("ack-eoi", "acknowledge")])
def test_trap_path_title_prints_the_definition(path, words, cli_run, shared_paths):
    r = cli_run("trap-path", path)
    assert r.returncode == 0, f"trap-path {path} failed: {r.stderr}"
    title = r.stdout.splitlines()[0]
    assert paths.PATHS[path].description in title and words in title, \
        f"expected the definition ({paths.PATHS[path].description!r}) in the title, got {title!r}"
