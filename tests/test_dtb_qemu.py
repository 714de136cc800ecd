"""armvirt's device tree against QEMU's for the same `-M virt` command line, node by
node and property by property.  Every difference must be one listed in ACCEPTED with
its reason, and every listed difference must still occur (no stale excuses).

Compared with QEMU's default virtualization=off, which is what a KVM guest gets: the
guest runs at EL1 with no EL2 of its own, so its GIC node has no GICH/GICV regions and
no maintenance interrupt, and PSCI is over HVC."""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from armvirt import boot as bootloader
from armvirt.dtb import DtbConfig, build_dtb
from engine import layout
from tests import dt_tree
from tests.tools import need

DATA = Path(__file__).parent / "data"
MIB = 1 << 20


@dataclass(frozen=True)
class Accepted:
    path: str                  # regex, full match; a node entry covers its whole subtree
    prop: str | None           # None: the node (and everything under it)
    side: str                  # "qemu": only QEMU has it; "armvirt": only armvirt; "both": differs
    reason: str
    when: frozenset = frozenset()   # applies only to comparisons with all these tags


ACCEPTED = [
    Accepted(r"/platform-bus@c000000", None, "qemu", "no platform bus for dynamic sysbus devices: the board is fixed"),
    Accepted(r"/fw-cfg@9020000", None, "qemu", "no fw-cfg: kernels boot directly; firmware (-bios) "
             "finds no kernel, command line or ACPI tables there"),
    Accepted(r"/virtio_mmio@a00(0[2468ace]|[1-3][02468ace])00", None, "qemu",
             "one virtio-mmio transport (0x0a000000, no device) of QEMU's 32 is modelled"),
    # (with firmware QEMU fits the ACPI GED instead, which is not in the DT: "noflash" only)
    Accepted(r"/gpio-keys", None, "qemu", "no PL061 GPIO power key: a guest powers off with PSCI SYSTEM_OFF",
             when=frozenset({"noflash"})),
    Accepted(r"/pl061@9030000", None, "qemu", "no PL061 GPIO controller", when=frozenset({"noflash"})),
    Accepted(r"/pcie@10000000", None, "qemu", "no PCIe host bridge"),
    Accepted(r"/flash@0", None, "qemu", "the flash banks are fitted only with -bios or -drive if=pflash: "
             "empty, they hold nothing, and one more node would move every bare-metal image's cycles "
             "(their runtime walks the whole blob)", when=frozenset({"noflash"})),
    Accepted(r"/pmu", None, "qemu", "no PMU: the engine's PMCCNTR follows host time, so the PMU is not offered"),
    Accepted(r"/intc@8000000/v2m@8020000", None, "qemu", "no GICv2m MSI frame (nothing uses MSIs without PCI)",
             when=frozenset({"gicv2"})),
    Accepted(r"/intc@8000000/its@8080000", None, "qemu", "no GICv3 ITS (no LPIs without PCI)",
             when=frozenset({"gicv3"})),
    Accepted(r"/chosen", "rng-seed", "qemu", "QEMU's seeds are random per run; armvirt is deterministic"),
    Accepted(r"/chosen", "kaslr-seed", "qemu", "QEMU's seeds are random per run; armvirt is deterministic"),
    Accepted(r"/chosen", "linux,initrd-start", "both", "QEMU 7.2 writes one cell; QEMU 8.0+ writes "
             "#address-cells (2), as armvirt does, so an initrd may sit above 4 GiB",
             when=frozenset({"initrd", "qemu7"})),
    Accepted(r"/chosen", "linux,initrd-end", "both", "as linux,initrd-start", when=frozenset({"initrd", "qemu7"})),
    Accepted(r"/bench-io@b000000", None, "armvirt", "armvirt's I/O latency test device (host_kernel/bench_io.py)"),
    Accepted(r"/cpus/cpu@[0-9a-f]+", "clock-frequency", "armvirt",
             "the modelled core clock, so bare-metal guests convert counter ticks to cycles"),
    Accepted(r"/cpus/cpu@0", "enable-method", "armvirt",
             "QEMU names PSCI only with -smp > 1; armvirt always does (CPU_OFF works on 1 vCPU too)",
             when=frozenset({"smp1"})),
]


def _matches(a: Accepted, side: str, triple: tuple[str, str, str]) -> bool:
    path, prop, _ = triple
    if a.side not in (side, "both"):
        return False
    if a.prop is None:
        return re.fullmatch(a.path + r"(/.*)?", path) is not None
    return prop == a.prop and re.fullmatch(a.path, path) is not None


def compare(ours: set, qemu: set, tags: set[str]) -> None:
    """tags name the comparison: smpN, gicvN, qemuN (QEMU's major version), initrd, noflash
    (no -bios / -drive if=pflash)."""
    applicable = [a for a in ACCEPTED if a.when <= tags]
    used: set[int] = set()
    unexplained = []
    for side, triples in (("qemu", qemu - ours), ("armvirt", ours - qemu)):
        for t in sorted(triples):
            hit = next((i for i, a in enumerate(applicable) if _matches(a, side, t)), None)
            if hit is None:
                unexplained.append(f"only in {side}: {t[0]} {t[1] or '(node)'} = {t[2]}")
            else:
                used.add(hit)
    stale = [f"{a.path} {a.prop or '(node)'}: {a.reason}" for i, a in enumerate(applicable) if i not in used]
    assert not unexplained, "unexplained differences from QEMU's DTB:\n  " + "\n  ".join(unexplained)
    assert not stale, "accepted differences that no longer occur (drop them):\n  " + "\n  ".join(stale)


def armvirt_tree(gic: int, smp: int, ram: int = 256 * MIB, **kw) -> set:
    cfg = DtbConfig(ram_base=layout.RAM_BASE, ram_size=ram, mpidrs=tuple(range(smp)), gic_version=gic,
                    cpu_clock_hz=2_400_000_000, timer_freq_hz=50_000_000, **kw)
    return dt_tree.normalise(dt_tree.from_blob(build_dtb(cfg)))


@pytest.mark.parametrize("gic", [2, 3])
def test_matches_committed_qemu_snapshot(gic):
    """tests/data/qemu-virt-gicv*-smp2.dts: `-M virt,gic-version=N -cpu cortex-a57 -smp 2 -m 256M`, QEMU 7.2."""
    snap = dt_tree.normalise(dt_tree.from_dts((DATA / f"qemu-virt-gicv{gic}-smp2.dts").read_text()))
    compare(armvirt_tree(gic, 2), snap, {"smp2", f"gicv{gic}", "qemu7", "noflash"})


def qemu_tag() -> str:
    qemu = shutil.which("qemu-system-aarch64")
    need(qemu is not None, "qemu-system-aarch64 not installed: the DTB is compared with QEMU's")
    out = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"version (\d+)\.", out)
    assert m, f"cannot read QEMU's version from {out!r}"
    return f"qemu{m.group(1)}"


def qemu_blob(tmp_path: Path, *args: str) -> bytes:
    qemu = shutil.which("qemu-system-aarch64")
    need(qemu is not None, "qemu-system-aarch64 not installed: the DTB is compared with QEMU's")
    out = tmp_path / "q.dtb"
    r = subprocess.run([qemu, "-cpu", "cortex-a57", *args, "-machine", f"dumpdtb={out}"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"qemu dumpdtb failed ({r.returncode}): {r.stderr}"
    return out.read_bytes()


@pytest.mark.parametrize("gic", [2, 3])
@pytest.mark.parametrize("smp", [1, 2, 4])
def test_matches_live_qemu(tmp_path, gic, smp):
    blob = qemu_blob(tmp_path, "-M", f"virt,gic-version={gic}", "-smp", str(smp), "-m", "256M")
    compare(armvirt_tree(gic, smp), dt_tree.normalise(dt_tree.from_blob(blob)),
            {f"smp{smp}", f"gicv{gic}", qemu_tag(), "noflash"})


@pytest.mark.parametrize("gic", [2, 3])
def test_firmware_boot_matches_live_qemu(tmp_path, gic):
    """-bios FILE: QEMU's flash@0 node (both banks, cfi-flash, bank-width 4) is armvirt's too."""
    fw = tmp_path / "fw.bin"
    fw.write_bytes(b"\x00\x00\x00\x14" * 16)              # b . at 0x0
    blob = qemu_blob(tmp_path, "-M", f"virt,gic-version={gic}", "-smp", "2", "-m", "256M", "-bios", str(fw))
    compare(armvirt_tree(gic, 2, flash=True), dt_tree.normalise(dt_tree.from_blob(blob)),
            {"smp2", f"gicv{gic}", qemu_tag()})


def test_chosen_with_kernel_initrd_and_append_matches_qemu(tmp_path):
    """A raw kernel with -initrd and -append: QEMU and armvirt place the initrd at the
    same address (RAM base + 128 MiB here) and write the same /chosen."""
    kernel = tmp_path / "k.bin"
    kernel.write_bytes(b"\x00\x00\x00\x14" * 64)          # b . (a raw binary)
    rd = tmp_path / "rd.cpio"
    rd.write_bytes(bytes(range(256)) * 37)
    args = ["-kernel", str(kernel), "-initrd", str(rd), "-append", "console=ttyAMA0 root=/dev/ram"]
    qtree = dt_tree.from_blob(qemu_blob(tmp_path, "-M", "virt", "-smp", "2", "-m", "256M", *args))
    cfg = DtbConfig(ram_base=layout.RAM_BASE, ram_size=256 * MIB, mpidrs=(0, 1), gic_version=2,
                    cpu_clock_hz=2_400_000_000, timer_freq_hz=50_000_000, bootargs="console=ttyAMA0 root=/dev/ram")
    plan = bootloader.prepare(cfg, str(kernel), str(rd))
    compare(dt_tree.normalise(dt_tree.from_blob(plan.dtb)), dt_tree.normalise(qtree),
            {"smp2", "gicv2", "initrd", qemu_tag(), "noflash"})
    got = [int.from_bytes(qtree["/chosen"][p], "big") for p in ("linux,initrd-start", "linux,initrd-end")]
    want = [plan.initrd_start, plan.initrd_start + 37 * 256]
    assert got == want, f"expected QEMU's initrd range at armvirt's {[hex(v) for v in want]}, got {[hex(v) for v in got]}"


def test_dts_parser_reads_what_dtc_prints():
    """The snapshot parser against the blob parser on armvirt's own tree (via dtc)."""
    dtc = shutil.which("dtc")
    need(dtc is not None, "dtc not installed: it prints the dts the snapshot parser reads")
    blob = build_dtb(DtbConfig(ram_base=layout.RAM_BASE, ram_size=256 * MIB, mpidrs=(0, 1), gic_version=3,
                               cpu_clock_hz=2_400_000_000, timer_freq_hz=50_000_000, bootargs='a "q" \\ b',
                               initrd=(0x4800_0000, 0x4800_1000)))
    dts = subprocess.run([dtc, "-I", "dtb", "-O", "dts", "-"], input=blob, capture_output=True, check=True).stdout
    got, want = dt_tree.from_dts(dts.decode()), dt_tree.from_blob(blob)
    assert got == want, f"dts parse differs from the blob: {set(got.items()) ^ set(want.items())}"
