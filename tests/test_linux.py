"""Debian's stock arm64 kernel boots to the busybox shell (images/linux/fetch.sh builds
it); a scripted session on the PL011 asks the shell what a user would, then
`poweroff -f` ends the run through PSCI.

One boot per configuration, shared by its assertions and by pytest-xdist workers
(the first worker to need a configuration boots it under a file lock; the others read
its record).  Without the kernel (no network for apt) the tests skip with the reason,
and fail with it in CI."""
from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys

import pytest

from tests.tools import console_section, need

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINUX_DIR = os.environ.get("ARMVIRT_LINUX_DIR", os.path.join(ROOT, "images", "linux", "out"))
KERNEL, INITRD = os.path.join(LINUX_DIR, "vmlinuz"), os.path.join(LINUX_DIR, "initramfs.cpio.gz")

# name: (GIC version, vCPUs, --hyp-mode)
CONFIGS = {"gicv2-nvhe": (2, 2, "nvhe"), "gicv3-nvhe": (3, 2, "nvhe"),
           "gicv3-vhe": (3, 2, "vhe"), "gicv2-type1": (2, 2, "type1")}
# Each answer starts with a line '==name==' the shell prints (the typed line is echoed too).
SESSION = {"uname": "uname -m", "cpuinfo": "grep ^processor /proc/cpuinfo",
           "interrupts": "cat /proc/interrupts", "uptime": "cat /proc/uptime"}
MAX_INSNS = 6_000_000_000        # a shell that never gets its input stops at this (exit 3)
TIMEOUT_S = 1200


def _need_kernel() -> None:
    missing = [p for p in (KERNEL, INITRD) if not os.path.isfile(p)]
    need(not missing, f"{missing[0] if missing else ''} missing: run images/linux/fetch.sh "
                      f"(it needs apt and the network)")


def _boot(name: str) -> dict:
    gic, smp, mode = CONFIGS[name]
    script = "".join(f"echo =={k}==; {cmd}\n" for k, cmd in SESSION.items()) + "poweroff -f\n"
    argv = [sys.executable, "-m", "armvirt", "run", "-M", f"virt,gic-version={gic}", "-smp", str(smp),
            "--hyp-mode", mode, "-m", "256M", "-kernel", KERNEL, "-initrd", INITRD,
            "-append", "console=ttyAMA0", "-d", "unimp,guest_errors", "--max-insns", str(MAX_INSNS)]
    r = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=ROOT)
    return {"argv": argv, "rc": r.returncode, "stdout": r.stdout.replace("\r", ""), "stderr": r.stderr}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def linux(request, tmp_path_factory):
    """The record of one boot of configuration `request.param`, made once for all workers."""
    _need_kernel()
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if hasattr(request.config, "workerinput") else base   # this session's, every worker's
    record = shared / f"linux-{request.param}.json"
    with open(shared / f"linux-{request.param}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            record.write_text(json.dumps(_boot(request.param)))
    run = json.loads(record.read_text())
    run["name"], (run["gic"], run["smp"], run["mode"]) = request.param, CONFIGS[request.param]
    return run


def answer(run: dict, key: str) -> list[str]:
    """The lines the shell printed for SESSION[key], up to its next prompt."""
    return console_section(run, key, lambda line: line.startswith("/ # "), repr(SESSION[key]))


def test_boots_to_the_shell_and_powers_off(linux):
    out = linux["stdout"]
    assert linux["rc"] == 0, f"{linux['name']}: expected exit code 0 (PSCI SYSTEM_OFF), got {linux['rc']}; " \
                             f"stderr tail: {linux['stderr'][-1500:]}\nconsole tail: {out[-3000:]}"
    for want in ("armvirt: init reached", "BusyBox v", "reboot: Power down",
                 "==== armvirt: shutdown, exit status 0"):
        assert want in out, f"{linux['name']}: expected {want!r} in the console; tail:\n{out[-3000:]}"
    assert "Traceback" not in linux["stderr"], f"{linux['name']}: {linux['stderr'][-3000:]}"


def test_nothing_unmodeled_or_erroneous(linux):
    """Everything Linux touches is modeled: no -d unimp or guest_errors line."""
    logged = [l for l in linux["stderr"].splitlines() if l.startswith(("[unimp]", "[guest_errors]"))]
    assert not logged, f"{linux['name']}: expected no unimp/guest_errors lines, got {logged[:10]}"


def test_uname_is_aarch64(linux):
    got = answer(linux, "uname")
    assert got == ["aarch64"], f"{linux['name']}: uname -m expected ['aarch64'], got {got}"


def test_cpuinfo_lists_every_vcpu(linux):
    got = [l.split(":")[1].strip() for l in answer(linux, "cpuinfo")]
    want = [str(i) for i in range(linux["smp"])]
    assert got == want, f"{linux['name']}: /proc/cpuinfo processors expected {want}, got {got}"


def _irq_counts(run: dict, needle: str) -> list[int]:
    lines = answer(run, "interrupts")
    cpus = lines[0].split()
    assert cpus == [f"CPU{i}" for i in range(run["smp"])], f"{run['name']}: header {lines[0]!r}"
    row = next((l for l in lines if l.rstrip().endswith(needle)), None)
    assert row is not None, f"{run['name']}: no {needle} line in /proc/interrupts: {lines}"
    return [int(x) for x in row.split()[1:1 + len(cpus)]]


def test_arch_timer_interrupts_count_on_every_cpu(linux):
    counts = _irq_counts(linux, "arch_timer")
    assert all(c > 0 for c in counts), f"{linux['name']}: timer interrupts expected > 0 on every CPU, got {counts}"


def test_uart_interrupts_count(linux):
    counts = _irq_counts(linux, "uart-pl011")
    assert sum(counts) > 0, f"{linux['name']}: PL011 interrupts expected to count (RX of the session), got {counts}"


def test_guest_uptime_and_first_user_instruction(linux):
    """/proc/uptime is the guest's own clock; the run's summary gives the time of the
    first user-space instruction, which came before it."""
    uptime = answer(linux, "uptime")
    assert len(uptime) == 1 and re.fullmatch(r"\d+\.\d\d \d+\.\d\d", uptime[0]), \
        f"{linux['name']}: /proc/uptime expected '<up> <idle>', got {uptime}"
    up = float(uptime[0].split()[0])
    m = re.search(r"^first user-space instruction: vCPU\d+ after ([\d,]+) guest instructions .* = ([\d.]+) s "
                  r"of guest time$", linux["stdout"], re.M)
    assert m, f"{linux['name']}: no 'first user-space instruction' line in the summary"
    insns, at = int(m.group(1).replace(",", "")), float(m.group(2))
    assert 0 < at < up and insns > 100_000_000, \
        f"{linux['name']}: init at {at} s after {insns} instructions, uptime {up} s: expected 0 < init < uptime"


def test_exit_statistics_per_vcpu(linux):
    """The summary's exit counts by reason and vCPU: every vCPU faulted its RAM in at
    stage 2 and idled in WFI."""
    lines = linux["stdout"].splitlines()
    start = lines.index("exits per vCPU:") + 1
    header = lines[start].split()
    assert header == ["VM-EXIT"] + [f"vCPU{i}" for i in range(linux["smp"])], f"{linux['name']}: {lines[start]!r}"
    rows = {}
    for line in lines[start + 2:]:
        if not line.strip():
            break
        name, *counts = line.split()
        rows[name] = [int(c.replace(",", "")) for c in counts]
    for reason in ("DABT_LOW", "WFx"):
        assert reason in rows and all(c > 0 for c in rows[reason]), \
            f"{linux['name']}: expected {reason} exits on every vCPU, got {rows}"
