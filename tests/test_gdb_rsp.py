"""The GDB stub end to end over TCP, driven packet by packet as GDB drives it:
armvirt runs as a separate process (`armvirt run -gdb tcp:127.0.0.1:PORT -S`)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest
from elftools.elf.elffile import ELFFile

from armvirt import paths
from armvirt.gdbstub import regs
from tests.gdb_util import RspClient, free_port, symbol

DEMO = paths.image_path("gdb-demo.elf")


class Run:
    """An armvirt run with a stub, and a client connected to it."""

    def __init__(self, *args, start_stopped=True):
        self.port = free_port()
        cmd = [sys.executable, "-m", "armvirt", "run", "--format", "json", "-gdb", f"tcp:127.0.0.1:{self.port}",
               *(["-S"] if start_stopped else []), *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.gdb = RspClient(self.port)
                break
            except OSError:
                assert self.proc.poll() is None, f"armvirt exited early: {self.proc.communicate()}"
                assert time.monotonic() < deadline, "the stub never listened"
                time.sleep(0.05)

    def finish(self, timeout=120):
        out, err = self.proc.communicate(timeout=timeout)
        self.gdb.close()
        return self.proc.returncode, (json.loads(out) if out.strip() else None), err

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
        self.gdb.close()


@pytest.fixture
def run():
    runs = []

    def start(*args, **kw):
        r = Run(*args, **kw)
        runs.append(r)
        return r
    yield start
    for r in runs:
        r.kill()


def baseline(*args):
    p = subprocess.run([sys.executable, "-m", "armvirt", "run", "--format", "json", *args],
                       capture_output=True, text=True, timeout=300)
    return json.loads(p.stdout)


def handshake(g: RspClient, features="multiprocess+;swbreak+;hwbreak+;vContSupported+") -> str:
    sup = g.ask(f"qSupported:{features}")
    assert g.ask("QStartNoAckMode") == "OK"
    g.acks = False
    return sup


def rcmd(g: RspClient, line: str) -> str:
    g.send("qRcmd," + line.encode().hex())
    text = ""
    while True:
        r = g.reply().decode()
        if r.startswith("O") and r != "OK":
            text += bytes.fromhex(r[1:]).decode()
        else:
            assert r == "OK", f"qRcmd {line!r}: expected OK at the end, observed {r!r}"
            return text


def reg(g: RspClient, name: str) -> int:
    r = regs.REGISTERS[regs.REGNUM[name]]
    return regs.from_hex(r, g.ask(f"p{regs.REGNUM[name]:x}"))


def xfer(g: RspClient, annex: str) -> str:
    out, off = b"", 0
    while True:
        g.send(f"qXfer:features:read:{annex}:{off:x},200")
        r = g.reply()
        assert r[:1] in (b"m", b"l"), f"qXfer {annex}: observed {r!r}"
        out += r[1:]
        off += len(r) - 1
        if r[:1] == b"l":
            return out.decode()


def test_handshake_target_description_and_threads(run):
    r = run("-smp", "2", DEMO)
    g = r.gdb
    sup = handshake(g)
    for f in ("PacketSize=1000", "qXfer:features:read+", "swbreak+", "hwbreak+", "vContSupported+",
              "QStartNoAckMode+", "multiprocess+"):
        assert f in sup.split(";"), f"expected {f} in the qSupported reply, observed {sup!r}"
    target = ET.fromstring(xfer(g, "target.xml"))
    assert target.findtext("architecture") == "aarch64", xfer(g, "target.xml")
    names = {}
    for inc in target:
        if inc.tag.endswith("include"):
            feat = ET.fromstring(xfer(g, inc.get("href")))
            names[feat.get("name")] = {e.get("name"): (int(e.get("bitsize")), int(e.get("regnum")))
                                       for e in feat.iter("reg")}
    core, fpu = names["org.gnu.gdb.aarch64.core"], names["org.gnu.gdb.aarch64.fpu"]
    assert core["x0"] == (64, 0) and core["x30"] == (64, 30) and core["sp"] == (64, 31) \
        and core["pc"] == (64, 32) and core["cpsr"] == (32, 33), f"core registers: {core}"
    assert len(fpu) == 34 and fpu["v0"] == (128, 34) and fpu["v31"] == (128, 65) \
        and fpu["fpsr"] == (32, 66) and fpu["fpcr"] == (32, 67), f"fpu registers: {fpu}"
    assert g.ask("qXfer:features:read:nope.xml:0,100") == "E00"
    assert g.ask("vCont?") == "vCont;c;C;s;S"
    assert g.ask("qAttached:1") == "1"
    assert g.ask("?") == "T05thread:p01.01;", "at -S the first vCPU is the stopped thread"
    assert g.ask("qC") == "QCp01.01"
    assert g.ask("qfThreadInfo") == "mp01.01,p01.02" and g.ask("qsThreadInfo") == "l"
    info = bytes.fromhex(g.ask("qThreadExtraInfo,p01.02")).decode()
    assert info == "CPU#1 [halted ]", f"the secondary is off until CPU_ON: observed {info!r}"
    assert g.ask("Tp01.02") == "OK" and g.ask("Tp01.03") == "E22"
    assert g.ask("Hgp01.02") == "OK" and g.ask("Hgp01.09") == "E22"
    assert g.ask("vMustReplyEmpty") == "" and g.ask("qTStatus") == ""
    g.send("k")
    code, doc, err = r.finish()
    assert doc["reason"] == "killed" and "terminated via the GDB stub" in err, (code, doc, err)


def test_registers_and_memory(run):
    r = run(DEMO)
    g = r.gdb
    handshake(g, "swbreak+")
    with open(DEMO, "rb") as f:
        elf = ELFFile(f)
        entry = elf["e_entry"]
        text = elf.get_section_by_name(".text")
        first = text.data()[:16]
    allregs = g.ask("g")
    assert len(allregs) == 2 * (31 * 8 + 8 + 8 + 4), f"'g' carries the core feature: {len(allregs)} hex digits"
    pc = int.from_bytes(bytes.fromhex(allregs[2 * 8 * 32:2 * 8 * 33]), "little")
    assert pc == entry == reg(g, "pc"), f"expected PC {entry:#x}, observed g {pc:#x}, p {reg(g, 'pc'):#x}"
    assert reg(g, "cpsr") & 0xF == 0x5, "the boot contract enters at EL1h"
    assert reg(g, "x0") != 0, "x0 holds the DTB address"
    changed = allregs[:2 * 8 * 3] + (0xABCD).to_bytes(8, "little").hex() + allregs[2 * 8 * 4:]
    assert g.ask("G" + changed) == "OK" and reg(g, "x3") == 0xABCD, "G writes x3"
    assert g.ask("G" + allregs) == "OK" and g.ask("g") == allregs, "G then g gives back the same registers"
    assert g.ask(f"P5={0x1122334455667788.to_bytes(8, 'little').hex()}") == "OK"
    assert reg(g, "x5") == 0x1122334455667788
    v7 = (0x0123456789ABCDEF << 64) | 0xFEDCBA9876543210
    assert g.ask(f"P{regs.REGNUM['v7']:x}={v7.to_bytes(16, 'little').hex()}") == "OK"
    assert reg(g, "v7") == v7, f"v7: expected {v7:#x}, observed {reg(g, 'v7'):#x}"
    assert g.ask(f"P{regs.REGNUM['fpcr']:x}={(0x3000000).to_bytes(4, 'little').hex()}") == "OK"
    assert reg(g, "fpcr") == 0x3000000
    assert g.ask("p99") == "E14"
    got = bytes.fromhex(g.ask(f"m{text['sh_addr']:x},10"))
    assert got == first, f"m of .text: expected {first.hex()}, observed {got.hex()}"
    counter = symbol(DEMO, "counter")
    assert g.ask(f"M{counter:x},8:{(77).to_bytes(8, 'little').hex()}") == "OK"
    assert int.from_bytes(bytes.fromhex(g.ask(f"m{counter:x},8")), "little") == 77
    assert g.ask(b"X%x,4:" % counter + b"}\x03\x00\x00\x00") == "OK"       # binary, '#' escaped
    assert bytes.fromhex(g.ask(f"m{counter:x},4")) == b"#\x00\x00\x00"
    assert g.ask(f"M{counter:x},8:{bytes(8).hex()}") == "OK"
    assert g.ask("m8000000000,4") == "E14", "no RAM there: an error, not a crash"
    assert g.ask("m9000000,4") == "E14", "the UART is a device: a debugger read must not reach it"
    assert g.ask("m40080000,2000") == "E22", "longer than PacketSize/2"
    g.send("vCont;c")
    code, doc, err = r.finish()
    assert code == 0 and doc["status"] == 0, (code, doc, err)
    assert "gdb-demo: cpus=1 cpu_sum=0 counter=55 sum=220 origin=(3,4)" in doc["console"], doc["console"]


def test_break_step_watch_detach_leave_the_run_unchanged(run):
    want = baseline("-smp", "2", DEMO)
    r = run("-smp", "2", DEMO)
    g = r.gdb
    handshake(g)
    bump, counter, accumulate = (symbol(DEMO, n) for n in ("bump", "counter", "accumulate"))
    assert g.ask(f"Z0,{bump:x},4") == "OK"
    g.send("vCont;c")
    stop = g.reply().decode()
    assert stop == "T05thread:p01.01;swbreak:;", f"expected a software breakpoint stop, observed {stop!r}"
    assert reg(g, "pc") == bump and reg(g, "x0") == 1, "bump(1) first"
    assert g.ask(f"z0,{bump:x},4") == "OK"
    for k in (1, 2, 3):
        g.send("vCont;s:p01.01;c")
        stop = g.reply().decode()
        assert stop == "T05thread:p01.01;", f"step {k}: observed {stop!r}"
        assert reg(g, "pc") == bump + 4 * k, f"step {k}: expected PC {bump + 4 * k:#x}, observed {reg(g, 'pc'):#x}"
    assert g.ask(f"Z2,{counter:x},8") == "OK"
    g.send("vCont;c")
    stop = g.reply().decode()
    assert stop == f"T05thread:p01.01;watch:{counter:x};", f"expected a write watchpoint stop, observed {stop!r}"
    pc = reg(g, "pc")
    word = int.from_bytes(bytes.fromhex(g.ask(f"m{pc:x},4")), "little")
    assert bump < pc < bump + 0x20 and word & 0xFFC00000 == 0xF9000000, \
        f"expected a stop at bump's STR (before it retires), observed PC {pc:#x} word {word:#010x}"
    assert g.ask(f"z2,{counter:x},8") == "OK"
    assert g.ask(f"Z1,{bump:x},4") == "OK"          # a hardware breakpoint: the next call, bump(2)
    g.send("vCont;c")
    stop = g.reply().decode()
    assert stop == "T05thread:p01.01;hwbreak:;", f"expected a hardware breakpoint stop, observed {stop!r}"
    assert reg(g, "x0") == 2, f"bump(2): observed x0 {reg(g, 'x0')}"
    assert g.ask(f"z1,{bump:x},4") == "OK"
    assert g.ask(f"Z1,{accumulate:x},4") == "OK"    # already past: never hit again
    assert g.ask(f"Z3,{counter:x},8") == "OK"       # bump reads counter first
    g.send("c")
    stop = g.reply().decode()
    assert stop == f"T05thread:p01.01;rwatch:{counter:x};", f"expected a read watchpoint stop, observed {stop!r}"
    assert g.ask(f"z3,{counter:x},8") == "OK"
    assert g.ask("Hcp01.01") == "OK"
    g.send("s")                                      # over the load, which the watchpoint stopped before
    assert g.reply().decode() == "T05thread:p01.01;"
    assert g.ask(f"Z4,{counter:x},8") == "OK"
    g.send("c")
    stop = g.reply().decode()
    assert stop == f"T05thread:p01.01;awatch:{counter:x};", f"expected an access watchpoint stop, observed {stop!r}"
    assert g.ask(f"z4,{counter:x},8") == "OK"
    text = rcmd(g, "exit")
    assert "last exit:" in text, text
    assert g.ask("D;1") == "OK"
    code, doc, err = r.finish()
    same = (doc["guest_instructions"], doc["cycles"], doc["console"], doc["exits"])
    base = (want["guest_instructions"], want["cycles"], want["console"], want["exits"])
    assert same == base, f"with the debugger: {same[:2]}; without: {base[:2]}"


def test_ctrl_c_interrupts_a_running_guest_and_k_kills_it(run):
    r = run(paths.image_path("compute.elf"))
    g = r.gdb
    handshake(g)
    g.send("vCont;c")
    time.sleep(0.5)
    g.interrupt()
    stop = g.reply().decode()
    assert stop == "T02thread:p01.01;", f"expected SIGINT for the running vCPU, observed {stop!r}"
    first = rcmd(g, "vcpus")
    assert first.count("running") == 1, first
    g.send("c")
    time.sleep(0.2)
    g.interrupt()
    assert g.reply().decode() == "T02thread:p01.01;"
    later = rcmd(g, "vcpus")
    insns = [int(t.split(":")[1].split()[0].replace(",", "")) for t in (first, later)]
    assert insns[1] > insns[0], f"the guest ran between the two interrupts: instructions {insns}"
    g.send("k")
    code, doc, err = r.finish()
    assert code == 3 and doc["reason"] == "killed", f"expected exit 3 (stopped), observed {code}: {doc}"
    assert "terminated via the GDB stub" in err, err


def test_connecting_stops_a_running_guest(run):
    r = run(paths.image_path("compute.elf"), start_stopped=False)
    g = r.gdb
    handshake(g)
    assert g.ask("?") == "T05thread:p01.01;", "the VM stops when GDB connects, as QEMU's"
    insns = rcmd(g, "vcpus")
    time.sleep(0.3)
    assert rcmd(g, "vcpus") == insns, "stopped: no instruction and no modeled cycle passes"
    g.send("k")
    code, doc, err = r.finish()
    assert code == 3 and doc["reason"] == "killed", (code, doc, err)


def test_monitor_over_the_wire(run):
    r = run(DEMO)
    g = r.gdb
    handshake(g)
    assert "monitor stage2 IPA" in rcmd(g, "help")
    assert "HCR_EL2" in rcmd(g, "el2") and "no exit yet" in rcmd(g, "el2")
    assert "MMIO: pl011" in rcmd(g, "stage2 0x9000000")
    assert "unknown command" in rcmd(g, "nosuch")
    g.send("k")
    r.finish()


def test_processes_one_per_vm(run):
    r = run("--vm", DEMO, "--vm", f"{DEMO} -name peer")
    g = r.gdb
    handshake(g)
    assert g.ask("qfThreadInfo") == "mp01.01", "only the first VM is attached at first"
    assert g.ask("vAttach;2") == "T05thread:p02.01;"
    assert g.ask("qfThreadInfo") == "mp01.01,p02.01"
    assert g.ask("Hgp02.01") == "OK" and "peer" in rcmd(g, "el2")
    assert g.ask("D;2") == "OK" and g.ask("qfThreadInfo") == "mp01.01"
    g.send("D;1")
    assert g.reply() == b"OK"
    code, doc, err = r.finish()
    assert code == 0 and [v["status"] for v in doc["vms"]] == [0, 0], (code, doc, err)


MALFORMED = ["Z9,0,0", "Zx", "p", "pzz", "P5", "P5=zz", "m", "mzz,4", "M40080000,4:zz", "Hg", "Hqp1.1", "Tzz",
             "qThreadExtraInfo,zz", "qXfer:features:read:target.xml", "vAttach;zz", "vCont;x", "D;zz",
             "qRcmd,zz", "G0", "\x7f", "c zz", "X40080000,zz:"]


def test_malformed_packets_get_an_error_not_a_crash(run):
    r = run(DEMO)
    g = r.gdb
    handshake(g)
    for pkt in MALFORMED:
        reply = g.ask(pkt)
        assert reply in ("", "E22", "E14", "E00"), f"{pkt!r}: expected an error or empty reply, observed {reply!r}"
        assert g.ask("?") == "T05thread:p01.01;", f"the stub still answers after {pkt!r}"
    g.send("k")
    code, doc, err = r.finish()
    assert "Traceback" not in err and doc["reason"] == "killed", err
