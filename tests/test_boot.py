"""The boot loader: where the kernel, initrd and DTB go (QEMU hw/arm/boot.c), the
user's -dtb patched as QEMU patches it, and the registers at entry (booting.rst)."""
import struct
import subprocess
import sys
from pathlib import Path

import fdt
import pytest

from armvirt import boot as bootloader
from armvirt import paths
from armvirt.console import Console
from armvirt.dtb import DtbConfig, build_dtb
from armvirt.loader import BSS_STACK_ROOM
from armvirt.machine import Machine, MachineConfig
from engine import aarch64, layout

MIB = 1 << 20
BASE = layout.RAM_BASE
# movz x1,#0x900,lsl 16; adr x3,msg; 1: ldrb w2,[x3],#1; cbz w2,2f; str w2,[x1]; b 1b;
# 2: PSCI SYSTEM_OFF (0x84000008) over hvc #0; msg: "raw binary entered at its first byte\n"
RAW_HELLO = bytes.fromhex(
    "0120a1d2230100106214403862000034220000b9fdffff170080b05200018072020000d4000000147261772062696e"
    "61727920656e74657265642061742069747320666972737420627974650a000000")


def dcfg(ram_size: int = 128 * MIB, **kw) -> DtbConfig:
    base = dict(ram_base=BASE, ram_size=ram_size, mpidrs=(0,), gic_version=2,
                cpu_clock_hz=2_400_000_000, timer_freq_hz=50_000_000)
    base.update(kw)
    return DtbConfig(**base)


def image_file(tmp_path: Path, image_size: int, text_offset: int = 0) -> str:
    hdr = struct.pack("<IIQQQQQQ4sI", 0x91005A4D, 0x14000000, text_offset, image_size, 0xA, 0, 0, 0, b"ARM\x64", 0)
    p = tmp_path / "vmlinuz"
    p.write_bytes(hdr + bytes(0x100))
    return str(p)


def write(tmp_path: Path, name: str, data: bytes) -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def chosen(blob: bytes) -> dict:
    node = fdt.parse_dtb(blob).get_node("/chosen")
    return {p.name: (list(p.data) if isinstance(p, fdt.PropWords) else p.data) for p in node.props}


@pytest.mark.parametrize("ram, want", [(128 * MIB, BASE + 64 * MIB),     # RAM / 2 below 256 MiB
                                       (256 * MIB, BASE + 128 * MIB),    # 128 MiB from 256 MiB on
                                       (1024 * MIB, BASE + 128 * MIB)])
def test_small_elf_initrd_and_dtb_where_qemu_puts_them(tmp_path, ram, want):
    plan = bootloader.prepare(dcfg(ram), paths.image_path("hello.elf"), write(tmp_path, "env", b"x" * 5000))
    got = (plan.initrd_range, plan.dtb_addr)
    expect = ((want, want + 5000), want + 2 * MIB)      # the DTB: next 2 MiB boundary after the initrd
    assert got == expect, f"expected (initrd, dtb) {expect}, got {got}"
    assert chosen(plan.dtb)["linux,initrd-start"] == [0, want], f"/chosen: {chosen(plan.dtb)}"


def test_no_initrd_dtb_at_the_initrd_address(tmp_path):
    plan = bootloader.prepare(dcfg(), paths.image_path("hello.elf"))
    got = (plan.initrd_range, plan.dtb_addr)
    assert got == (None, BASE + 64 * MIB), f"expected (None, {BASE + 64 * MIB:#x}), got {got}"
    assert "linux,initrd-start" not in chosen(plan.dtb), f"no initrd, no range: {chosen(plan.dtb)}"


def test_large_image_pushes_initrd_and_dtb_above_its_footprint(tmp_path):
    """An Image whose image_size reaches past RAM / 2: everything goes above image_size."""
    size = 80 * MIB + 0x1234
    plan = bootloader.prepare(dcfg(), image_file(tmp_path, size), write(tmp_path, "rd", b"r" * 100))
    end = BASE + 2 * MIB + size                          # text_offset 0 -> RAM base + 2 MiB
    start = (end + 0xFFF) & ~0xFFF
    got = (plan.image.entry, plan.initrd_range, plan.dtb_addr)
    want = (BASE + 2 * MIB, (start, start + 100), (start + 100 + 2 * MIB - 1) & ~(2 * MIB - 1))
    assert got == want, f"expected (entry, initrd, dtb) {want}, got {got}"


def test_raw_footprint_with_tiny_ram(tmp_path):
    """-m 16M: RAM / 2 is below a 5 MiB raw image's footprint, which wins."""
    raw = write(tmp_path, "fw", bytes(5 * MIB))
    plan = bootloader.prepare(dcfg(16 * MIB), raw)
    want = BASE + ((0x8_0000 + 5 * MIB + 2 * MIB - 1) & ~(2 * MIB - 1)) + BSS_STACK_ROOM
    assert plan.initrd_start == want and plan.dtb_addr == want, \
        f"expected initrd/dtb at {want:#x}, got {plan.initrd_start:#x}/{plan.dtb_addr:#x}"


@pytest.mark.parametrize("initrd_size, match", [
    (64 * MIB + 1, "do not fit in RAM after the kernel"),
    (64 * MIB - 0x1000, "not enough space for the DTB"),
])
def test_no_room(tmp_path, initrd_size, match):
    rd = write(tmp_path, "big.cpio", bytes(initrd_size))
    with pytest.raises(bootloader.BootError, match=match) as ei:
        bootloader.prepare(dcfg(), paths.image_path("hello.elf"), rd)
    assert "\n" not in str(ei.value), f"expected one line, got {ei.value}"


def test_missing_initrd(tmp_path):
    with pytest.raises(bootloader.BootError, match="-initrd .*nope: no such file"):
        bootloader.prepare(dcfg(), paths.image_path("hello.elf"), str(tmp_path / "nope"))


def user_dtb(**props) -> bytes:
    """A third-party blob: wrong memory, its own /psci and bootargs, one memory node per bank."""
    root = fdt.Node("/")
    root.append(fdt.PropWords("#address-cells", 2))
    root.append(fdt.PropWords("#size-cells", 2))
    root.append(fdt.PropStrings("model", "user board"))
    for a in (0x8000_0000, 0x9000_0000):
        root.append(fdt.Node(f"memory@{a:x}", fdt.PropStrings("device_type", "memory"),
                             fdt.PropWords("reg", 0, a, 0, 0x1000_0000)))
    root.append(fdt.Node("psci", fdt.PropStrings("compatible", "arm,psci"), fdt.PropStrings("method", "smc"),
                         fdt.PropWords("cpu_on", 0x9500_0003)))
    root.append(fdt.Node("chosen", fdt.PropStrings("bootargs", "from the blob"),
                         fdt.PropStrings("stdout-path", "/uart@1c090000")))
    t = fdt.FDT(entries=[])
    t.root = root
    return t.to_dtb(version=17)


def test_user_dtb_patched_as_qemu_does(tmp_path):
    plan = bootloader.prepare(dcfg(bootargs="console=ttyAMA0"), paths.image_path("hello.elf"),
                              write(tmp_path, "env", b"e" * 10), write(tmp_path, "user.dtb", user_dtb()))
    t = fdt.parse_dtb(plan.dtb)
    mems = sorted(n.name for n in t.root.nodes if n.name.startswith("memory"))
    assert mems == ["memory@40000000"], f"expected every memory node replaced by ours, got {mems}"
    got = list(t.get_node("/memory@40000000").get_property("reg").data)
    assert got == [0, BASE, 0, 128 * MIB], f"memory reg: expected the VM's RAM, got {got}"
    psci = t.get_node("/psci")
    got = (psci.get_property("method").data, psci.get_property("cpu_on").data)
    assert got == (["hvc"], [0xC4000003]), f"expected armvirt's /psci, got {got}"
    c = chosen(plan.dtb)
    want = {"bootargs": ["console=ttyAMA0"], "stdout-path": ["/uart@1c090000"],
            "linux,initrd-start": [0, plan.initrd_start], "linux,initrd-end": [0, plan.initrd_start + 10]}
    assert c == want, f"/chosen: expected {want}, got {c}"
    assert t.get_node("/").get_property("model").data == ["user board"], "the rest of the blob is kept"


def test_user_dtb_keeps_its_bootargs_without_append(tmp_path):
    plan = bootloader.prepare(dcfg(), paths.image_path("hello.elf"), None, write(tmp_path, "u.dtb", user_dtb()))
    got = chosen(plan.dtb).get("bootargs")
    assert got == ["from the blob"], f"QEMU sets bootargs only for a non-empty -append; got {got}"


@pytest.mark.parametrize("data, match", [
    (b"not a device tree at all" * 4, "no 0xd00dfeed magic"),
    (b"\xd0\x0d\xfe\xed" + bytes(60), "corrupt device tree"),
])
def test_bad_user_dtb(tmp_path, data, match):
    with pytest.raises(bootloader.BootError, match=match) as ei:
        bootloader.prepare(dcfg(), paths.image_path("hello.elf"), None, write(tmp_path, "bad.dtb", data))
    assert "bad.dtb" in str(ei.value) and "\n" not in str(ei.value), f"got {ei.value!r}"


def test_entry_registers_and_ram_contents(xgene, tmp_path):
    """booting.rst: x0 = DTB, x1-x3 = 0, EL1h with DAIF masked, MMU off; RAM holds the blobs."""
    rd = b"initrd bytes " * 100
    m = Machine(MachineConfig(kernel=paths.image_path("hello.elf"), initrd=write(tmp_path, "rd", rd),
                              append="a b c"), xgene, console=Console(echo=False))
    ctx = m.vcpus[0].ctx
    got = ([ctx.x(i) for i in range(4)], ctx.pc, ctx.pstate, ctx.el1.get("SCTLR_EL1") & 0b101)
    want = ([m.dtb_addr, 0, 0, 0], m.image.entry, aarch64.RESET_PSTATE, 0)
    assert got == want, f"expected (x0-x3, pc, pstate, SCTLR.M|C) {want}, got {got}"
    off = m.plan.initrd_start - BASE
    assert bytes(m.ram.buf[off:off + len(rd)]) == rd, "initrd bytes in RAM at its range"
    off = m.dtb_addr - BASE
    assert bytes(m.ram.buf[off:off + len(m.dtb)]) == m.dtb, "DTB bytes in RAM at x0"
    assert chosen(m.dtb)["bootargs"] == ["a b c"], f"/chosen: {chosen(m.dtb)}"


def armvirt(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "armvirt", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, stdin=subprocess.DEVNULL)


def test_raw_binary_runs_whatever_its_name(tmp_path):
    r = armvirt("run", "--quiet", write(tmp_path, "firmware.txt", RAW_HELLO))
    assert r.returncode == 0 and r.stdout == "raw binary entered at its first byte\n", \
        f"expected the raw program's line and exit 0, got {r.returncode}: {r.stdout!r} {r.stderr!r}"


def test_dumpdtb_writes_the_blob_and_exits(tmp_path):
    out = tmp_path / "a.dtb"
    rd = write(tmp_path, "rd", b"1234")
    r = armvirt("run", "-M", "virt,gic-version=3", "-machine", f"dumpdtb={out}", "-smp", "2", "-m", "256M",
                "-kernel", paths.image_path("hello.elf"), "-initrd", rd, "-append", "console=ttyAMA0")
    assert r.returncode == 0 and r.stdout == "", f"expected exit 0 and no guest output, got {r.returncode}: {r}"
    assert f"dtb dumped to {out}. Exiting." in r.stderr, f"stderr: {r.stderr!r}"
    blob = out.read_bytes()
    want = bootloader.prepare(dcfg(256 * MIB, mpidrs=(0, 1), gic_version=3, bootargs="console=ttyAMA0"),
                              paths.image_path("hello.elf"), rd).dtb
    assert blob == want, "expected the DTB the guest would get, initrd and bootargs included"


def test_dumpdtb_without_kernel(tmp_path):
    out = tmp_path / "b.dtb"
    r = armvirt("run", "-M", f"virt,dumpdtb={out}")
    assert r.returncode == 0, f"expected exit 0, got {r.returncode}: {r.stderr}"
    assert out.read_bytes() == build_dtb(dcfg()), "expected the plain generated DTB"


@pytest.mark.parametrize("args, needle", [
    (["-initrd", "/nonexistent/rd"], "no such file"),
    (["-dtb", paths.image_path("hello.elf")], "no 0xd00dfeed magic"),
    (["-M", "virt,dumpdtb="], "file name is required"),
    (["-m", "16M", "-initrd", paths.image_path("microbench.elf"), "-M", "virt,dumpdtb=/nonexistent/x/y.dtb"],
     "cannot write"),
])
def test_bad_boot_options(args, needle, cli_run):
    r = cli_run("run", *args, paths.image_path("hello.elf"))
    assert r.returncode == 2, f"expected exit 2, got {r.returncode}: {r.stderr}"
    assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, f"stderr: {r.stderr!r}"
