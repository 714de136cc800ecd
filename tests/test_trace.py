"""Traces (--trace-out) and block logs (-d in_asm, exec): the trace files are valid
Trace Event Format as Perfetto reads it (tests/trace_format.py), hold the tracks and
slices the run had, agree with the exit statistics, and change nothing modeled."""
import gzip
import io
import json
import subprocess
import sys
from collections import Counter

import pytest

import trace_format as tf
from armvirt import paths
from armvirt.console import Console
from armvirt.machine import Machine, MachineConfig, make_host, run_machines
from armvirt.trace_events import TraceWriter
from engine.trace import Timeline, Tracer
from host_kernel.ipi import NOT_ASLEEP


def armvirt(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "armvirt", *args], capture_output=True, text=True,
                          timeout=timeout)


def traced(xgene, specs, **common):
    """Run VMs ([(image, config)]) on one host with a timeline; returns (results, document)."""
    trace = Tracer(timeline=Timeline())
    cfgs = [MachineConfig(kernel=paths.image_path(img), max_insns=400_000_000, **{"name": f"vm{i}", **common, **kw})
            for i, (img, kw) in enumerate(specs)]
    host = make_host(cfgs[0], xgene, trace)
    machines = [Machine(c, xgene, console=Console(echo=False), trace=trace, host=host) for c in cfgs]
    results = run_machines(machines)
    w = TraceWriter()
    w.add(trace.timeline, xgene.cpu_hz)
    buf = io.StringIO()
    w.write(buf)
    return results, json.loads(buf.getvalue())


def valid(doc):
    errors = tf.validate(doc)
    assert errors == [], f"expected a valid trace, got {len(errors)} errors, first: {errors[:5]}"
    moved = doc["otherData"]["moved_to_nest"]
    assert moved == 0, f"expected every step where the ledger put it, {moved} had to be moved to nest"
    return tf.tracks(doc)


def slices(events, name=None, cat=None):
    return [e for e in events if e["ph"] == "X" and (name is None or e["name"] == name)
            and (cat is None or e.get("cat") == cat)]


def inside(events, outer, tree=None):
    """The descendants of the slice `outer` on its track, as Perfetto nests them."""
    tree = tree if tree is not None else tf.children(events)
    out, todo = [], list(tree.get(id(outer), []))
    while todo:
        e = todo.pop(0)
        out.append(e)
        todo += tree.get(id(e), [])
    return out


def same_run(a, b, what):
    for field in ("status", "reason", "insns", "cycles", "stats", "counters"):
        assert getattr(a, field) == getattr(b, field), \
            f"{what}: {field} differs with a trace: {getattr(b, field)!r}, without: {getattr(a, field)!r}"
    assert a.console.lines == b.console.lines, f"{what}: the console differs with a trace"


# --- the validator itself ------------------------------------------------------------
def _doc(*events, names=True):
    meta = [{"name": "process_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": "p"}},
            {"name": "thread_name", "ph": "M", "pid": 1, "tid": 2, "args": {"name": "t"}}] if names else []
    return {"traceEvents": meta + [dict(pid=1, tid=2, **e) for e in events]}


@pytest.mark.parametrize("events,needle", [
    ([{"name": "a", "ph": "B", "ts": 1}], "B without E"),
    ([{"name": "a", "ph": "E", "ts": 1}], "no open B"),
    ([{"name": "a", "ph": "X", "ts": 0, "dur": 5}, {"name": "b", "ph": "X", "ts": 3, "dur": 5}], "overlaps"),
    ([{"name": "a", "ph": "X", "ts": 5, "dur": 1}, {"name": "b", "ph": "X", "ts": 3, "dur": 1}], "goes back"),
    ([{"name": "a", "ph": "Q", "ts": 0}], "unknown phase"),
    ([{"name": "a", "ph": "X", "ts": 0}], "dur"),
    ([{"name": "a", "ph": "B", "ts": 0}, {"name": "b", "ph": "E", "ts": 1}], "closes B"),
    ([{"name": "c", "ph": "C", "ts": 0, "args": {"n": "x"}}], "numbers"),
])
def test_validator_rejects(events, needle):
    errors = tf.validate(_doc(*events))
    assert any(needle in e for e in errors), f"expected an error with {needle!r}, got {errors}"


def test_validator_wants_names_and_accepts_nesting():
    nested = [{"name": "a", "ph": "X", "ts": 0, "dur": 5}, {"name": "b", "ph": "X", "ts": 1, "dur": 2},
              {"name": "i", "ph": "i", "s": "t", "ts": 2}, {"name": "c", "ph": "X", "ts": 5, "dur": 1},
              {"name": "d", "ph": "B", "ts": 7}, {"name": "d", "ph": "E", "ts": 8}]
    assert tf.validate(_doc(*nested)) == [], tf.validate(_doc(*nested))
    errors = tf.validate(_doc(*nested, names=False))
    assert any("process_name" in e for e in errors) and any("thread_name" in e for e in errors), errors
    assert tf.validate({"otherData": {}, "traceEvents": []}), "traceEvents must come first"


# --- traces of runs ------------------------------------------------------------------
@pytest.fixture(scope="module")
def hypercall(xgene):
    return traced(xgene, [("hypercall.elf", {})])


def test_hypercall_trace(boot, hypercall, xgene):
    (res,), doc = hypercall
    same_run(boot("hypercall.elf"), res, "hypercall")
    t = valid(doc)
    assert ("host", "pCPU 0") in t and ("VM vm0", "vcpu0") in t, f"expected pCPU and vCPU tracks, got {list(t)}"
    vcpu = t[("VM vm0", "vcpu0")]
    exits = [e for e in slices(vcpu) if e.get("cat") == "exit"]
    # the exit slices are the exit statistics: the same count and cycles per reason
    by_name = Counter(e["name"] for e in exits)
    cycles = Counter()
    for e in exits:
        cycles[e["name"]] += e["args"]["cycles"]
    for row in res.stats:
        assert by_name[row["VM-EXIT"]] == row["Samples"], \
            f"{row['VM-EXIT']}: {row['Samples']} exits in the statistics, {by_name[row['VM-EXIT']]} slices"
        assert abs(cycles[row["VM-EXIT"]] - row["Avg"] * row["Samples"]) < row["Samples"], \
            f"{row['VM-EXIT']}: {row['Avg'] * row['Samples']:.0f} cycles in the statistics, {cycles[row['VM-EXIT']]}"
    tree = tf.children(vcpu)
    hvc = [e for e in exits if e["name"] == "HVC64"][500]
    assert hvc["args"]["EC"] == "0x16", hvc
    within = inside(vcpu, hvc, tree)
    names = {e["name"] for e in within}
    for group in ("save guest GP registers", "restore guest GP registers", "save guest EL1 system registers",
                  "restore host EL1 system registers"):
        assert group in names, f"expected the world-switch step {group!r} inside an HVC64 exit, got {sorted(names)}"
    ws = [e for e in within if "registers" in e.get("args", {})]
    assert all(e["args"]["registers"] > 0 for e in ws) and len(ws) >= 14, \
        f"expected the register groups of both world switches, got {[e['name'] for e in ws]}"
    parts = tree[id(hvc)]
    assert [p["name"] for p in parts][:3] == ["hardware", "lowvisor EL2", "hardware"], \
        f"an exit starts with the trap, the lowvisor's switch, the ERET: {[p['name'] for p in parts]}"
    assert {"highvisor EL1"} <= {p["name"] for p in parts}, [p["name"] for p in parts]
    # where each part ran adds up to the exit: what the guest measured, in the file's own units
    assert sum(p["args"]["cycles"] for p in parts) == hvc["args"]["cycles"], \
        f"expected the exit's parts to add up to its {hvc['args']['cycles']} cycles: {parts}"
    for p in parts:
        assert sum(c["args"]["cycles"] for c in tree[id(p)]) == p["args"]["cycles"], p
    assert abs(hvc["dur"] - hvc["args"]["cycles"] / xgene.cpu_hz * 1e6) < 1e-3, \
        f"dur {hvc['dur']} us should be {hvc['args']['cycles']} cycles at {xgene.cpu_hz} Hz"
    user = [e for e in exits if e["name"] == "DABT_LOW" and slices(tree.get(id(e), []), "VMM user space")]
    assert user, "expected PL011 exits with the VMM's user-space device work"
    assert slices(vcpu, "guest"), "expected guest execution slices"


@pytest.fixture(scope="module")
def ipi(xgene):
    return traced(xgene, [("ipi.elf", {"smp": 2})])


def test_smp_ipi_trace(boot, ipi):
    (res,), doc = ipi
    same_run(boot("ipi.elf", smp=2), res, "ipi")
    t = valid(doc)
    for track in (("host", "pCPU 0"), ("host", "pCPU 1"), ("VM vm0", "vcpu0"), ("VM vm0", "vcpu1")):
        assert track in t, f"expected track {track}, got {list(t)}"
    v0, v1 = t[("VM vm0", "vcpu0")], t[("VM vm0", "vcpu1")]
    kicks = [e for e in v0 if e["ph"] == "i" and e["name"] == "kvm_vcpu_kick(vCPU1)"]
    injected = [e for e in v1 if e["ph"] == "i" and e["name"].startswith("inject vIRQ")]
    assert len(kicks) >= 420 and len(injected) >= 420, \
        f"expected ~420 kicks of vCPU1 and injections into it (ipi and ipi_wfi), got {len(kicks)} and {len(injected)}"
    wfx = slices(v1, "WFx")
    assert len(wfx) == next(r["Samples"] for r in res.stats if r["vCPU"] == 1 and r["VM-EXIT"] == "WFx")
    tree = tf.children(v1)
    # A WFx exit blocks in WFI, unless the kick comes after its kvm_vcpu_check_block but before
    # its pCPU went idle: then the thread never slept, and nothing wakes the pCPU out of WFI.
    slept = [e for e in wfx if slices(tree[id(e)], "blocked in WFI")]
    not_asleep = [e for e in wfx if any(c["name"] == NOT_ASLEEP for c in inside(v1, e, tree))]
    assert len(slept) + len(not_asleep) == len(wfx) and not set(map(id, slept)) & set(map(id, not_asleep)), \
        f"expected every one of {len(wfx)} WFx exits to block in WFI ({len(slept)}) or to be woken " \
        f"before it slept ({len(not_asleep)})"
    for e in not_asleep:
        woke = [c["name"] for c in inside(v1, e, tree) if "out of WFI" in c["name"]]
        assert woke == [], f"a vCPU woken before it slept leaves no WFI, got {woke}"
    assert slices(t[("host", "pCPU 1")], "idle"), "pCPU 1 idles while its vCPU is blocked"
    counter = [e for e in v1 if e["ph"] == "C"]
    assert {e["args"]["vcpu1"] for e in counter} >= {0, 1}, f"LRs in use should go 1 and 0, got {counter[:4]}"


@pytest.mark.parametrize("design", ["vhe", "type1"])
def test_a_vcpu_kicked_before_it_slept_is_neither_put_nor_loaded(xgene, design):
    """smp-mmu on 4 vCPUs: a kick lands after a vCPU's WFx exit decided to block but before
    its pCPU switched away from it.  Its thread never left the CPU (Linux: schedule() picks
    it again, no kvm_sched_out/in; Xen: vcpu_wake of a running unit, no context switch), so
    none of the state VHE defers or Xen's ctxt_switch_from/to moves is saved or restored."""
    (res,), doc = traced(xgene, [("smp-mmu.elf", {"smp": 4, "hyp_mode": design})])
    assert res.status == 0, f"expected smp-mmu to pass under {design}: {res.reason} {res.message}"
    t = valid(doc)
    racy = []
    for n in range(4):
        v = t[("VM vm0", f"vcpu{n}")]
        tree = tf.children(v)
        for e in slices(v, "WFx"):
            steps = [c["name"] for c in inside(v, e, tree)]
            if NOT_ASLEEP in steps:
                racy.append((n, [s for s in steps if "vcpu_put" in s or "vcpu_load" in s]))
    assert racy, f"expected smp-mmu -smp 4 under {design} to kick a vCPU before it slept"
    moved = [r for r in racy if r[1]]
    assert moved == [], f"expected no vcpu_put/vcpu_load in a WFx exit woken before it slept, got {moved}"


def test_two_vms_trace(xgene):
    (a, b), doc = traced(xgene, [("vmswitch.elf", {}), ("vmswitch.elf", {"name": "peer"})])
    t = valid(doc)
    assert ("VM vm0", "vcpu0") in t and ("VM peer", "vcpu0") in t, f"expected a process per VM, got {list(t)}"
    pcpu = t[("host", "pCPU 0")]
    switches = [e for e in slices(pcpu) if e["name"].startswith("VM switch")]
    assert len(switches) >= 200, f"expected the VM switches of 200 hand-overs on pCPU 0, got {len(switches)}"
    held = {e["name"] for e in slices(pcpu, cat="sched")}
    assert {"vm0/vcpu0", "peer/vcpu0"} <= held, f"expected pCPU 0 to hold both VMs' vCPUs, got {held}"
    for vm in ("vm0", "peer"):
        waits = slices(t[(f"VM {vm}", "vcpu0")], "descheduled")
        assert len(waits) >= 200, f"{vm}: expected its vCPU descheduled while the other VM runs, got {len(waits)}"


def test_time_sliced_vcpus_trace(xgene):
    """Two vCPUs on one pCPU: the scheduler tick preempts one (an IRQ exit), the pCPU
    switches vCPUs, and the preempted one waits, descheduled, until its next turn."""
    (res,), doc = traced(xgene, [("spinlock.elf", {"smp": 2})], pcpus=1)
    assert res.status == 0, res.message
    t = valid(doc)
    pcpu = t[("host", "pCPU 0")]
    for name in ("vCPU switch vcpu0 -> vcpu1", "vCPU switch vcpu1 -> vcpu0"):
        assert slices(pcpu, name), f"expected {name!r} on pCPU 0, got {sorted({e['name'] for e in pcpu})}"
    for v in (0, 1):
        track = t[("VM vm0", f"vcpu{v}")]
        tree = tf.children(track)
        preempted = [e for e in slices(track, "IRQ") if slices(tree.get(id(e), []), "descheduled")]
        irqs = next(r["Samples"] for r in res.stats if r["vCPU"] == v and r["VM-EXIT"] == "IRQ")
        assert len(preempted) >= 5 and len(slices(track, "IRQ")) == irqs, \
            f"vcpu{v}: {irqs} IRQ exits, {len(preempted)} of them descheduled in the trace"


def test_trace_changes_nothing_modeled_and_cli(tmp_path):
    """Same run with and without --trace-out: identical output; the file is valid (gzip too)."""
    img = paths.image_path("hypercall.elf")
    plain = armvirt("run", "--format", "json", img)
    out = tmp_path / "t.json.gz"
    with_trace = armvirt("run", "--format", "json", "--trace-out", str(out), img)
    assert plain.returncode == 0 and with_trace.returncode == 0, with_trace.stderr
    assert json.loads(plain.stdout) == json.loads(with_trace.stdout), "a trace must not change the run"
    assert "trace written to" in with_trace.stderr, with_trace.stderr
    valid(json.load(gzip.open(out, "rt")))
    bad = armvirt("run", "--trace-out", str(tmp_path / "no" / "such" / "dir.json"), img)
    assert bad.returncode == 2 and "--trace-out" in bad.stderr and len(bad.stderr.splitlines()) == 1, bad.stderr


def test_trap_path_and_compare_traces(tmp_path):
    out = tmp_path / "path.json"
    r = armvirt("trap-path", "hypercall", "--trace-out", str(out))
    assert r.returncode == 0, r.stderr
    t = valid(json.load(open(out)))
    assert ("hypercall: VM vm0", "vcpu0") in t, f"expected the path's tracks, got {list(t)}"
    out = tmp_path / "compare.json"
    r = armvirt("compare", "--breakdown", "hypercall", "--designs", "nvhe,type1", "--trace-out", str(out))
    assert r.returncode == 0, r.stderr
    t = valid(json.load(open(out)))
    for design in ("nvhe", "type1"):
        assert (f"{design}: VM vm0", "vcpu0") in t and (f"{design}: host", "pCPU 0") in t, \
            f"expected a set of tracks per design, got {list(t)}"
    assert len(slices(t[("type1: VM vm0", "vcpu0")], "HVC64")) == len(slices(t[("nvhe: VM vm0", "vcpu0")], "HVC64"))


def raw_image(tmp_path, words) -> str:
    p = tmp_path / "guest.bin"
    p.write_bytes(b"".join(w.to_bytes(4, "little") for w in words))
    return str(p)


@pytest.mark.parametrize("design,worker", [("nvhe", ("VM vm0", "I/O back end (vhost, own pCPU)")),
                                           ("type1", ("dom0", "dom0 vCPU (own pCPU)"))])
def test_back_end_tracks(tmp_path, xgene, design, worker):
    """A notify to bench-io (its back end runs on a pCPU of its own) and a PL011 read
    (under type 1 an ioreq that dom0's device model answers while the vCPU waits)."""
    from harness import hvc, ldr_w, movz
    from host_kernel.bench_io import REG_NOTIFY
    from engine import layout
    str_w1 = 0xB9000000 | (REG_NOTIFY // 4) << 10 | 1 << 5        # STR W0, [X1, #REG_NOTIFY]
    movk_x0 = 0xF2800000 | 1 << 21 | 0x8400 << 5                    # MOVK X0, #0x8400, LSL #16
    img = raw_image(tmp_path, [movz(1, layout.BENCH_IO_BASE >> 16, 16), str_w1,
                               movz(3, layout.UART_BASE >> 16, 16), ldr_w(2, 3),
                               movz(0, 0x0008), movk_x0, hvc(0)])            # PSCI SYSTEM_OFF
    (res,), doc = traced(xgene, [(img, {})], hyp_mode=design)
    assert res.reason == "shutdown", f"expected the guest to power off, got {res.reason}: {res.message}"
    t = valid(doc)
    assert worker in t, f"expected the back end's track {worker}, got {list(t)}"
    vcpu = t[("VM vm0", "vcpu0")]
    notify = next(e for e in slices(vcpu, "DABT_LOW") if e["args"]["FAR_EL2"] == hex(layout.BENCH_IO_BASE + REG_NOTIFY))
    work = slices(t[worker])
    assert work and tf.ns(work[0]["ts"]) >= tf.ns(notify["ts"]), \
        f"the back end starts after the notify trapped ({notify['ts']} us), got {work[:1]}"
    if design == "type1":
        assert slices(vcpu, "waiting for dom0"), "the PL011 read waits for dom0's device model"


# --- -d in_asm, exec ---------------------------------------------------------------------
def test_in_asm_and_exec_logs(tmp_path, boot):
    log = tmp_path / "log"
    r = armvirt("run", "-d", "in_asm,exec", "-D", str(log), "--format", "json", paths.image_path("hello.elf"))
    assert r.returncode == 0, r.stderr
    text = log.read_text()
    # images/hello.elf: _start begins `mov x19, x0; msr spsel, #1` (objdump: 40080000: aa0003f3),
    # and MSR SPSel ends a translated block
    first = "----------------\nIN: _start\n0x40080000:  aa0003f3  mov      x19, x0\n" \
            "0x40080004:  d50041bf  msr      spsel, #1\n\n"
    assert text.startswith(first), f"expected the first block as QEMU logs it, got:\n{text[:300]}"
    assert "Trace 0: 0x40080000 [0000000000000000/0000000040080000/00000000/00000002] _start\n" in text, text[:800]
    blocks = text.split("----------------\n")[1:]
    firsts = [b.split("\n")[1].split(":")[0] for b in blocks]
    assert len(firsts) == len(set(blocks)) and len(blocks) > 20, "in_asm logs each block once"
    assert any(b.startswith("IN: main\n") for b in blocks), "blocks are named by the image's symbols"
    traces = [l for l in text.splitlines() if l.startswith("Trace 0: ")]
    assert len(traces) > 2 * len(blocks), f"exec logs every executed block: {len(traces)} for {len(blocks)} blocks"
    plain = boot("hello.elf")
    got = json.loads(r.stdout)
    assert (got["guest_instructions"], got["cycles"]) == (plain.insns, plain.cycles), \
        "a block hook must not change the modeled instructions or cycles"
    assert got["console"] == plain.console.lines
