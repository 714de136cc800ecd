"""`armvirt run` takes qemu-system-aarch64's options with QEMU's syntax and meaning:
no prefix abbreviations, one-line errors naming the option (exit 2), `help` values
(exit 0), and the sizes, topologies and properties QEMU accepts, where they map
onto armvirt; what does not map is refused, never ignored."""
import os
import shutil
import subprocess

import pytest

from armvirt import cli, paths
from armvirt.qemu_args import (UsageError, parse_gdb, parse_machine, parse_serial, parse_size, parse_smp)
from engine.trace import CATEGORIES
from tools import need

HELLO = paths.image_path("hello.elf")


def run(capsys, *args):
    rc = cli.main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(capsys, *args, needle=""):
    rc, out, err = run(capsys, *args)
    assert rc == 2, f"{args}: expected exit 2, got {rc}: {err!r}"
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, f"{args}: one line expected, got {err!r}"
    assert needle in err, f"{args}: expected {needle!r} in {err!r}"
    return err


@pytest.mark.parametrize("args,needle", [
    (["-s", "2", HELLO], "unexpected argument"),  # -s is QEMU's gdbstub shorthand (no value), never -smp
    (["-sm", "2", HELLO], "-sm: invalid option"),
    (["-smp2", HELLO], "-smp2: invalid option"),
    (["-m128M", HELLO], "-m128M: invalid option"),
    (["--max-in", "5", HELLO], "--max-in: invalid option"),
    (["-no-reb", HELLO], "-no-reb: invalid option"),
    (["-nographi", HELLO], "-nographi: invalid option"),
])
def test_no_prefix_abbreviations(capsys, args, needle):
    one_line_error(capsys, "run", *args, needle=needle)


@pytest.mark.parametrize("args,needle", [
    (["-foo", HELLO], "-foo: invalid option"),
    ([HELLO, "-foo", "bar"], "-foo: invalid option"),
    (["--foo", HELLO], "--foo: invalid option"),
    (["-drive", "file=disk.img", HELLO], "-drive file=disk.img: if=virtio is not supported by armvirt"),
    (["-drive", "if=pflash,file=f,cache=none", HELLO], "drive option 'cache' is not supported"),
    (["-enable-kvm", HELLO], "-enable-kvm: QEMU option not offered by armvirt"),
    (["-D"], "-D: requires an argument"),
    (["-icount"], "-icount: requires an argument"),
    ([HELLO, "-kernel"], "-kernel: requires an argument"),
    ([HELLO, HELLO], "unexpected argument"),
])
def test_unknown_and_incomplete_options_are_one_line(capsys, args, needle):
    one_line_error(capsys, "run", *args, needle=needle)


def test_d_help_lists_items_and_exits_0(capsys):
    rc, out, err = run(capsys, "run", "-d", "help")
    lines = out.splitlines()
    assert rc == 0 and lines[0] == "Log items (comma separated):", f"rc {rc}, stdout {out!r}"
    listed = {l.split()[0]: l.split(None, 1)[1:] for l in lines[1:]}
    assert list(listed) == list(CATEGORIES), f"expected the items {CATEGORIES}, listed {list(listed)}"
    assert all(listed.values()), f"every item has a description: {listed}"


def test_d_unknown_items_are_an_error(capsys):
    err = one_line_error(capsys, "run", "-d", "exits,bogus,int", HELLO, needle="bogus")
    assert "unknown log item" in err, err


def test_d_items_and_D_file(capsys, tmp_path):
    log = tmp_path / "run.log"
    rc, out, err = run(capsys, "run", "-d", "exits,psci", "-D", str(log), "--quiet", HELLO)
    text = log.read_text()
    assert rc == 0, err
    assert "[exits]" in text and "[psci]" in text and "[mmio]" not in text, f"log: {text[:500]!r}"
    assert "[exits]" not in err, "with -D the log goes to the file, not stderr"


def test_D_unwritable_is_one_line(capsys, tmp_path):
    one_line_error(capsys, "run", "-D", str(tmp_path / "no" / "such" / "dir.log"), HELLO, needle="-D")


def test_icount_is_accepted_with_a_note(capsys):
    rc, out, err = run(capsys, "run", "-icount", "shift=auto,sleep=off", "--quiet", HELLO)
    assert rc == 0 and "Hello from armvirt guest" in out, err
    assert err.count("\n") == 1 and "always instruction-driven" in err, f"one line on stderr expected: {err!r}"
    rc, out, err = run(capsys, "run", "-icount", "0", "--quiet", HELLO)
    assert rc == 0 and "instruction-driven" in err, err


@pytest.mark.parametrize("value,needle", [("rr=record,rrfile=x", "record/replay"), ("shift=fast", "shift"),
                                          ("bogus=1", "bogus")])
def test_icount_bad_values(capsys, value, needle):
    one_line_error(capsys, "run", "-icount", value, HELLO, needle=needle)


def test_nographic_no_reboot_and_double_dash_spellings(capsys):
    rc, out, err = run(capsys, "run", "-nographic", "-no-reboot", "--smp", "2", "--m", "64M", "-max-insns",
                       "400000000", "--quiet", HELLO)
    assert rc == 0 and "EXIT: STATUS=0" in out, f"rc {rc}: {err!r}"


# --- -m --------------------------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    ("128M", 128 << 20), ("128m", 128 << 20), ("256", 256 << 20), ("1.5G", 3 << 29), ("1.25M", 1310720),
    ("size=256M", 256 << 20), ("0x100", 256 << 20), ("134217728B", 128 << 20), ("512K", 512 << 10),
    ("1G", 1 << 30), ("1T", 1 << 40), (" 128M", 128 << 20),
])
def test_m_sizes_as_qemu(text, expected):
    assert parse_size(text) == expected, f"-m {text}: expected {expected}, got {parse_size(text)}"


@pytest.mark.parametrize("text,needle", [("128MB", "size"), ("1e3", "size"), ("-1", "size"), ("abc", "size"),
                                         ("128M,maxmem=1G", "hotplug"), ("128M,slots=2", "hotplug"),
                                         ("128M,foo=1", "foo"), ("0", "positive"), ("0.3B", "whole")])
def test_m_bad_sizes(text, needle):
    with pytest.raises(UsageError, match=needle):
        parse_size(text)


# --- -smp ------------------------------------------------------------------------------
@pytest.mark.parametrize("text,cpus", [("4", 4), ("cpus=4", 4), ("cores=4", 4), ("4,cores=4", 4),
                                       ("4,sockets=1,clusters=1,cores=4,threads=1", 4), ("2,maxcpus=2", 2),
                                       ("maxcpus=3", 3), ("sockets=1,cores=2", 2)])
def test_smp_forms_that_map(text, cpus):
    assert parse_smp(text) == cpus, f"-smp {text}: expected {cpus}"


@pytest.mark.parametrize("text,needle", [
    ("cpus=2,sockets=2", "one socket"), ("4,threads=2", "thread"), ("4,clusters=2", "cluster"),
    ("2,maxcpus=4", "hotplug"), ("3,sockets=2", "product of the hierarchy"), ("4,maxcpus=2", "maxcpus"),
    ("2,dies=2", "dies not supported"), ("2,books=2", "smp.books"), ("two", "expects integer"),
    ("2,cores=x", "expects integer"), ("0", "greater than zero"),
])
def test_smp_forms_refused(text, needle):
    with pytest.raises(UsageError, match=needle):
        parse_smp(text)


# --- -M, -cpu ----------------------------------------------------------------------------
@pytest.mark.parametrize("text,cfg", [("virt", {}), ("virt,gic-version=3", {"gic_version": 3}),
                                      ("virt,gic-version=max", {"gic_version": 3}),
                                      ("type=virt,gic-version=2", {"gic_version": 2}),
                                      ("virt,virtualization=off,secure=no,mte=off", {})])
def test_machine_properties(text, cfg):
    assert parse_machine(text) == cfg, f"-M {text}: expected {cfg}"


@pytest.mark.parametrize("args,needle", [
    (["-M", "pc"], "unsupported machine type"), (["-machine", "virt,foo=1"], "virt.foo"),
    (["-M", "virt,gic-version=5"], "gic-version"), (["-M", "virt,gic-version=host"], "KVM"),
    (["-M", "virt,virtualization=on"], "EL2"), (["-M", "virt,secure=on"], "secure"),
    (["-M", "virt,secure=maybe"], "on or off"), (["-cpu", "cortex-a53"], "cortex-a53"),
    (["-cpu", "cortex-a57,pmu=off"], "pmu"),
])
def test_machine_and_cpu_refusals(capsys, args, needle):
    one_line_error(capsys, "run", *args, HELLO, needle=needle)


@pytest.mark.parametrize("args,first", [(["-M", "help"], "Supported machines are:"),
                                        (["-machine", "virt,help"], "virt-machine options:"),
                                        (["-cpu", "help"], "Available CPUs:")])
def test_help_values_exit_0(capsys, args, first):
    rc, out, err = run(capsys, "run", *args)
    assert rc == 0 and out.startswith(first), f"{args}: rc {rc}, stdout {out!r}, stderr {err!r}"


def test_values_reach_the_machine_config():
    a = cli.build_parser().parse_args(["run", "-M", "virt,gic-version=max", "-smp", "cpus=3,cores=3", "-m",
                                       "size=1.5G", "-name", "guest=web", "-append", "x=1", HELLO])
    cfg = cli._run_configs(a, cli._host_options(a))[0]
    got = (cfg.gic_version, cfg.smp, cfg.ram_size, cfg.name, cfg.append)
    assert got == (3, 3, 3 << 29, "web", "x=1"), f"expected (3, 3, 1.5G, web, x=1), got {got}"


# --- -serial, -gdb, -s, -S: declared with QEMU's syntax ------------------------------------
@pytest.mark.parametrize("text,expected", [("stdio", "stdio"), ("null", "null"), ("file:/tmp/x.log", "file:/tmp/x.log")])
def test_serial_syntax(text, expected):
    assert parse_serial(text) == expected


@pytest.mark.parametrize("text,needle", [("bogus", "not a valid char driver"), ("file:", "path"),
                                         ("tcp::4444", "not offered"), ("pty", "not offered"), ("mon:stdio", "not offered")])
def test_serial_refusals(text, needle):
    with pytest.raises(UsageError, match=needle):
        parse_serial(text)


@pytest.mark.parametrize("text,expected", [("tcp::1234", ("0.0.0.0", 1234)), ("tcp:localhost:2345", ("localhost", 2345)),
                                           ("tcp::1234,server,nowait", ("0.0.0.0", 1234))])
def test_gdb_syntax(text, expected):
    assert parse_gdb(text) == expected


@pytest.mark.parametrize("text", ["bogus", "tcp::0", "tcp::70000", "tcp:1234", "udp::1234"])
def test_gdb_refusals(text):
    with pytest.raises(UsageError, match="-gdb"):
        parse_gdb(text)


@pytest.mark.parametrize("args,needle", [
    (["-serial", "stdio", "--quiet"], None),
    (["-S"], "-S: armvirt has no monitor"), (["-s", "-gdb", "tcp::9"], "one of -s"), (["-gdb", "tcp::0"], "port 0"),
])
def test_parsed_but_not_yet_implemented_say_so(capsys, args, needle):
    """-S without a stub (nothing could start the vCPUs) and bad -gdb values are refused
    in one line (-serial works; -gdb and -s themselves: tests/test_gdb_cli.py)."""
    if needle is None:
        rc, out, err = run(capsys, "run", *args, HELLO)
        assert rc == 0 and "EXIT: STATUS=0" in out, err
    else:
        one_line_error(capsys, "run", *args, HELLO, needle=needle)


def test_serial_null_runs_without_output(capsys):
    rc, out, err = run(capsys, "run", "-serial", "null", "--quiet", HELLO)
    assert (rc, out) == (0, ""), f"expected exit 0 and no console, got {rc}: {out!r} {err!r}"


# --- image names ------------------------------------------------------------------------------
def test_bare_image_names_are_bundled_images(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("hello", "hello.elf"):
        rc, out, err = run(capsys, "run", "--quiet", name)
        assert rc == 0 and "Hello from armvirt guest at EL1" in out, f"{name}: rc {rc} {err!r}"
    (tmp_path / "hello").write_bytes(b"\x7fELF, not a kernel")   # a file here wins over the bundled image
    one_line_error(capsys, "run", "hello", needle="ELF")
    err = one_line_error(capsys, "run", "nosuchimage", needle="nosuchimage: no such file")
    assert "hypercall" in err, f"the error lists the bundled images: {err!r}"
    one_line_error(capsys, "run", "./nosuchimage", needle="no such file")


def test_name_option(capsys):
    one_line_error(capsys, "run", "-name", "bad/name", HELLO, needle="-name")
    rc, out, err = run(capsys, "run", "-name", "guest=web,debug-threads=on", "--quiet", HELLO)
    assert rc == 0, err


# --- the same mistakes, as qemu-system-aarch64 itself judges them ---------------------------------
@pytest.mark.parametrize("args,qemu_says", [
    (["-foo"], "-foo: invalid option"),
    (["-D"], "-D: requires an argument"),
    (["-smp", "two"], "expects integer"),
    (["-smp", "2,books=2"], "'smp.books' is unexpected"),
    (["-m", "128MB"], "-m 128MB"),
    (["-M", "pc"], "unsupported machine type"),
])
def test_mistakes_rejected_as_qemu_rejects_them(capsys, args, qemu_says):
    qemu = shutil.which("qemu-system-aarch64")
    need(qemu is not None, "qemu-system-aarch64 is not installed (apt-get install qemu-system-arm)")
    q = subprocess.run([qemu, "-M", "virt", "-display", "none", "-kernel", os.devnull, *args],
                       capture_output=True, text=True, timeout=30)
    assert q.returncode != 0 and qemu_says in q.stderr, f"QEMU {args}: {q.returncode} {q.stderr!r}"
    one_line_error(capsys, "run", HELLO, *args, needle=qemu_says)
