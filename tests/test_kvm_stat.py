"""Exit statistics as `perf kvm stat report` prints them (per VM, per vCPU, sorted by
samples or average time, microseconds of modeled time at the profile's clock), and
`armvirt stat`, kvm_stat's view of a run (live on a terminal, a final table otherwise)."""
import math
import os
import pty
import re
import subprocess
import sys

import pytest

from armvirt import cli, kvm_stat, paths
from armvirt.console import Console
from armvirt.machine import Machine, MachineConfig
from host_kernel.stats import ExitStat

HEADER = ("             VM-EXIT    Samples  Samples%     Time%    Min Time    Max Time         Avg time ")
ROW = re.compile(r"^ *(\S+) +(\d+) +(\d+\.\d\d)% +(\d+\.\d\d)% +(\d+\.\d\d)us +(\d+\.\d\d)us +(\d+\.\d\d)us "
                 r"\( \+- *(\d+\.\d\d)% \)$")
TOTAL = re.compile(r"^Total Samples:(\d+), Total events handled time:(\d+\.\d\d)us\.$")


def parse_perf(text: str) -> dict:
    """The blocks of perf kvm stat report text: target line -> (rows, total samples, total us)."""
    blocks, cur = {}, None
    for line in text.splitlines():
        if line.startswith("Analyze events for "):
            cur = blocks[line] = {"rows": [], "total": None}
        elif cur is not None and ROW.match(line):
            g = ROW.match(line).groups()
            cur["rows"].append((g[0], int(g[1]), *map(float, g[2:])))
        elif cur is not None and TOTAL.match(line):
            cur["total"] = (int(TOTAL.match(line).group(1)), float(TOTAL.match(line).group(2)))
    return blocks


def armvirt(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "armvirt", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_run_prints_perf_kvm_stat_report_lines(boot, xgene):
    r = armvirt("run", paths.image_path("hello.elf"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    i = lines.index("Analyze events for all VMs, all VCPUs:")
    assert lines[i + 1] == "" and lines[i + 2] == HEADER and lines[i + 3] == "", \
        f"perf's header lines expected, got {lines[i:i + 4]!r}"
    block = parse_perf(r.stdout)["Analyze events for all VMs, all VCPUs:"]
    res = boot("hello.elf")
    us = 1e6 / xgene.cpu_hz
    expected = {row["VM-EXIT"]: row for row in res.stats}            # cycles, from the vCPU's own counts
    assert [name for name, *_ in block["rows"]] and {n for n, *_ in block["rows"]} == set(expected), \
        f"exit reasons: expected {sorted(expected)}, got {block['rows']}"
    n = sum(r_["Samples"] for r_ in res.stats)
    for name, samples, spct, tpct, tmin, tmax, tavg, _ in block["rows"]:
        e = expected[name]
        want = (e["Samples"], round(100 * e["Samples"] / n, 2), round(e["Min"] * us, 2), round(e["Max"] * us, 2),
                round(e["Avg"] * us, 2))
        got = (samples, spct, tmin, tmax, tavg)
        assert all(math.isclose(a, b, abs_tol=0.011) for a, b in zip(got, want)), f"{name}: expected {want}, got {got}"
    total_us = sum(s.total for st in res.vcpu_stats for s in st.by_reason.values()) * us
    assert block["total"][0] == n and math.isclose(block["total"][1], total_us, abs_tol=0.006), \
        f"total line: expected ({n}, {total_us:.2f}), got {block['total']}"
    assert [s for _, s, *_ in block["rows"]] == sorted((s for _, s, *_ in block["rows"]), reverse=True), \
        "default order is by samples, largest first"


def test_sort_by_time_orders_by_average_time(capsys):
    rc = cli.main(["run", "--sort", "time", paths.image_path("hello.elf")])
    out, err = capsys.readouterr()
    rows = parse_perf(out)["Analyze events for all VMs, all VCPUs:"]["rows"]
    avgs = [r[6] for r in rows]
    assert rc == 0 and len(rows) >= 2 and avgs == sorted(avgs, reverse=True), f"by average time: {rows}"
    rc = cli.main(["run", "--key", "sample", "--quiet", paths.image_path("hello.elf")])
    assert rc == 0, capsys.readouterr().err


def test_rel_stddev_is_perfs():
    """perf util/stat.c: Welford mean/M2, stddev of the mean = sqrt(M2/(n-1)/n), relative to the mean."""
    values = [4800, 4320, 4800, 11616, 4800, 4321, 6000]
    s = ExitStat()
    for v in values:
        s.add(v)
    mean, m2 = 0.0, 0.0
    for i, v in enumerate(values, 1):
        d = v - mean
        mean += d / i
        m2 += d * (v - mean)
    want = 100 * math.sqrt(m2 / (len(values) - 1) / len(values)) / mean
    assert math.isclose(s.rel_stddev(), want, rel_tol=1e-12), f"expected {want}, got {s.rel_stddev()}"
    one = ExitStat()
    one.add(5)
    assert one.rel_stddev() == 0.0 and one.mean == 5


@pytest.fixture(scope="module")
def ipi2(boot):
    return boot("ipi.elf", smp=2)


def test_per_vcpu_split_adds_up(ipi2, xgene):
    src = [kvm_stat.Source("vm0", ipi2.vcpu_stats)]
    every = kvm_stat.gather(src)
    per = [kvm_stat.gather(src, v) for v in range(2)]
    assert all(per), f"both vCPUs exit: {[sorted(p) for p in per]}"
    for name, s in every.items():
        parts = [p[name].count for p in per if name in p]
        assert sum(parts) == s.count, f"{name}: vCPU samples {parts} must add up to {s.count}"
    for v in range(2):                            # and they are the vCPU's own rows
        own = {r["VM-EXIT"]: r["Samples"] for r in ipi2.stats if r["vCPU"] == v}
        assert {k: s.count for k, s in per[v].items()} == own, f"vCPU {v}: expected {own}"
    text = kvm_stat.perf_report(per[1], xgene.cpu_hz, vcpu=1)
    block = parse_perf(text)["Analyze events for all VMs, VCPU 1:"]
    assert block["total"][0] == sum(s.count for s in per[1].values()), text


def test_cli_vcpu_option(capsys):
    rc = cli.main(["run", "-smp", "2", "--vcpu", "1", paths.image_path("ipi.elf")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    blocks = parse_perf(out)
    assert list(blocks) == ["Analyze events for all VMs, VCPU 1:"], f"one block for vCPU 1, got {list(blocks)}"
    rc = cli.main(["run", "-smp", "2", "--vcpu", "2", paths.image_path("ipi.elf")])
    err = capsys.readouterr().err
    assert rc == 2 and "--vcpu 2" in err and len(err.strip().splitlines()) == 1, err


def test_per_guest_reports(capsys):
    img = paths.image_path("vmswitch.elf")
    rc = cli.main(["run", "--vm", img, "--vm", f"{img} -name peer"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert list(parse_perf(out)) == ["Analyze events for guest vm0, all VCPUs:",
                                     "Analyze events for guest peer, all VCPUs:"], out[-2000:]
    rc = cli.main(["run", "--guest", "peer", "--vm", img, "--vm", f"{img} -name peer"])
    out, err = capsys.readouterr()
    assert rc == 0 and list(parse_perf(out)) == ["Analyze events for guest peer, all VCPUs:"], out[-1500:]
    rc = cli.main(["run", "--guest", "nobody", "--vm", img])
    err = capsys.readouterr().err
    assert rc == 2 and "--guest nobody" in err, err


def test_json_and_table_formats_use_perfs_columns(capsys):
    import json
    rc = cli.main(["run", "--format", "json", paths.image_path("hello.elf")])
    doc = json.loads(capsys.readouterr().out)
    cols = ["VM-EXIT", "Samples", "Samples%", "Time%", "Min Time", "Max Time", "Avg time", "+-%"]
    assert rc == 0 and all(list(r) == cols for r in doc["exits"]), doc["exits"]
    rc = cli.main(["run", "--format", "github", paths.image_path("hello.elf")])
    out = capsys.readouterr().out
    assert rc == 0 and "| VM-EXIT" in out and "Min Time" in out and "Avg time" in out, out[-800:]


# --- armvirt stat ---------------------------------------------------------------------------------
KVM_STAT_HEAD = " Event                                         Total %Total CurAvg/s"
STAT_ROW = re.compile(r"^ (\s*\S+)\s+(\d+)\s*(\d+\.\d)\s+(\d*)$")


def parse_frame(text: str) -> dict:
    rows, total = {}, None
    lines = text.splitlines()
    start = lines.index(KVM_STAT_HEAD)
    for line in lines[start + 1:]:
        if line.startswith(" Total "):
            total = int(line.split()[1])
            break
        m = STAT_ROW.match(line)
        assert m, f"not a kvm_stat row: {line!r}"
        rows[m.group(1).strip()] = (int(m.group(2)), float(m.group(3)), m.group(4))
    return {"rows": rows, "total": total, "head": lines[0]}


def test_stat_without_a_tty_prints_the_final_tables():
    r = armvirt("stat", "-smp", "2", "ipi")                # stdout is a pipe
    assert r.returncode == 0, r.stderr
    assert "\x1b[" not in r.stdout, "no screen control when stdout is not a terminal"
    frame = parse_frame(r.stdout)
    perf = parse_perf(r.stdout)["Analyze events for all VMs, all VCPUs:"]
    assert frame["head"] == "kvm statistics - summary", frame["head"]
    children = {k[len("kvm_exit("):-1]: v[0] for k, v in frame["rows"].items() if k.startswith("kvm_exit(")}
    assert frame["rows"]["kvm_exit"][0] == frame["total"] == perf["total"][0] == sum(children.values()), \
        f"kvm_exit {frame['rows']['kvm_exit']}, Total {frame['total']}, perf {perf['total']}, children {children}"
    assert children == {name: n for name, n, *_ in perf["rows"]}, f"{children} vs {perf['rows']}"
    assert "Hello" not in r.stdout and "ipi:" not in r.stdout, "the guest console is not shown"


def test_stat_live_view_redraws_on_a_terminal():
    """Under a pseudo-terminal the screen is cleared and redrawn while the guest runs;
    the counts only grow, and the last frame equals the final table."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, [sys.executable, "-m", "armvirt", "stat", "--delay", "0.1", "timer"])
    buf = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        buf += chunk
    _, status = os.waitpid(pid, 0)
    text = buf.decode().replace("\r\n", "\n")
    assert os.waitstatus_to_exitcode(status) == 0, text[-2000:]
    frames = [f for f in text.split("\x1b[H\x1b[2J") if KVM_STAT_HEAD in f]
    assert len(frames) >= 3, f"expected the screen redrawn while the timer guest runs, got {len(frames)} frame(s)"
    totals = [parse_frame(f)["total"] for f in frames]
    assert totals == sorted(totals) and totals[0] < totals[-1], f"counts grow: {totals}"
    perf = parse_perf(frames[-1])["Analyze events for all VMs, all VCPUs:"]
    assert totals[-1] == perf["total"][0], f"last frame {totals[-1]} vs perf {perf['total']}"


def test_live_view_does_not_change_the_model(xgene):
    """The view listens to every sample; the run is the same bit for bit."""
    def go(live):
        m = Machine(MachineConfig(kernel=paths.image_path("hypercall.elf"), max_insns=400_000_000), xgene,
                    console=Console(echo=False))
        view = kvm_stat.LiveView([kvm_stat.Source("vm0", [v.stats for v in m.vcpus])], lambda: m.vcpus[0].cpu.cycles,
                                 xgene.cpu_hz, open(os.devnull, "w"), delay=0.0, live=live, check_every=1)
        res = m.run()
        view.close()
        return res.cycles, res.insns, res.stats, res.console.lines
    assert go(True) == go(False), "a live view must not change cycles, instructions or exits"


def test_stat_bad_delay():
    r = armvirt("stat", "--delay", "0", "hello")
    assert r.returncode == 2 and "--delay" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
