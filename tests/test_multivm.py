"""Several VMs on one host and more vCPUs than pCPUs: the VM-switch hypercall,
time-sliced pCPUs, determinism, and isolation between VMs."""
import subprocess
import sys

import pytest

from armvirt import paths
from engine import layout
from armvirt.console import Console
from armvirt.machine import Machine, MachineConfig, make_host, run_machines


def start(xgene, specs, **common):
    """specs: [(image, {per-VM config})]; every VM on one host built from the first."""
    cfgs = [MachineConfig(kernel=paths.image_path(img), name=f"vm{i}", max_insns=200_000_000, **common, **kw)
            for i, (img, kw) in enumerate(specs)]
    host = make_host(cfgs[0], xgene)
    machines = [Machine(c, xgene, console=Console(echo=False), host=host) for c in cfgs]
    return machines, run_machines(machines)


def ok(res, what):
    assert (res.status, res.reason) == (0, "shutdown"), \
        f"{what}: expected status 0 (shutdown), got {res.status} ({res.reason}: {res.message})\n{res.console.text}"


def bench(res, name):
    b = paths.bench_lines(res.console).get(name)
    assert b is not None, f"expected a BENCH {name} line, got:\n{res.console.text}"
    return b


@pytest.mark.parametrize("gic", [2, 3])
def test_two_vms_hand_over_a_timestamp_on_one_pcpu(xgene, gic):
    machines, (a, b) = start(xgene, [("vmswitch.elf", {}), ("vmswitch.elf", {})], gic_version=gic)
    assert machines[0].vcpus[0].cpu is machines[1].vcpus[0].cpu, "two 1-vCPU VMs default to one shared pCPU"
    ok(a, "vm0")
    ok(b, "vm1")
    (ca, ka), (cb, kb) = bench(a, "vm_switch"), bench(b, "vm_switch")
    assert ka == kb == 200, f"expected 200 timed switches each, got {ka} and {kb}"
    assert ca == cb, f"the switch is symmetric: expected vm0 == vm1, got {ca} and {cb}"
    assert "(cooldown calls with no peer: 1)" in b.console.text, \
        f"the VM that ran second ends with one call left unanswered (-1):\n{b.console.text}"
    assert machines[0].vm.vmid != machines[1].vm.vmid, "each VM has its own VMID"


def test_vm_switch_call_without_a_peer_returns_not_supported(boot):
    res = boot("vmswitch.elf")
    assert "BENCH vm_switch skipped (no peer VM)" in res.console.lines, res.console.text
    assert res.status == 0, f"expected status 0, got {res.status}"


def test_vm_switch_costs_a_full_exit_and_entry(xgene):
    run = paths.run_path("vm-switch", xgene)
    hyp = paths.run_path("hypercall", xgene)
    assert run.total > hyp.total, f"a VM switch ({run.total}) costs more than a hypercall ({hyp.total})"
    stage2 = [s.what for s in run.segment.steps if "stage 2" in s.what]
    assert stage2 == ["deactivate stage 2 (VTTBR=0)", "activate stage 2 (VTTBR, VMID)"], \
        f"expected one VTTBR switch each way, got {stage2}"


@pytest.mark.parametrize("gic", [2, 3])
def test_more_vcpus_than_pcpus_keeps_the_spinlock_exact(xgene, gic):
    machines, (res,) = start(xgene, [("spinlock.elf", {"smp": 4})], gic_version=gic, pcpus=2)
    ok(res, "spinlock -smp 4 --pcpus 2")
    assert len({id(v.cpu) for v in machines[0].vcpus}) == 2, "four vCPUs on two pCPUs"
    line = next(l for l in res.console.lines if l.startswith("spinlock: cpus=4 iterations="))
    assert line.endswith("count=40000 expected=40000 ok=1"), f"expected the exact count, got {line!r}"
    preempted = sum(row["Samples"] for row in res.stats if row["VM-EXIT"] == "IRQ")
    assert preempted > 0, f"time-sliced vCPUs take scheduler-tick IRQ exits, got {res.stats}"


def test_time_slicing_is_deterministic(xgene):
    runs = [start(xgene, [("ipi.elf", {"smp": 2}), ("spinlock.elf", {"smp": 2})], pcpus=2)[1] for _ in range(2)]
    for r in runs[0]:
        ok(r, "ipi + spinlock on 2 pCPUs")
    first, second = ([(r.console.lines, r.cycles, r.insns, r.stats) for r in rs] for rs in runs)
    assert first == second, "the same VMs on the same host give the same output, cycles and stats"


def test_a_vm_never_sees_another_vms_memory(xgene):
    """memtouch fills 16 MiB of its RAM; a hostile VM probes the hypervisor boundary;
    hello does nothing: no write may land in another VM's RAM or stage 2."""
    machines, (touch, hostile, hello) = start(
        xgene, [("memtouch.elf", {}), ("hostile.elf", {}), ("hello.elf", {})])
    for res, what in ((touch, "memtouch"), (hostile, "hostile"), (hello, "hello")):
        ok(res, what)
    assert len({id(m.vcpus[0].cpu) for m in machines}) == 1, "all three share pCPU 0"
    touched = machines[0].vm.stage2.mapped_pages
    assert touched > 4096, f"memtouch maps its 16 MiB at stage 2, got {touched} pages"
    for m in machines[1:]:
        st = m.vm.stage2                    # with THP, RAM faults in by 2 MiB blocks
        assert st.mapped_pages - 512 * st.mapped_blocks + st.mapped_blocks < 64, \
            f"{m.cfg.name}: its stage 2 maps only its own few pages and blocks, got {st.mapped_pages} pages " \
            f"({st.mapped_blocks} blocks)"
        # hello's RAM beyond its image and stack was never written by anyone
        ram = machines[2].ram.buf
        tail = bytes(ram[32 << 20:48 << 20])
        assert tail == bytes(len(tail)), "bytes written into another VM's RAM"
    hosts = {m.ram.host_pa for m in machines}
    assert len(hosts) == 3, f"each VM's RAM has its own host backing, got {sorted(hosts)}"
    assert layout.RAM_BASE == machines[0].ram.ipa == machines[1].ram.ipa, "same IPA, different memory"


def test_cli_runs_two_vms_with_prefixed_consoles():
    r = subprocess.run([sys.executable, "-m", "armvirt", "run", "--quiet",
                        "--vm", paths.image_path("vmswitch.elf"),
                        "--vm", f"{paths.image_path('vmswitch.elf')} -name peer"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"expected exit 0, got {r.returncode}: {r.stderr}"
    for who in ("[vm0] BENCH vm_switch", "[peer] BENCH vm_switch"):
        assert who in r.stdout, f"expected a line starting {who!r}, got:\n{r.stdout}"


@pytest.mark.parametrize("args,needle", [
    (["--vm", "images/hello.elf -smp"], "-smp: requires an argument"),
    (["--vm", "images/hello.elf -bogus"], "-bogus: invalid option"),
    (["--vm", "images/hello.elf", "--vm", "images/hello.elf -name vm0"], "names must differ"),
    (["--pcpus", "9", "images/hello.elf"], "--pcpus 9"),
    (["--pcpus", "x", "images/hello.elf"], "--pcpus"),
    (["-smp", "2", "--vm", "images/hello.elf"], "inside each --vm"),
])
def test_cli_rejects_bad_vm_options(args, needle, cli_run):
    r = cli_run("run", *args)
    assert r.returncode == 2, f"{args}: expected exit 2, got {r.returncode}: {r.stderr}"
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, \
        f"{args}: expected one line mentioning {needle!r}, got {r.stderr!r}"
