"""gdb-multiarch against the stub, as a user drives it (README "Debugging with GDB"):
break on a function, read registers and variables, step, watch a store, look at
the lowvisor, continue to the exit; and the run ends with the same instructions
and cycles as without GDB."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from armvirt import paths
from tests.gdb_util import free_port, gdb_multiarch, symbol

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = paths.image_path("gdb-demo.elf")


def test_gdb_session_on_gdb_demo(tmp_path):
    gdb = gdb_multiarch()
    base = subprocess.run([sys.executable, "-m", "armvirt", "run", "--format", "json", "-smp", "2", DEMO],
                          capture_output=True, text=True, timeout=300)
    want = json.loads(base.stdout)
    port = free_port()
    script = tmp_path / "session.gdb"
    script.write_text(textwrap.dedent(f"""\
        set pagination off
        set confirm off
        target remote 127.0.0.1:{port}
        info registers pc
        break bump
        continue
        info registers x0 pc
        print counter
        print origin
        print/x $fpcr
        info threads
        stepi
        info registers pc
        next
        watch counter
        continue
        continue
        delete
        monitor el2
        monitor stage2 0x40080000
        continue
        """))
    stub = subprocess.Popen([sys.executable, "-m", "armvirt", "run", "--format", "json", "-smp", "2",
                             "-gdb", f"tcp::{port}", "-S", DEMO],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # -S prints its line once the port listens
        line = stub.stderr.readline()
        assert "waiting for GDB" in line, f"expected the stub's -S line, observed {line!r}"
        session = subprocess.run([gdb, "-nx", "-batch", "-x", str(script), DEMO], cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
        out, err = stub.communicate(timeout=120)
    finally:
        if stub.poll() is None:
            stub.kill()
    text = session.stdout
    bump = symbol(DEMO, "bump")
    expect = [
        "_start () at runtime/start.S",                  # -S: stopped at the entry
        "Breakpoint 1 at ",
        "hit Breakpoint 1, bump (step=step@entry=1) at gdb-demo/main.c:24",
        "x0             0x1",
        f"pc             {bump:#x}",
        "$1 = 0",
        "$2 = {x = 3, y = 4}",
        "Thread 1.2 (CPU#1 [halted ])",                  # the secondary has powered off again
        f"pc             {bump + 4:#x}",                 # stepi
        "Hardware watchpoint 2: counter",
        "hit Breakpoint 1, bump (step=step@entry=2)",
        "hit Hardware watchpoint 2: counter",
        "Old value = 1\nNew value = 3",
        "HCR_EL2",
        "level 2 block (2 MiB) descriptor",   # guest RAM faults in by THP blocks
        "[Inferior 1 (process 1) exited normally]",
    ]
    pos = 0
    for e in expect:
        at = text.find(e, pos)
        assert at >= 0, f"expected {e!r} (after offset {pos}) in gdb's output:\n{text}"
        pos = at + len(e)
    doc = json.loads(out)
    got = (doc["status"], doc["guest_instructions"], doc["cycles"], doc["console"])
    base_tuple = (want["status"], want["guest_instructions"], want["cycles"], want["console"])
    assert got == base_tuple, (f"with gdb: status, instructions, cycles {got[:3]}; "
                               f"without: {base_tuple[:3]}")
