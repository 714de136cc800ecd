"""-s, -S and -gdb with QEMU's meaning, and their bad values (one line, exit 2)."""
import socket
import subprocess
import sys

import pytest

from armvirt import paths
from armvirt.cli import _run_configs, build_parser
from tests.gdb_util import free_port

HELLO = paths.image_path("hello.elf")


def configs(*args):
    return _run_configs(build_parser().parse_args(["run", *args]))


@pytest.mark.parametrize("args,gdb,stopped", [
    (["-s"], "tcp::1234", False),                       # QEMU: -s is -gdb tcp::1234
    (["-s", "-S"], "tcp::1234", True),
    (["-gdb", "tcp::4321"], "tcp::4321", False),
    (["-gdb", "tcp:127.0.0.1:4321", "-S"], "tcp:127.0.0.1:4321", True),
    ([], None, False),
])
def test_options_reach_the_machine_config(args, gdb, stopped):
    cfg = configs(*args, HELLO)[0]
    assert (cfg.gdb, cfg.start_stopped) == (gdb, stopped), f"{args}: observed {cfg.gdb!r}, {cfg.start_stopped}"


def test_s_is_not_smp():
    cfg = configs("-s", "-smp", "2", HELLO)[0]
    assert cfg.smp == 2 and cfg.gdb == "tcp::1234", (cfg.smp, cfg.gdb)


def armvirt(*args):
    return subprocess.run([sys.executable, "-m", "armvirt", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args,needle", [
    (["-gdb", "udp::1234"], "tcp::PORT"),
    (["-gdb", "stdio"], "tcp::PORT"),
    (["-gdb", "tcp::99999"], "1 to 65535"),
    (["-gdb", "tcp::x"], "1 to 65535"),
    (["-S"], "-S"),
])
def test_bad_values(args, needle):
    r = armvirt("run", *args, HELLO)
    assert r.returncode == 2, f"{args}: expected exit 2, observed {r.returncode}: {r.stderr}"
    assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, f"{args}: stderr {r.stderr!r}"


def test_port_in_use():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen(1)
        r = armvirt("run", "-gdb", f"tcp:127.0.0.1:{port}", HELLO)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (r.returncode, r.stderr)
    assert f"tcp:127.0.0.1:{port}" in r.stderr and "in use" in r.stderr, r.stderr


def test_a_stub_nobody_connects_to_changes_nothing():
    """-gdb without -S: the guest runs at once; with no debugger it ends as without the stub."""
    want = armvirt("run", "--format", "json", HELLO)
    got = armvirt("run", "--format", "json", "-gdb", f"tcp:127.0.0.1:{free_port()}", HELLO)
    assert got.returncode == 0 == want.returncode, got.stderr
    assert got.stdout == want.stdout, f"with an idle stub:\n{got.stdout}\nwithout:\n{want.stdout}"
