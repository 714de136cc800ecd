"""The `virt` board and the VMM: build a VM on the host kernel, load the kernel
image and the DTB, wire the user-space devices, and drive KVM_RUN."""
from __future__ import annotations

from dataclasses import dataclass, field

from armvirt import layout
from armvirt.console import Console
from armvirt.devices.pl011 import DeviceError, Pl011
from armvirt.dtb import DtbConfig, build_dtb, dtb_load_address
from armvirt.loader import KernelImage, load_kernel
from armvirt.profile import CostProfile
from engine.ledger import USER
from engine.trace import NULL, Tracer
from host_kernel import psci
from host_kernel.kvm import Clocking, Host
from host_kernel.mmio import MmioBus
from host_kernel.vcpu import (EXIT_BLOCKED, EXIT_POWER_OFF, EXIT_PREEMPTED, KVM_EXIT_HALTED,
                              KVM_EXIT_INSN_LIMIT, KVM_EXIT_MMIO, KVM_EXIT_SYSTEM_EVENT, BootState)
from timers.generic_timer import NEVER

MAX_SMP = 8          # GICv2 targets at most 8 CPUs


class ConfigError(ValueError):
    """Bad machine configuration: reported as one line, exit code 2."""


@dataclass
class MachineConfig:
    kernel: str
    ram_size: int = 128 * 1024 * 1024
    smp: int = 1
    gic_version: int = 2
    append: str = ""
    nr_lr: int = 4
    max_insns: int | None = None
    no_reboot: bool = False
    vgic: bool = True               # --no-vgic: trap and emulate the CPU interface
    vtimer: bool = True             # --no-vtimer: trap and emulate the virtual timer
    quantum: int = 20_000           # SMP: cycles of virtual time per pCPU turn


@dataclass
class RunResult:
    status: int
    reason: str
    message: str
    console: Console
    insns: int
    cycles: int
    stats: list
    counters: dict
    guest_errors: list
    profile: str
    resets: int = 0
    extra: dict = field(default_factory=dict)


def validate(cfg: MachineConfig) -> None:
    if not 1 <= cfg.smp <= MAX_SMP:
        raise ConfigError(f"-smp {cfg.smp}: must be between 1 and {MAX_SMP}")
    if not 1_000 <= cfg.quantum <= 100_000_000:
        raise ConfigError(f"--quantum {cfg.quantum}: must be 1000 to 100000000 cycles")
    if cfg.ram_size < 16 * 1024 * 1024 or cfg.ram_size % 4096:
        raise ConfigError(f"-m {cfg.ram_size}: RAM must be a multiple of 4 KiB and at least 16M")
    if cfg.ram_size > 16 * 1024**3:
        raise ConfigError(f"-m {cfg.ram_size >> 20}M: at most 16G of guest RAM")
    if cfg.gic_version not in (2, 3):
        raise ConfigError(f"gic-version={cfg.gic_version}: must be 2 or 3")
    if not 1 <= cfg.nr_lr <= 16:
        raise ConfigError(f"--lrs {cfg.nr_lr}: the number of list registers must be 1 to 16")


class Machine:
    def __init__(self, cfg: MachineConfig, profile: CostProfile, console: Console | None = None,
                 trace: Tracer = NULL):
        validate(cfg)
        self.cfg, self.profile, self.trace = cfg, profile, trace
        self.console = console or Console()
        # Load before building anything: a bad image must fail fast with one line.
        self.image: KernelImage = load_kernel(cfg.kernel, layout.RAM_BASE, cfg.ram_size)
        self.host = Host(profile.costs, Clocking(profile.cpu_hz, profile.cntfrq_hz, profile.cpi),
                         npcpus=cfg.smp, nr_lr=cfg.nr_lr, trace=trace, gic_version=cfg.gic_version)
        vm = self.vm = self.host.create_vm(nr_vcpus=cfg.smp, vgic=cfg.vgic, vtimer=cfg.vtimer)
        self.ram = vm.add_ram(layout.RAM_BASE, cfg.ram_size)
        self.user_bus = MmioBus("user space")
        self.uart = Pl011(self.console)
        self.user_bus.register(layout.UART_BASE, layout.UART_SIZE, self.uart)
        self.mpidrs = tuple(range(cfg.smp))
        self.dtb = build_dtb(DtbConfig(ram_base=layout.RAM_BASE, ram_size=cfg.ram_size, mpidrs=self.mpidrs,
                                       gic_version=cfg.gic_version, cpu_clock_hz=profile.cpu_hz,
                                       timer_freq_hz=profile.cntfrq_hz, bootargs=cfg.append))
        occupied = [(s.addr, s.addr + s.memsz) for s in self.image.segments]
        self.dtb_addr = dtb_load_address(layout.RAM_BASE, cfg.ram_size, len(self.dtb), occupied)
        # One pCPU per vCPU; secondaries start powered off (PSCI CPU_ON starts them).
        self.vcpus = [vm.create_vcpu(mpidr, pcpu=i) for i, mpidr in enumerate(self.mpidrs)]
        self.resets = 0
        self._load()
        if cfg.max_insns is not None:
            for cpu in self.host.pcpus:
                cpu.set_insn_limit(cfg.max_insns)

    def _write_ram(self, addr: int, data: bytes) -> None:
        off = addr - layout.RAM_BASE
        self.ram.buf[off:off + len(data)] = data

    def _load(self) -> None:
        """What the boot loader does on power-on and on SYSTEM_RESET (QEMU hw/arm/boot.c)."""
        for seg in self.image.segments:
            self._write_ram(seg.addr, seg.data + bytes(seg.memsz - len(seg.data)))
        self._write_ram(self.dtb_addr, self.dtb)
        for cpu in self.host.pcpus:       # host writes do not invalidate translated code
            cpu.flush_code(layout.RAM_BASE, layout.RAM_BASE + self.cfg.ram_size)
        for v in self.vcpus[1:]:
            v.power_off()
        self.vcpus[0].reset(BootState(entry=self.image.entry, x0=self.dtb_addr))

    # --- user-space exits ----------------------------------------------------------
    def _user_mmio(self, vcpu) -> None:
        acc = vcpu.kvm_run.mmio
        led = vcpu.ledger
        led.charge_named(USER, "VMM: dispatch KVM_EXIT_MMIO on the device bus", "vmm_mmio_dispatch")
        hit = self.user_bus.find(acc.phys_addr)
        if hit is None:
            vcpu.guest_error(f"{'write' if acc.is_write else 'read'} of {acc.size} bytes at IPA "
                             f"{acc.phys_addr:#x}: no device there, external abort")
            vcpu.set_external_abort(acc.phys_addr)
            return
        dev, off = hit
        led.charge_named(USER, f"VMM: {dev.name} register access", "user_mmio_device")
        try:
            if acc.is_write:
                dev.write(off, acc.size, acc.data)
            else:
                acc.data = dev.read(off, acc.size)
        except DeviceError as e:
            vcpu.guest_error(f"{e}: external abort")
            vcpu.set_external_abort(acc.phys_addr)

    def _next_vcpu(self):
        """Deterministic turns: the powered-on vCPU whose pCPU is furthest behind in
        virtual time runs next (a blocked one counts at its wake time); ties go to the
        lowest index."""
        best, best_t = None, None
        for v in self.vcpus:
            if not v.powered_on:
                continue
            t = v.cpu.cycles if v.blocked_until is None else v.blocked_until
            if best is None or t < best_t:
                best, best_t = v, t
        return best, best_t

    def run(self) -> RunResult:
        vcpu = self.vcpus[0]
        smp = self.vm.smp
        reason, message = "", ""
        while True:
            if smp:
                vcpu, t = self._next_vcpu()
                if vcpu is None:
                    reason = "all-off"
                    break
                if t == NEVER:
                    reason, message = "halted", "every vCPU is blocked with nothing that could wake it"
                    break
                if vcpu.blocked_until is not None:
                    vcpu.wake_up(vcpu.blocked_until)
                # A turn may not run more than a quantum ahead of any other vCPU that is
                # still running: shared-memory waits between vCPUs stay causal within it.
                others = [v.cpu.cycles for v in self.vcpus
                          if v is not vcpu and v.powered_on and v.blocked_until is None]
                vcpu.cpu.st.turn_deadline = min([vcpu.cpu.cycles] + others) + self.cfg.quantum
                self.vm.running = vcpu
            run = vcpu.run()
            self.vm.running = None
            if run.exit_reason in (EXIT_PREEMPTED, EXIT_BLOCKED, EXIT_POWER_OFF):
                if not smp:                       # the only vCPU switched itself off
                    reason = "all-off"
                    break
                continue
            if run.exit_reason == KVM_EXIT_MMIO:
                self._user_mmio(vcpu)
                continue
            if run.exit_reason == KVM_EXIT_SYSTEM_EVENT:
                if run.system_event_type == psci.SYSTEM_EVENT_RESET and not self.cfg.no_reboot:
                    self.resets += 1
                    self._load()
                    continue
                reason = "shutdown" if run.system_event_type == psci.SYSTEM_EVENT_SHUTDOWN else "reset"
                break
            if run.exit_reason == KVM_EXIT_INSN_LIMIT:
                reason = "insn-limit"
                message = f"guest stopped after {vcpu.cpu.insns} instructions (--max-insns {self.cfg.max_insns})"
                break
            if run.exit_reason == KVM_EXIT_HALTED:
                reason, message = "halted", run.message
                break
            raise AssertionError(f"unexpected exit reason {run.exit_reason}")
        for v in self.vcpus:
            v.finish()
        self.console.flush()
        if reason in ("shutdown", "all-off") or (reason == "reset" and self.cfg.no_reboot):
            status = self.console.exit_status if self.console.exit_status is not None else 0
        else:
            status = 3
        cpus = self.host.pcpus
        stats = self.vcpus[0].stats.rows() if not smp else [
            {"vCPU": v.index, **row} for v in self.vcpus for row in v.stats.rows()]
        return RunResult(status, reason, message, self.console, sum(c.insns for c in cpus),
                         max(c.cycles for c in cpus), stats,
                         dict(self.vm.counters), list(self.vm.guest_errors), self.profile.name,
                         self.resets, {"stage2_pages": self.vm.stage2.mapped_pages})
