"""Debian's U-Boot for QEMU (`u-boot-qemu`, /usr/lib/u-boot/qemu_arm64/u-boot.bin) boots
from flash bank 0 with -bios, as on `qemu-system-aarch64 -M virt -bios u-boot.bin`,
stops its autoboot on a typed key and answers commands typed on stdin; `poweroff`
ends the run through PSCI SYSTEM_OFF.  The environment saved to a -drive bank 1
survives a `reset` (a reboot: -no-reboot not given)."""
import os
import subprocess
import sys

import pytest

from tests.tools import need

UBOOT = "/usr/lib/u-boot/qemu_arm64/u-boot.bin"
MIB = 1 << 20


def uboot(tmp_path, typed: str, *args: str):
    need(os.path.isfile(UBOOT), f"{UBOOT} missing: apt-get install u-boot-qemu (Debian's U-Boot for QEMU)")
    log = tmp_path / "log.txt"
    r = subprocess.run([sys.executable, "-m", "armvirt", "run", "--quiet", "-M", "virt", "-cpu", "cortex-a57",
                        "-m", "256M", "-nographic", "-bios", UBOOT, "-d", "guest_errors", "-D", str(log), *args],
                       input=typed, capture_output=True, text=True, timeout=300)
    lines = [line.rstrip("\r") for line in r.stdout.splitlines()]
    return r, lines, log.read_text()


def expect(lines, wanted, what):
    missing = [w for w in wanted if w not in lines]
    assert not missing, f"{what}: expected the lines {missing}, observed:\n" + "\n".join(lines)


BOOT = ["DRAM:  256 MiB", "Flash: 64 MiB",
        "Loading Environment from Flash... *** Warning - bad CRC, using default environment",
        "In:    pl011@9000000", "Out:   pl011@9000000", "Err:   pl011@9000000"]


@pytest.mark.parametrize("design,gic", [("nvhe", 2), ("vhe", 3), ("type1", 3)])
def test_uboot_boots_and_answers_commands(tmp_path, design, gic):
    typed = "\nversion\nbdinfo\nfdt addr $fdtcontroladdr; fdt print /chosen\nflinfo\npoweroff\n"
    r, lines, log = uboot(tmp_path, typed, "-M", f"virt,gic-version={gic}", "--hyp-mode", design, "-no-reboot")
    assert r.returncode == 0, f"expected exit 0 (PSCI SYSTEM_OFF), observed {r.returncode}: {r.stderr!r}"
    banner = [line for line in lines if line.startswith("U-Boot 20")]
    assert len(banner) == 2, f"expected the banner at boot and from `version`, observed {banner}"
    expect(lines, BOOT + [
        "=> version", "=> bdinfo",
        "-> start    = 0x0000000040000000", "-> size     = 0x0000000010000000",      # 256 MiB of RAM
        "flashstart  = 0x0000000000000000", "flashsize   = 0x0000000004000000",
        '\tstdout-path = "/pl011@9000000";',
        "Bank # 1: CFI conformant flash (16 x 16)  Size: 32 MB in 256 Sectors",
        "  Intel Extended command set, Manufacturer ID: 0x89, Device ID: 0x0018",
        "  Erase timeout: 16384 ms, write timeout: 3 ms",
        "  Buffer write timeout: 3 ms, buffer size: 2048 bytes",
        "=> poweroff", "poweroff ..."], f"{design}, GICv{gic}")
    assert log == "", f"expected no guest errors, observed:\n{log}"
    assert "Traceback" not in r.stderr, r.stderr


def test_uboot_saveenv_survives_reset(tmp_path):
    """saveenv erases and programs bank 1 (write to buffer); after `reset` U-Boot finds it."""
    env = tmp_path / "vars.bin"
    with open(env, "wb") as f:
        f.truncate(64 * MIB)
    typed = "\nsetenv armvirt_test flash-ok\nsaveenv\nreset\n\nprintenv armvirt_test\npoweroff\n"
    r, lines, log = uboot(tmp_path, typed, "-drive", f"if=pflash,format=raw,unit=1,file={env}")
    assert r.returncode == 0, f"expected exit 0, observed {r.returncode}: {r.stderr!r}"
    expect(lines, ["Erased 2 sectors", "OK", "resetting ...", "Loading Environment from Flash... OK",
                   "armvirt_test=flash-ok"], "saveenv, reset, printenv")
    assert b"armvirt_test=flash-ok" in env.read_bytes(), "the environment is in the -drive file"
    assert log == "", f"expected no guest errors, observed:\n{log}"
