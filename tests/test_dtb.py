"""Device tree: structure checked by dtc, content checked by parsing the blob back."""

import shutil
import struct
import subprocess

import fdt
import pytest

from engine import layout
from armvirt.dtb import DtbConfig, build_dtb
from tests.tools import need

RAM_SIZE = 128 * 1024**2
CPU_HZ = 1_000_000_000


def cfg(ncpus: int = 1, gic: int = 3, **kw) -> DtbConfig:
    base = dict(ram_base=layout.RAM_BASE, ram_size=RAM_SIZE, mpidrs=tuple(range(ncpus)),
                gic_version=gic, cpu_clock_hz=CPU_HZ, timer_freq_hz=62_500_000,
                bootargs="console=ttyAMA0 earlycon")
    base.update(kw)
    return DtbConfig(**base)


def raw(tree: fdt.FDT, path: str, name: str) -> bytes | None:
    """Property bytes, independent of the type pyFDT guesses when parsing."""
    p = tree.get_node(path).get_property(name)
    if p is None:
        return None
    if isinstance(p, fdt.PropWords):
        return b"".join(struct.pack(">I", w) for w in p.data)
    if isinstance(p, fdt.PropStrings):
        return b"".join(s.encode() + b"\0" for s in p.data)
    if isinstance(p, fdt.PropBytes):
        return bytes(p.data)
    return b""


def cells(tree: fdt.FDT, path: str, name: str) -> list[int]:
    b = raw(tree, path, name)
    assert b is not None, f"expected property {path}:{name}, got none"
    return list(struct.unpack(f">{len(b) // 4}I", b))


def strs(tree: fdt.FDT, path: str, name: str) -> list[str]:
    b = raw(tree, path, name)
    assert b is not None, f"expected property {path}:{name}, got none"
    return b.decode().rstrip("\0").split("\0")


def split64(*vals: int) -> list[int]:
    return [c for v in vals for c in (v >> 32, v & 0xFFFF_FFFF)]


@pytest.mark.parametrize("gic", [2, 3])
@pytest.mark.parametrize("ncpus", [1, 4])
def test_dtc_accepts_without_warnings(ncpus: int, gic: int) -> None:
    dtc = shutil.which("dtc")
    need(dtc is not None, "dtc (device-tree-compiler) not installed: it validates the blob")
    blob = build_dtb(cfg(ncpus, gic, initrd=(0x4400_0000, 0x4410_0000)))
    r = subprocess.run([dtc, "-I", "dtb", "-O", "dts", "-o", "-", "-"],
                       input=blob, capture_output=True)
    assert r.returncode == 0, f"expected dtc rc 0, got {r.returncode}: {r.stderr.decode()}"
    assert r.stderr == b"", f"expected no dtc warnings, got:\n{r.stderr.decode()}"


@pytest.mark.parametrize("gic", [2, 3])
@pytest.mark.parametrize("ncpus", [1, 4])
def test_content(ncpus: int, gic: int) -> None:
    mpidrs = (0x0, 0x1, 0x100, 0x101)[:ncpus]
    t = fdt.parse_dtb(build_dtb(cfg(ncpus, gic, mpidrs=mpidrs)))

    got = strs(t, "/", "compatible")
    assert got == ["linux,dummy-virt"], f"expected ['linux,dummy-virt'], got {got}"
    for name, want in (("#address-cells", [2]), ("#size-cells", [2]), ("interrupt-parent", [0x8002])):
        got = cells(t, "/", name)
        assert got == want, f"/{name}: expected {want}, got {got}"

    got = cells(t, "/memory@40000000", "reg")
    want = split64(layout.RAM_BASE, RAM_SIZE)
    assert got == want, f"memory reg: expected {want}, got {got}"

    got = strs(t, "/psci", "method")
    assert got == ["hvc"], f"psci method: expected ['hvc'], got {got}"
    for name, want in (("cpu_suspend", 0xC4000001), ("cpu_off", 0x84000002),
                       ("cpu_on", 0xC4000003), ("migrate", 0xC4000005)):
        got = cells(t, "/psci", name)
        assert got == [want], f"psci {name}: expected [{want:#x}], got {got}"

    names = sorted(n.name for n in t.get_node("/cpus").nodes if n.name != "cpu-map")
    want_names = sorted(f"cpu@{m:x}" for m in mpidrs)
    assert names == want_names, f"cpu nodes: expected {want_names}, got {names}"
    for m in mpidrs:
        node = f"/cpus/cpu@{m:x}"
        got = cells(t, node, "reg")
        assert got == [m], f"{node} reg: expected [{m:#x}], got {got}"
        got = cells(t, node, "clock-frequency")
        assert got == [CPU_HZ], f"{node} clock-frequency: expected [{CPU_HZ}], got {got}"
        got = strs(t, node, "enable-method")
        assert got == ["psci"], f"{node} enable-method: expected ['psci'], got {got}"

    gic_node = "/intc@8000000"
    if gic == 2:
        want_compat = ["arm,cortex-a15-gic"]
        want_reg = split64(layout.GIC_DIST_BASE, layout.GIC_DIST_SIZE,
                           layout.GIC_CPU_BASE, layout.GIC_CPU_SIZE)
        flags = ((1 << ncpus) - 1) << 8 | 4
    else:
        want_compat = ["arm,gic-v3"]
        want_reg = split64(layout.GIC_DIST_BASE, layout.GIC_DIST_SIZE,
                           layout.GIC_REDIST_BASE, layout.GIC_REDIST_SIZE)
        flags = 4
        got = cells(t, gic_node, "#redistributor-regions")
        assert got == [1], f"#redistributor-regions: expected [1], got {got}"
    got = strs(t, gic_node, "compatible")
    assert got == want_compat, f"gic compatible: expected {want_compat}, got {got}"
    got = cells(t, gic_node, "reg")
    assert got == want_reg, f"gic reg: expected {[hex(c) for c in want_reg]}, got {[hex(c) for c in got]}"
    assert raw(t, gic_node, "interrupts") is None, "expected no maintenance interrupt (the guest has no EL2)"
    assert raw(t, gic_node, "interrupt-controller") == b"", "expected empty interrupt-controller property"

    got = cells(t, "/timer", "interrupts")
    want = [1, 13, flags, 1, 14, flags, 1, 11, flags, 1, 10, flags]
    assert got == want, f"timer interrupts: expected {[hex(c) for c in want]}, got {[hex(c) for c in got]}"
    assert raw(t, "/timer", "clock-frequency") is None, "expected no timer clock-frequency (guest reads CNTFRQ)"

    got = cells(t, "/pl011@9000000", "reg")
    want = split64(layout.UART_BASE, layout.UART_SIZE)
    assert got == want, f"pl011 reg: expected {want}, got {got}"
    got = cells(t, "/pl011@9000000", "interrupts")
    assert got == [0, 1, 4], f"pl011 interrupts: expected [0, 1, 4], got {got}"
    got = cells(t, "/pl011@9000000", "clocks")
    clk = cells(t, "/apb-pclk", "phandle")
    assert got == clk * 2, f"pl011 clocks: expected {clk * 2}, got {got}"

    got = strs(t, "/chosen", "stdout-path")
    assert got == ["/pl011@9000000"], f"stdout-path: expected ['/pl011@9000000'], got {got}"
    got = strs(t, "/chosen", "bootargs")
    assert got == ["console=ttyAMA0 earlycon"], f"bootargs: expected ['console=ttyAMA0 earlycon'], got {got}"


def test_initrd_and_no_bootargs() -> None:
    t = fdt.parse_dtb(build_dtb(cfg(bootargs="", initrd=(0x4400_0000, 0x4410_0000))))
    assert raw(t, "/chosen", "bootargs") is None, "expected no bootargs when empty"
    for name, want in (("linux,initrd-start", 0x4400_0000), ("linux,initrd-end", 0x4410_0000)):
        got = cells(t, "/chosen", name)
        assert got == split64(want), f"{name}: expected {split64(want)}, got {got}"


def test_timer_freq_opt_in() -> None:
    t = fdt.parse_dtb(build_dtb(cfg(timer_freq_in_dt=True)))
    got = cells(t, "/timer", "clock-frequency")
    assert got == [62_500_000], f"expected [62500000], got {got}"


@pytest.mark.parametrize("kw, match", [
    (dict(gic=4), "gic_version"),
    (dict(mpidrs=()), "at least one"),
    (dict(ncpus=9, gic=2), "at most 8"),
    (dict(mpidrs=(0, 0)), "duplicate"),
    (dict(bootargs="caf\u00e9"), "ASCII"),
    (dict(bootargs="x" * layout.DTB_MAX_SIZE), "DTB_MAX_SIZE"),
    (dict(initrd=(0x1000, 0x2000)), "initrd"),
])
def test_build_errors(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_dtb(cfg(**kw))
