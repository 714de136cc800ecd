"""Bad input: one line on stderr, exit code 2, never a traceback."""
import json
import struct
import subprocess
import sys

import pytest

from armvirt import paths


def armvirt(*args):
    return subprocess.run([sys.executable, "-m", "armvirt", *args], capture_output=True, text=True, timeout=120)


def elf(machine=183, cls=2, data=1, etype=2, paddr=0x40080000, entry=0x40080000, truncate=None):
    ph = struct.pack("<IIQQQQQQ", 1, 5, 0x1000, paddr, paddr, 0x10, 0x10, 0x1000)
    hdr = b"\x7fELF" + bytes([cls, data, 1]) + bytes(9) + struct.pack(
        "<HHIQQQIHHHHHH", etype, machine, 1, entry, 64, 0, 0, 64, 56, 1, 64, 0, 0)
    blob = hdr + ph + bytes(0x1000 - 64 - 56) + b"\x1f\x20\x03\xd5" * 4
    return blob[:truncate] if truncate else blob


@pytest.mark.parametrize("name,content,needle", [
    ("notelf.elf", b"\x7fELF hello world\n" * 10, "elf"),
    ("x86.elf", elf(machine=62), "x86-64"),
    ("trunc.elf", elf(truncate=100), ""),
    ("outside.elf", elf(paddr=0x1000, entry=0x1000), "outside"),
    ("badentry.elf", elf(entry=0x40090000), "entry"),
])
def test_bad_images(tmp_path, name, content, needle, cli_run):
    p = tmp_path / name
    p.write_bytes(content)
    r = cli_run("run", str(p))
    assert r.returncode == 2, f"expected exit 2, got {r.returncode}: {r.stderr}"
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, f"stderr: {r.stderr!r}"
    assert needle.lower() in r.stderr.lower(), f"expected {needle!r} in {r.stderr!r}"


@pytest.mark.parametrize("size, shown", [("4K", "-m 4K:"), ("16385K", "-m 16385K:"), ("99999G", "-m 99999G:"),
                                         ("16000000", "-m 15625G:")])
def test_a_bad_ram_size_is_named_as_m_spells_it(cli_run, size, shown):
    r = cli_run("run", "-m", size, "hello")
    assert r.returncode == 2 and shown in r.stderr, f"-m {size}: expected exit 2 naming {shown!r}, got {r.returncode}: {r.stderr!r}"


@pytest.mark.parametrize("args", [
    ["run", "/nonexistent/guest.elf"],
    ["run", "-m", "abc", paths.image_path("hello.elf")],
    ["run", "-m", "0", paths.image_path("hello.elf")],
    ["run", "-m", "4K", paths.image_path("hello.elf")],
    ["run", "-smp", "0", paths.image_path("hello.elf")],
    ["run", "-smp", "two", paths.image_path("hello.elf")],
    ["run", "-smp", "99", paths.image_path("hello.elf")],
    ["run", "--quantum", "5", paths.image_path("hello.elf")],
    ["run", "-M", "pc", paths.image_path("hello.elf")],
    ["run", "-M", "virt,gic-version=5", paths.image_path("hello.elf")],
    ["run", "-d", "bogus", paths.image_path("hello.elf")],
    ["run", "--profile", "nope", paths.image_path("hello.elf")],
    ["run"],
])
def test_bad_options(args, cli_run):
    r = cli_run(*args)
    assert r.returncode == 2, f"{args}: expected exit 2, got {r.returncode}: {r.stderr}"
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, f"stderr: {r.stderr!r}"


def test_run_prints_console_and_summary():
    r = armvirt("run", "-M", "virt", "-m", "128M", "-kernel", paths.image_path("hello.elf"))
    assert r.returncode == 0, r.stderr
    assert "Hello from armvirt guest at EL1" in r.stdout
    assert "HVC64" in r.stdout and "DABT_LOW" in r.stdout and "guest instructions" in r.stdout, r.stdout


def test_exit_status_from_console(tmp_path):
    r = armvirt("run", "--max-insns", "5000", paths.image_path("memtouch.elf"))
    assert r.returncode != 0 and "max-insns" in r.stderr, f"{r.returncode} {r.stderr!r}"


def test_trap_path_json():
    r = armvirt("trap-path", "hypercall", "--format", "json")
    d = json.loads(r.stdout)
    assert d["total_cycles"] == sum(s["cycles"] for s in d["steps"]), "total is the sum of the steps"
    assert d["total_cycles"] == d["guest_measured_avg_cycles"], d
    assert d["definition"] == paths.PATHS[d["path"]].description, f"expected the path's definition, got {d}"


def test_world_switch_json_and_formats():
    d = json.loads(armvirt("world-switch", "--format", "json").stdout)
    groups = [r["group"] for r in d["rows"]]
    assert groups[:7] == ["GP registers", "FP/SIMD registers", "EL1 system registers", "VGIC registers",
                          "Timer registers", "EL2 configuration registers", "EL2 virtual memory registers"], groups
    for fmt in ("github", "latex", "csv"):
        r = armvirt("world-switch", "--format", fmt)
        assert r.returncode == 0 and "VGIC registers" in r.stdout, f"{fmt}: {r.stderr}"
