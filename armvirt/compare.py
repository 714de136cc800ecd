"""`armvirt compare`: the microbenchmark guest under each hypervisor design, one
table of what the guest measured (the KVM/ARM papers' question, for any cost
profile).  The world-switch groups come from the same runs: the steps recorded
while the guest's hypercalls ran."""
from __future__ import annotations

from dataclasses import dataclass

from armvirt import paths
from armvirt.compare_report import OPERATIONS
from armvirt.console import Console
from armvirt.machine import Machine, MachineConfig, make_host
from armvirt.profile import CostProfile
from armvirt.trace_events import TraceWriter, tracing
from el2.design import Design
from el2.world_switch import GROUPS
from engine.trace import NULL, Tracer

# microbench's BENCH name -> the trap path (armvirt trap-path) that explains it
PATH_OF = {"hypercall": "hypercall", "gic_trap": "gic-trap", "ipi": "ipi", "ipi_wfi": "ipi-wfi", "eoi": "eoi",
           "vm_switch": "vm-switch", "io_out": "io-out", "io_in": "io-in", "mmio_user": "mmio-user",
           "mmio_kernel": "mmio-kernel", "ack_eoi": "ack-eoi"}
IMAGE = "microbench.elf"


def definitions() -> dict[str, str]:
    """What each operation measures: its trap path's definition."""
    return {op: paths.PATHS[p].description for op, p in PATH_OF.items()}


@dataclass
class Comparison:
    designs: list[str]
    rows: dict            # {operation: {design: cycles or None}}
    world_switch: dict    # {design: {group: {"save": n, "restore": n}}}
    statuses: dict        # {design: (status, reason)}


def run_design(design: str, profile: CostProfile, features: dict,
               trace: Tracer = NULL) -> tuple[dict, dict, tuple]:
    """microbench on 2 vCPUs, with a peer VM (microbench -append vm-peer) sharing pCPU 0
    for the VM switch; returns (BENCH cycles by name, world-switch groups, status)."""
    common = dict(max_insns=500_000_000, pcpus=2, **{"hyp_mode": design, **features})
    main = MachineConfig(kernel=paths.image_path(IMAGE), smp=2, name="microbench", **common)
    peer = MachineConfig(kernel=paths.image_path(IMAGE), smp=1, append="vm-peer", name="peer", **common)
    host = make_host(main, profile, trace)
    m = Machine(main, profile, console=Console(echo=False), trace=trace, host=host)
    p = Machine(peer, profile, console=Console(echo=False), trace=trace, host=host)
    res, by_vcpu = paths.run_recorded(m, p)
    segs = by_vcpu[0]
    bench = {name: avg for name, (avg, _) in paths.bench_lines(res.console).items()}
    ws = {}
    hvc = [s for s in segs if s.tag == "hvc:0x4b000000"]
    if hvc:
        for row in paths.world_switch_rows(hvc[-1])[:len(GROUPS)]:
            ws[row["group"]] = {"save": row["save"], "restore": row["restore"]}
    return bench, ws, (res.status, res.reason, res.message)


def run_compare(designs: list[str], profile: CostProfile, features: dict,
                trace_out: TraceWriter | None = None) -> Comparison:
    """`trace_out`: also trace each design's run, one set of tracks per design."""
    rows = {op: {} for op in OPERATIONS}
    world_switch, statuses = {}, {}
    for d in designs:
        with tracing(trace_out, profile.cpu_hz, d) as trace:
            bench, ws, status = run_design(d, profile, features, trace)
        for op in OPERATIONS:
            rows[op][d] = bench.get(op)
        world_switch[d], statuses[d] = ws, status
    return Comparison(designs, rows, world_switch, statuses)


def breakdown(op: str, designs: list[str], profile: CostProfile, features: dict,
              trace_out: TraceWriter | None = None) -> dict:
    """The steps of one operation's trap path under each design (armvirt trap-path)."""
    out = {}
    for d in designs:
        with tracing(trace_out, profile.cpu_hz, d) as trace:
            run = paths.run_path(PATH_OF[op], profile, {**features, "hyp_mode": d}, trace)
        out[d] = [{"where": s.where, "what": s.what, "cycles": s.cycles} for s in run.segment.steps]
    return out


def parse_designs(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    out = []
    for n in names:
        d = Design.make(n).name          # ValueError names the valid ones
        if d not in out:
            out.append(d)
    if not out:
        raise ValueError("--designs: name at least one of nvhe, vhe, type1")
    return out
