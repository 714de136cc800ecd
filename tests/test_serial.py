"""images/serial-in: the PL011 read by polling and by interrupts from a piped stdin,
an environment read from an initrd through /chosen, the PL031; -serial back ends;
a terminal stdin in raw mode and restored on every way out."""
from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import time

import pytest

from armvirt import paths
from armvirt.devices.pl031 import EPOCH

IMAGE = paths.image_path("serial-in.elf")
ENV_FILE = paths.image_path("serial-in/env.txt")           # the image's example environment
LINES = open(paths.image_path("serial-in/input.txt"), "rb").read()   # ... and the lines it reads
ENV = open(ENV_FILE, "rb").read()


def armvirt_cmd(*args):
    return [sys.executable, "-m", "armvirt", "run", *args]


def run(*args, stdin=subprocess.DEVNULL, input=None):
    return subprocess.run(armvirt_cmd(*args), capture_output=True, timeout=300, stdin=None if input else stdin,
                          input=input)


def lines(r) -> list[str]:
    return json.loads(r.stdout)["console"]


@pytest.fixture(scope="module")
def env_file():
    return ENV_FILE


@pytest.fixture(scope="module")
def scripted(env_file):
    """One run per GIC with the whole script piped at once (shared by the tests below)."""
    return {gic: run("--format", "json", "-M", f"virt,gic-version={gic}", "-initrd", env_file, IMAGE, input=LINES)
            for gic in (2, 3)}


@pytest.mark.parametrize("gic", [2, 3])
def test_reads_initrd_rtc_polled_and_interrupt_lines(scripted, gic):
    r = scripted[gic]
    assert r.returncode == 0, f"expected exit 0, got {r.returncode}: {r.stderr.decode()}"
    got = lines(r)
    want_tail = [
        "env GREETING=hello from the initrd", "env MODE=test", f"serial-in: rtc={EPOCH}",
        "poll> poll: got 'typed for the poller' (20 chars)",
        f"serial-in: uart intid=33 gic=v{gic}",
        # 5 chars: below the RX trigger (16), so only the RX timeout interrupt
        "irq> irq: got 'short' (5 chars, rx_irqs=0 rt_irqs=1)",
        # 36 chars: RX level interrupts at 16 and again at 16 more, the last 4 by timeout
        "irq> irq: got '0123456789abcdefghijklmnopqrstuvwxyz' (36 chars, rx_irqs=2 rt_irqs=1)",
        "EXIT: STATUS=0"]
    assert got[1:] == want_tail, f"expected console\n{want_tail}\ngot\n{got[1:]}"
    assert got[0].startswith("serial-in: initrd 0x") and got[0].endswith(f"+{len(ENV)}, 2 variables"), got[0]


def test_same_input_same_output_and_cycles_whenever_it_is_written(scripted, env_file):
    """The bytes arrive in the pipe late and in pieces: virtual time does not see it."""
    p = subprocess.Popen(armvirt_cmd("--format", "json", "-M", "virt,gic-version=2", "-initrd", env_file, IMAGE),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for chunk in (b"typed for", b" the poller\nsho", b"rt\n0123456789", b"abcdefghijklmnopqrstuvwxyz\n"):
        time.sleep(0.3)
        p.stdin.write(chunk)
        p.stdin.flush()
    p.stdin.close()
    p.stdin = None
    out, err = p.communicate(timeout=300)
    a, b = json.loads(scripted[2].stdout), json.loads(out)
    keys = ("console", "guest_instructions", "cycles", "exits")
    got = {k: b[k] for k in keys}
    want = {k: a[k] for k in keys}
    assert got == want, f"expected the all-at-once run's {want}, got {got}"


def test_no_input_times_out(env_file):
    r = run("--format", "json", IMAGE)
    got = lines(r)
    assert r.returncode == 1 and "poll: timeout" in got and got.count("irq: timeout") == 2, \
        f"expected exit 1 and three timeouts, got {r.returncode}: {got}"
    assert got[0] == "serial-in: no initrd", f"expected no initrd, got {got[0]!r}"


def test_serial_null_drops_output_and_reads_no_input():
    r = run("--quiet", "-serial", "null", IMAGE, input=LINES)
    assert (r.returncode, r.stdout) == (1, b""), \
        f"expected exit 1 (no input: timeouts) and no output, got {r.returncode}: {r.stdout!r}"


def test_serial_file_gets_output_and_reads_no_input(tmp_path):
    out = tmp_path / "uart.txt"
    r = run("--quiet", "-serial", f"file:{out}", IMAGE, input=LINES)
    text = out.read_text()
    assert r.returncode == 1 and r.stdout == b"", f"expected exit 1 and nothing on stdout, got {r.returncode}"
    assert "poll: timeout" in text and text.endswith("EXIT: STATUS=1\n"), f"file holds: {text!r}"


def test_bad_serial_option():
    r = run("-serial", "tcp::4444", IMAGE)
    err = r.stderr.decode()
    assert r.returncode == 2 and len(err.strip().splitlines()) == 1 and "-serial tcp::4444" in err, \
        f"expected one line and exit 2, got {r.returncode}: {err!r}"


# --- a terminal -----------------------------------------------------------------------------------
def _spawn_on_pty(*args):
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    p = subprocess.Popen(armvirt_cmd(*args), stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p, master, slave, before


def _wait_raw(slave, before, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if termios.tcgetattr(slave)[3] != before[3]:
            return termios.tcgetattr(slave)
        time.sleep(0.05)
    raise AssertionError("armvirt never put the terminal in raw mode")


def _close(master, slave):
    os.close(master)
    os.close(slave)


def test_terminal_raw_while_running_and_restored_at_exit():
    p, master, slave, before = _spawn_on_pty("--quiet", IMAGE)
    try:
        raw = _wait_raw(slave, before)
        assert not raw[3] & (termios.ECHO | termios.ICANON) and raw[3] & termios.ISIG, \
            f"expected ECHO and ICANON off, ISIG kept; lflag {raw[3]:#x}"
        os.write(master, b"key by key\r")
        out, _ = p.communicate(timeout=120)
        after = termios.tcgetattr(slave)
    finally:
        _close(master, slave)
    assert b"poll: got 'key by key' (10 chars)" in out, f"expected the typed line polled, got {out!r}"
    assert after == before, f"expected the terminal restored, lflag {before[3]:#x} -> {after[3]:#x}"


@pytest.mark.parametrize("how", ["ctrl-a x", "SIGTERM", "SIGINT"])
def test_terminal_restored_when_interrupted(how):
    p, master, slave, before = _spawn_on_pty("--quiet", "-M", "virt,gic-version=2", IMAGE)
    try:
        _wait_raw(slave, before)
        os.write(master, b"x\r")                          # the poller's line, then it waits in WFI
        if how == "ctrl-a x":
            os.write(master, b"\x01x")
        else:
            time.sleep(0.5)
            p.send_signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGINT)
        _, err = p.communicate(timeout=120)
        after = termios.tcgetattr(slave)
    finally:
        _close(master, slave)
    want_rc = {"ctrl-a x": 0, "SIGTERM": -signal.SIGTERM, "SIGINT": 130}[how]
    assert p.returncode == want_rc, f"{how}: expected exit {want_rc}, got {p.returncode}: {err!r}"
    assert after == before, f"{how}: expected the terminal restored, lflag {before[3]:#x} -> {after[3]:#x}"
