"""-s, -S and -gdb with QEMU's meaning, and their bad values (one line, exit 2)."""
import socket

import pytest

from armvirt import paths
from armvirt.cli import _host_options, _run_configs, build_parser, main
from tests.gdb_util import free_port

HELLO = paths.image_path("hello.elf")


def configs(*args):
    a = build_parser().parse_args(["run", *args])
    return _run_configs(a, _host_options(a))


@pytest.mark.parametrize("args,gdb,stopped", [
    (["-s"], ("0.0.0.0", 1234), False),                 # QEMU: -s is -gdb tcp::1234, every interface
    (["-s", "-S"], ("0.0.0.0", 1234), True),
    (["-gdb", "tcp::4321"], ("0.0.0.0", 4321), False),
    (["-gdb", "tcp:127.0.0.1:4321", "-S"], ("127.0.0.1", 4321), True),
    ([], None, False),
])
def test_options_reach_the_machine_config(args, gdb, stopped):
    cfg = configs(*args, HELLO)[0]
    assert (cfg.gdb, cfg.start_stopped) == (gdb, stopped), f"{args}: observed {cfg.gdb!r}, {cfg.start_stopped}"


def test_s_is_not_smp():
    cfg = configs("-s", "-smp", "2", HELLO)[0]
    assert cfg.smp == 2 and cfg.gdb == ("0.0.0.0", 1234), (cfg.smp, cfg.gdb)


def armvirt(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("args,needle", [
    (["-gdb", "udp::1234"], "tcp::PORT"),
    (["-gdb", "stdio"], "tcp::PORT"),
    (["-gdb", "tcp::99999"], "between 1 and 65535"),
    (["-gdb", "tcp::x"], "tcp::PORT"),
    (["-S"], "-S: armvirt has no monitor"),
])
def test_bad_values(capsys, args, needle):
    code, _, err = armvirt(capsys, "run", *args, HELLO)
    assert code == 2, f"{args}: expected exit 2, observed {code}: {err}"
    assert len(err.strip().splitlines()) == 1 and needle in err, f"{args}: stderr {err!r}"


def test_port_in_use(capsys):
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen(1)
        code, _, err = armvirt(capsys, "run", "-gdb", f"tcp:127.0.0.1:{port}", HELLO)
    assert code == 2 and len(err.strip().splitlines()) == 1, (code, err)
    assert f"tcp:127.0.0.1:{port}" in err and "in use" in err, err


def test_a_stub_nobody_connects_to_changes_nothing(capsys):
    """-gdb without -S: the guest runs at once; with no debugger it ends as without the stub."""
    want = armvirt(capsys, "run", "--format", "json", HELLO)
    got = armvirt(capsys, "run", "--format", "json", "-gdb", f"tcp:127.0.0.1:{free_port()}", HELLO)
    assert got[0] == 0 == want[0], got[2]
    assert got[1] == want[1], f"with an idle stub:\n{got[1]}\nwithout:\n{want[1]}"
