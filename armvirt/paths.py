"""Trap paths measured by running a guest: each path names the image that
exercises it, the exit whose recorded steps form the table, and the BENCH line
the guest prints for the same operation (the invariant: they agree)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib import resources

from engine import layout
from armvirt.console import Console
from host_kernel.bench_io import BACKEND_PCPU, RECEIVED, REG_DOORBELL, REG_NOTIFY
from host_kernel.dom0 import BACKEND_SIDE
from host_kernel import ipi
from host_kernel.ipi import GIC

# steps on the I/O back end's side (its own pCPU), and the SGIs between it and the vCPU's
BACK_END = (*BACKEND_PCPU, *BACKEND_SIDE, GIC)
from armvirt.machine import Machine, MachineConfig, RunResult, run_machines
from armvirt.profile import CostProfile
from engine.ledger import GUEST, HW, Segment
from engine.trace import NULL, Tracer
from el2.world_switch import GROUPS

# The bundled guest images: package data armvirt.images (images/ in the source tree).
IMAGES_DIR = str(resources.files("armvirt.images"))
BENCH_RE = re.compile(r"^BENCH (\S+) avg_cycles=(\d+) iterations=(\d+)")


def last_tagged(tag: str):
    """The path is one whole trap: the last recorded exit with this tag."""
    def select(by_vcpu: list[list[Segment]]) -> list:
        segments = by_vcpu[0]
        chosen = [s for s in segments if s.tag == tag]
        return chosen[-1].steps if chosen else []
    return select


def _virq_cut(steps: list) -> int | None:
    for i, st in enumerate(steps):
        if st.what.startswith("vIRQ: exception entry"):
            return i + 1
    return None


def irq_delivery(by_vcpu: list[list[Segment]]) -> list:
    """From the timer deadline to the first instruction of the guest's IRQ handler."""
    segments = by_vcpu[0]
    for seg in reversed(segments):
        if seg.tag == "IRQ":
            cut = _virq_cut(seg.steps)
            if cut is not None:
                return seg.steps[:cut]
    return []


GICC_IAR, GICC_EOIR = 0x0801000C, 0x08010010
BENCH_IO_NOTIFY = layout.BENCH_IO_BASE + REG_NOTIFY
BENCH_IO_DOORBELL = layout.BENCH_IO_BASE + REG_DOORBELL
GICD_IIDR = layout.GIC_DIST_BASE + 0x8
VIRTIO_DEVICE_ID = layout.VIRTIO_MMIO_BASE + 0x8
# (acknowledge, EOI) as recorded: GICv2 GICV device steps and GICC trap tags, GICv3 ICV
# steps and ICC trap tags.
ACK_EOI_STEPS = (("GICV_IAR read", "GICV_EOIR write"), ("ICV read S3_0_C12_C12_0", "ICV write S3_0_C12_C12_1"))
ACK_EOI_TRAPS = ((f"mmio:{GICC_IAR:#x}", f"mmio:{GICC_EOIR:#x}"), ("sys:ICC_IAR1_EL1", "sys:ICC_EOIR1_EL1"))


SGI_DELIVERY = "GIC distributor: the SGI reaches"     # host_kernel/ipi.py send_steps


def _kick(by_vcpu: list[list[Segment]], labels) -> tuple[list, int] | None:
    """The sender's last segment whose SGI write carries one of `labels`, and the index of
    its SGI's delivery (the ledgers of sender and receiver join there)."""
    for seg in reversed(by_vcpu[0]):
        w = next((i for i, st in enumerate(seg.steps)
                  if "SGI to pCPU" in st.what and any(lb in st.what for lb in labels)), None)
        if w is not None:
            k = next((i for i in range(w, len(seg.steps)) if seg.steps[i].what.startswith(SGI_DELIVERY)), None)
            if k is not None:
                return seg.steps, k
    return None


def virtual_ipi(by_vcpu: list[list[Segment]]) -> list:
    """vCPU0 sends an SGI (a trap) to vCPU1, running (spinning with IRQs unmasked): the
    sender's path up to its physical SGI reaching vCPU1's pCPU, then the receiver's IRQ
    exit from that moment to the first instruction of its handler."""
    send = _kick(by_vcpu, ipi.KICK.values())
    if send is None:
        return []
    for seg in reversed(by_vcpu[1]):
        cut = _virq_cut(seg.steps)
        if seg.tag == "IRQ" and cut is not None and any(sgi in st.what for st in seg.steps
                                                        for sgi in ipi.KICK_SGI.values()):
            return send[0][:send[1] + 1] + seg.steps[:cut]
    return []


def virtual_ipi_wfi(by_vcpu: list[list[Segment]]) -> list:
    """vCPU0 sends an SGI (a trap) to vCPU1, asleep in WFI: the sender's path up to its
    physical SGI reaching vCPU1's idle pCPU, then the receiver's wake-up (out of WFI, its
    scheduler, vcpu_load) to the first instruction of its handler."""
    send = _kick(by_vcpu, ipi.WAKE.values())
    if send is None:
        return []
    for seg in reversed(by_vcpu[1]):
        w = next((i for i, st in enumerate(seg.steps) if "out of WFI" in st.what), None)
        cut = _virq_cut(seg.steps)
        if w is not None and cut is not None and cut > w:
            return send[0][:send[1] + 1] + seg.steps[w:cut]
    return []


def ack_and_eoi(by_vcpu: list[list[Segment]]) -> list:
    """Acknowledge + EOI of the last measured pair.  With a vGIC they are accesses to the
    virtual CPU interface inside whatever trap segment is open; without one, each is its
    own trap.  The instructions themselves are in the guest's baseline loop too (as
    LDR/STR on RAM, or NOPs on GICv3), so guest instruction steps are left out, as the
    guest's subtraction leaves them out."""
    segments = by_vcpu[0]
    steps = [st for seg in segments for st in seg.steps]
    for ack, eoi in ACK_EOI_STEPS:
        for i in range(len(steps) - 1, 0, -1):
            if steps[i].what.startswith(eoi):
                j = max(k for k in range(i) if steps[k].what.startswith(ack))
                return [steps[j], steps[i]]
    for ack, eoi in ACK_EOI_TRAPS:
        traps = [s for s in segments if s.tag in (ack, eoi)]
        for k in range(len(traps) - 1, 0, -1):
            if traps[k].tag == eoi and traps[k - 1].tag == ack:
                return [st for seg in traps[k - 1:k + 1] for st in seg.steps if st.where != GUEST]
    return []


def spurious_eoi(by_vcpu: list[list[Segment]]) -> list:
    """One EOI of INTID 1023 from the guest's loop of them: an EOIR access whose previous
    CPU-interface access was an EOIR too (an acknowledge comes before every other EOI).
    With a vGIC it is an access to the virtual CPU interface, no trap; without one, its
    own trap.  Guest instruction steps are left out: the baseline loop has them too."""
    segments = by_vcpu[0]
    steps = [st for seg in segments for st in seg.steps]
    for ack, eoi in ACK_EOI_STEPS:
        cpuif = [st for st in steps if st.what.startswith((ack, eoi))]
        for k in range(len(cpuif) - 1, 0, -1):
            if cpuif[k].what.startswith(eoi) and cpuif[k - 1].what.startswith(eoi):
                return [cpuif[k]]
    for ack, eoi in ACK_EOI_TRAPS:
        traps = [s for s in segments if s.tag in (ack, eoi)]
        for k in range(len(traps) - 1, 0, -1):
            if traps[k].tag == eoi and traps[k - 1].tag == eoi:
                return [st for st in traps[k].steps if st.where != GUEST]
    return []


def vm_switch(by_vcpu: list[list[Segment]]) -> list:
    """One VM's HVC 0x4b000010 to the other VM's return into its guest, on the pCPU
    they share: the exit of one, the host's switch, the entry of the other.  Every
    timed call takes the same path; a steady-state one from the middle is shown."""
    calls = [s for s in by_vcpu[0] if s.tag == "hvc:0x4b000010"
             and any("vcpu_wake" in st.what for st in s.steps)]
    return calls[len(calls) // 2].steps if calls else []


def io_out(by_vcpu: list[list[Segment]]) -> list:
    """The guest's notify (a store to bench-io NOTIFY) until the back end has it
    (bench_io.RECEIVED: KVM's ioeventfd signalled, Xen's dom0 in its event-channel upcall)."""
    for seg in reversed(by_vcpu[0]):
        if seg.tag == f"mmio:{BENCH_IO_NOTIFY:#x}":
            seen = next((i for i, st in enumerate(seg.steps) if RECEIVED in st.what), None)
            if seen is not None:
                return seg.steps[:seen + 1]
    return []


def io_in(by_vcpu: list[list[Segment]]) -> list:
    """The back end sends an event until the first instruction of the guest's handler,
    the guest asleep in WFI: the back end's steps (on its own pCPU: the irqfd / event
    channel and the wake-up of the vCPU's thread / unit), then the vCPU's idle pCPU out of
    WFI, its scheduler, the entry and the vIRQ."""
    for seg in reversed(by_vcpu[0]):
        back = [st for st in seg.steps if st.where in BACK_END]
        w = next((i for i, st in enumerate(seg.steps) if "out of WFI" in st.what and st.where not in BACK_END),
                 None)
        cut = _virq_cut(seg.steps)
        if seg.tag == "WFx" and back and w is not None and cut is not None and cut > w:
            return back + [st for st in seg.steps[w:cut] if st.where not in BACK_END]
    return []


@dataclass(frozen=True)
class PathSpec:
    name: str
    image: str
    select: object      # per-vCPU segments -> the ordered steps of this path
    bench: str          # the guest's BENCH name
    description: str
    config: tuple = ()  # machine settings the path needs, e.g. (("smp", 2),)
    peer: str | None = None   # a second VM on the same host (its image)


# The bench-io paths: microbench.elf running only their three benchmarks (named in its
# bootargs), one recording for the three.
MICROBENCH_IO = (("smp", 2), ("append", "mmio_kernel io_out io_in"))

PATHS = {
    "hypercall": PathSpec("hypercall", "hypercall.elf", last_tagged("hvc:0x4b000000"), "hypercall",
                          "guest HVC #0 of SMCCC function 0x4b000000, which no hypervisor implements: "
                          "to the hypervisor and back with no work done"),
    "mmio-user": PathSpec("mmio-user", "mmio-user.elf", last_tagged(f"mmio:{VIRTIO_DEVICE_ID:#x}"), "mmio_user",
                          "guest read of virtio-mmio transport 0's DeviceID (0x0a000008): stage-2 fault, "
                          "emulated in user space by the VMM"),
    "gic-trap": PathSpec("gic-trap", "gic-trap.elf", last_tagged(f"mmio:{GICD_IIDR:#x}"), "gic_trap",
                         "guest read of GICD_IIDR (0x08000008), the interrupt controller trap: stage-2 fault, "
                         "emulated in the kernel by the vGIC distributor"),
    "irq": PathSpec("irq", "irq-latency.elf", irq_delivery, "irq_latency",
                    "virtual timer deadline to the guest's IRQ handler: IRQ exit, host GIC, LR with HW bit"),
    "eoi": PathSpec("eoi", "eoi.elf", spurious_eoi, "eoi",
                    "guest write of 1023 to GICC_EOIR / ICC_EOIR1_EL1 (virtual IRQ completion): with the "
                    "vGIC the virtual CPU interface takes it, no trap"),
    "ack-eoi": PathSpec("ack-eoi", "eoi.elf", ack_and_eoi, "ack_eoi",
                        "guest acknowledge + EOI of a pending interrupt (GICC_IAR then GICC_EOIR, or "
                        "ICC_IAR1_EL1 then ICC_EOIR1_EL1)"),
    "ipi": PathSpec("ipi", "ipi.elf", virtual_ipi, "ipi",
                    "virtual IPI (ISCA'16): vCPU0 writes the SGI register, vCPU1 is running (spinning, "
                    "IRQs unmasked) on another pCPU: trap, kick by a physical IPI, IRQ exit, LR, re-entry, vIRQ",
                    (("smp", 2),)),
    "ipi-wfi": PathSpec("ipi-wfi", "ipi.elf", virtual_ipi_wfi, "ipi_wfi",
                        "vCPU0 sends an SGI to vCPU1 asleep in WFI: trap, kick by a physical IPI to its idle "
                        "pCPU, its scheduler, vcpu_load, LR, vIRQ",
                        (("smp", 2),)),
    "mmio-kernel": PathSpec("mmio-kernel", "microbench.elf", last_tagged(f"mmio:{BENCH_IO_DOORBELL:#x}"),
                            "mmio_kernel", "guest write to the bench-io doorbell (an ioeventfd nobody waits "
                            "on): stage-2 fault, completed in the host kernel with no device model",
                            MICROBENCH_IO),
    "io-out": PathSpec("io-out", "microbench.elf", io_out, "io_out",
                       "I/O latency out (ISCA'16): the guest's notify (a store to bench-io NOTIFY) until the "
                       "virtual device has the signal (the counter value it records); KVM: the host kernel's "
                       "ioeventfd, signalled on the vCPU's own exit path; Xen: dom0, idle (its vCPU blocked), "
                       "woken through Xen's scheduler, takes the event channel's virtual interrupt",
                       MICROBENCH_IO),
    "io-in": PathSpec("io-in", "microbench.elf", io_in, "io_in",
                      "I/O latency in (ISCA'16): the back end's notification until the guest's interrupt "
                      "handler runs, the guest's vCPU asleep in WFI (waiting for its I/O): KVM: irqfd, "
                      "kvm_vcpu_kick wakes the vCPU thread, an SGI to its idle pCPU, schedule(), entry, vIRQ; "
                      "Xen: dom0's EVTCHNOP_send, vcpu_wake of the blocked domU vCPU, an SGI to its idle "
                      "pCPU, schedule(), context switch, vIRQ", MICROBENCH_IO),
    "vm-switch": PathSpec("vm-switch", "vmswitch.elf", vm_switch, "vm_switch",
                          "two VMs share one pCPU and hand a timestamp over by HVC 0x4b000010: "
                          "exit one VM, switch, enter the other", peer="vmswitch.elf"),
}


def image_path(name: str) -> str:
    return os.path.join(IMAGES_DIR, name)


def bundled_images() -> list[str]:
    return sorted(f[:-4] for f in os.listdir(IMAGES_DIR) if f.endswith(".elf"))


def resolve_image(name: str) -> str:
    """A file that exists is itself; a bare name (`hello`, `hello.elf`) that is no file
    here is the bundled image of that name; anything else is left for the loader to refuse."""
    if os.path.isfile(name) or os.path.basename(name) != name:
        return name
    bundled = image_path(name if name.endswith(".elf") else name + ".elf")
    return bundled if os.path.isfile(bundled) else name


def bench_lines(console: Console) -> dict[str, tuple[int, int]]:
    out = {}
    for line in console.lines:
        m = BENCH_RE.match(line)
        if m:
            out[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return out


@dataclass
class PathRun:
    spec: PathSpec
    segment: Segment        # the steps of the path (a selection, not always one whole trap)
    result: RunResult
    guest_avg: int | None
    iterations: int | None
    recording: list = field(default_factory=list, repr=False)   # every vCPU's segments, whole

    @property
    def total(self) -> int:
        return self.segment.total


class PathError(RuntimeError):
    pass


def run_recorded(main: Machine, *others: Machine) -> tuple[RunResult, list[list[Segment]]]:
    """Run VMs on one host, recording the steps of `main`'s vCPUs (one list of
    segments per vCPU); returns main's result and those recordings."""
    by_vcpu = [v.ledger.start_recording() for v in main.vcpus]
    result = run_machines([main, *others])[0]
    for v in main.vcpus:
        v.ledger.stop_recording()
    return result, by_vcpu


def path_config(spec: PathSpec, cfg_overrides: dict | None = None) -> MachineConfig:
    """The machine a path runs on: its image and settings, then the caller's."""
    return MachineConfig(kernel=image_path(spec.image), max_insns=500_000_000,
                         **{**dict(spec.config), **(cfg_overrides or {})})


def record_path(spec: PathSpec, profile: CostProfile, cfg: MachineConfig,
                trace: Tracer = NULL) -> tuple[RunResult, list[list[Segment]]]:
    """Run the path's guest (and its peer VM) with the steps recorded.  Paths that
    share an image and a config (mmio-kernel, io-out, io-in) can share one recording."""
    m = Machine(cfg, profile, console=Console(echo=False), trace=trace)
    machines = [m]
    if spec.peer:                 # the peer VM shares the host (and vCPU0's pCPU)
        peer = MachineConfig(**{**cfg.__dict__, "kernel": image_path(spec.peer), "name": "peer"})
        machines.append(Machine(peer, profile, console=Console(echo=False), trace=trace, host=m.host))
    result, by_vcpu = run_recorded(*machines)
    if result.status != 0:
        raise PathError(f"{spec.image} failed ({result.reason}, status {result.status}): {result.message}")
    return result, by_vcpu


def select_path(spec: PathSpec, result: RunResult, by_vcpu: list[list[Segment]]) -> PathRun:
    """The path's steps out of a recording, with the guest's BENCH line for them."""
    # Every measured iteration took the same path; the last one is steady state.
    steps = spec.select(by_vcpu)
    if not steps:
        raise PathError(f"{spec.image} never took the {spec.name} path")
    bench = bench_lines(result.console).get(spec.bench)
    return PathRun(spec, Segment(steps, spec.name), result, bench[0] if bench else None,
                   bench[1] if bench else None, by_vcpu)


def run_path(name: str, profile: CostProfile, cfg_overrides: dict | None = None,
             trace: Tracer = NULL) -> PathRun:
    spec = PATHS[name]
    return select_path(spec, *record_path(spec, profile, path_config(spec, cfg_overrides), trace))


def trap_path_rows(run: PathRun) -> list[dict]:
    return [{"step": i + 1, "where": s.where, "what": s.what, "cycles": s.cycles}
            for i, s in enumerate(run.segment.steps)]


def world_switch_rows(seg: Segment) -> list[dict]:
    """One row per register group (save = guest save + host save, restore likewise),
    then the exception entries and ERETs of the round trip, then the total."""
    rows = []
    for g in GROUPS:
        steps = [s for s in seg.steps if s.group == g]
        save = sum(s.cycles for s in steps if s.kind == "save")
        restore = sum(s.cycles for s in steps if s.kind == "restore")
        guest_regs = max((s.regs for s in steps if "host" not in s.what and s.kind == "save"), default=0)
        host_regs = max((s.regs for s in steps if "host" in s.what and s.kind == "save"), default=0)
        rows.append({"group": g, "registers": guest_regs, "host registers": host_regs,
                     "save": save, "restore": restore})
    traps = [s for s in seg.steps if s.where == HW and "exception entry" in s.what]
    erets = [s for s in seg.steps if s.where == HW and s.what.startswith("ERET")]
    rows.append({"group": f"trap to EL2 (x{len(traps)})", "registers": 0, "host registers": 0,
                 "save": sum(s.cycles for s in traps), "restore": 0})
    rows.append({"group": f"ERET (x{len(erets)})", "registers": 0, "host registers": 0,
                 "save": 0, "restore": sum(s.cycles for s in erets)})
    rows.append({"group": "total", "registers": sum(r["registers"] for r in rows),
                 "host registers": sum(r["host registers"] for r in rows),
                 "save": sum(r["save"] for r in rows), "restore": sum(r["restore"] for r in rows)})
    return rows


def guest_steps_cycles(seg: Segment) -> int:
    return sum(s.cycles for s in seg.steps if s.where == GUEST)
