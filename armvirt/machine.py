"""The `virt` board and the VMM: build a VM on the host kernel, load the kernel
image and the DTB, wire the user-space devices, and drive KVM_RUN."""
from __future__ import annotations

from dataclasses import dataclass, field

from engine import layout
from armvirt.console import Console
from armvirt.devices.pl011 import DeviceError, Pl011
from armvirt.devices.pl031 import Pl031
from armvirt.devices.virtio_blk import VirtioBlk
from armvirt.devices.virtio_mmio import VirtioMmio
from armvirt.devices.virtqueue import GuestMemory
from armvirt import boot, flash
from armvirt.dtb import DtbConfig
from armvirt.loader import KernelImage
from armvirt.profile import CostProfile
from engine.ledger import USER
from engine.trace import NULL, Tracer
from host_kernel import psci
from host_kernel.fast_mmio import FastMmio
from host_kernel.kvm import Clocking, Host
from host_kernel.mmio import MmioBus
from armvirt.scheduler import Scheduler
from el2.design import Design
from host_kernel.vcpu import BootState
from timers.generic_timer import NEVER

MAX_SMP = 8          # GICv2 targets at most 8 CPUs


class ConfigError(ValueError):
    """Bad machine configuration: reported as one line, exit code 2."""


@dataclass
class MachineConfig:
    kernel: str | None
    ram_size: int = 128 * 1024 * 1024
    smp: int = 1
    gic_version: int = 2
    append: str = ""
    initrd: str | None = None       # -initrd FILE: loaded above the kernel, range in /chosen
    dtb: str | None = None          # -dtb FILE: the user's blob (patched as QEMU does) instead of ours
    bios: str | None = None         # -bios FILE: flash bank 0's contents, a firmware boot
    pflash: tuple = ()              # -drive if=pflash,...: flash.PflashDrive per bank given
    blk: tuple = ()                 # -device virtio-blk-device,drive=ID: qemu_args.BlockDrive per transport
    nr_lr: int = 4
    max_insns: int | None = None
    no_reboot: bool = False
    vgic: bool = True               # --no-vgic: trap and emulate the CPU interface
    vtimer: bool = True             # --no-vtimer: trap and emulate the virtual timer
    thp: bool = True                # --no-thp: RAM without transparent huge pages (4 KiB stage-2 pages)
    quantum: int = 20_000           # SMP: cycles of virtual time per pCPU turn
    pcpus: int | None = None        # physical CPUs of the host (default: one per vCPU)
    hyp_mode: str = "nvhe"          # nvhe (split mode) | vhe | type1
    lazy: bool | None = None        # lazy/deferred switching (default: per design)
    lazy_fp: bool | None = None     # FP/SIMD alone (default: as `lazy`)
    name: str = "vm0"
    # Parsed with QEMU's syntax (armvirt.qemu_args); cli refuses -serial back ends until they land.
    serial: str = "stdio"                   # -serial stdio | null | file:PATH
    gdb: tuple[str, int] | None = None      # -gdb tcp:HOST:PORT, -s (host-wide: the first VM's)
    start_stopped: bool = False             # -S: every vCPU stopped until a debugger continues
    stop_at_init: bool = False              # a Linux boot ends when it first reaches user space (bench)


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
    vcpu_stats: list = field(default_factory=list)     # ExitStats per vCPU, by vCPU index


def _size_text(n: int) -> str:
    """A byte count as -m spells it: the largest of G, M, K that divides it, else bytes."""
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return f"{n}B"


def validate(cfg: MachineConfig) -> None:
    if not 1 <= cfg.smp <= MAX_SMP:
        raise ConfigError(f"-smp {cfg.smp}: must be between 1 and {MAX_SMP}")
    if cfg.pcpus is not None and not 1 <= cfg.pcpus <= MAX_SMP:
        raise ConfigError(f"--pcpus {cfg.pcpus}: must be between 1 and {MAX_SMP}")
    if not 1_000 <= cfg.quantum <= 100_000_000:
        raise ConfigError(f"--quantum {cfg.quantum}: must be 1000 to 100000000 cycles")
    if cfg.ram_size < 16 * 1024 * 1024 or cfg.ram_size % 4096:
        raise ConfigError(f"-m {_size_text(cfg.ram_size)}: RAM must be a multiple of 4 KiB and at least 16M")
    if cfg.ram_size > 16 * 1024**3:
        raise ConfigError(f"-m {_size_text(cfg.ram_size)}: at most 16G of guest RAM")
    if cfg.gic_version not in (2, 3):
        raise ConfigError(f"gic-version={cfg.gic_version}: must be 2 or 3")
    if not 1 <= cfg.nr_lr <= 16:
        raise ConfigError(f"--lrs {cfg.nr_lr}: the number of list registers must be 1 to 16")


def dtb_config(cfg: MachineConfig, profile: CostProfile) -> DtbConfig:
    """What the generated device tree describes (the initrd range is added by the boot loader)."""
    return DtbConfig(ram_base=layout.RAM_BASE, ram_size=cfg.ram_size, mpidrs=tuple(range(cfg.smp)),
                     gic_version=cfg.gic_version, cpu_clock_hz=profile.cpu_hz,
                     timer_freq_hz=profile.cntfrq_hz, bootargs=cfg.append,
                     flash=flash.fitted(cfg.bios, cfg.pflash))


def boot_plan(cfg: MachineConfig, profile: CostProfile) -> boot.BootPlan:
    """Load the kernel and initrd and build (or patch) the DTB, without creating the VM."""
    validate(cfg)
    return boot.prepare(dtb_config(cfg, profile), cfg.kernel, cfg.initrd, cfg.dtb,
                        firmware=flash.firmware_boot(cfg.bios, cfg.pflash))


def make_host(cfg: MachineConfig, profile: CostProfile, trace: Tracer = NULL) -> Host:
    """The physical machine: `--pcpus` CPUs (default one per vCPU) with the chosen GIC."""
    validate(cfg)
    try:
        design = Design.make(cfg.hyp_mode, cfg.lazy, cfg.lazy_fp)
        return Host(profile.costs, Clocking(profile.cpu_hz, profile.cntfrq_hz, profile.cpi),
                    npcpus=cfg.pcpus or cfg.smp, nr_lr=cfg.nr_lr, trace=trace, gic_version=cfg.gic_version,
                    design=design)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def run_machines(machines: list["Machine"]) -> list[RunResult]:
    """Run VMs that share one host until every one of them has finished."""
    cfg = machines[0].cfg
    stub = _gdb_stub(machines) if cfg.gdb else None
    try:
        Scheduler(machines[0].host, machines, cfg.quantum).run()
    except _gdb_kill():                   # evaluated only when an exception propagates
        for m in machines:
            if not m.vm.finished:
                m.finish("killed", "terminated via the GDB stub")
    except BaseException:
        if stub is not None:
            stub.close()
        raise
    results = [m.result() for m in machines]
    if stub is not None:
        stub.exited(results[0].status)
    return results


def _gdb_kill() -> type:
    from armvirt.gdbstub.server import GdbKill
    return GdbKill


def _gdb_stub(machines: list["Machine"]):
    """The GDB stub (armvirt.gdbstub, imported only for -gdb/-s)."""
    from armvirt.gdbstub.server import GdbServer
    try:
        return GdbServer(machines[0].cfg.gdb, machines, machines[0].cfg.start_stopped)
    except ValueError as e:
        raise ConfigError(str(e)) from None


class Machine:
    def __init__(self, cfg: MachineConfig, profile: CostProfile, console: Console | None = None,
                 trace: Tracer = NULL, host: Host | None = None, serial_input=None):
        """`serial_input`: the host end of the PL011's receive line (armvirt.serial), or None."""
        validate(cfg)
        self.cfg, self.profile, self.trace = cfg, profile, trace
        self.console = console or Console()
        # Load before building anything: a bad image must fail fast with one line.
        self.plan = boot_plan(cfg, profile)
        flash_images = flash.load_images(cfg.bios, cfg.pflash)
        if self.plan.image is None and not self.plan.firmware:
            raise ConfigError(f"{cfg.name}: no kernel image (give -kernel, or firmware with -bios or "
                              f"-drive if=pflash,unit=0)")
        self.image: KernelImage | None = self.plan.image       # None: a firmware boot
        self.dtb, self.dtb_addr = self.plan.dtb, self.plan.dtb_addr
        self.host = host or make_host(cfg, profile, trace)
        if self.host.gic_version != cfg.gic_version:
            raise ConfigError(f"{cfg.name}: gic-version={cfg.gic_version}, but the host has a GICv{self.host.gic_version}")
        vm = self.vm = self.host.create_vm(cfg.name, nr_vcpus=cfg.smp, vgic=cfg.vgic, vtimer=cfg.vtimer)
        self.ram = vm.add_ram(layout.RAM_BASE, cfg.ram_size, thp=cfg.thp)
        if cfg.kernel and (trace.on("in_asm") or trace.on("exec")):      # name the code in block logs
            from armvirt.symbols import Symbols
            trace.symbols[vm.stage2.vttbr] = Symbols.from_elf(cfg.kernel)
        self.user_bus = MmioBus("user space")
        # the two CFI01 flash banks at 0x0 (with -bios / -drive if=pflash): read-only memory
        # slots, their models on the bus
        self.flash = (flash.VirtFlash(vm, self.user_bus, flash_images, thp=cfg.thp, log=self._unimp)
                      if flash.fitted(cfg.bios, cfg.pflash) else None)
        self.now = 0                     # virtual time of the device work in progress
        self._mmio_vcpu = None           # the vCPU thread running it (None: the VMM's I/O thread)
        self.uart = Pl011(self.console, irq=lambda level: self._irq_line(layout.UART_SPI, level),
                          cpu_hz=profile.cpu_hz, rx=serial_input, log=self._unimp)
        self.user_bus.register(layout.UART_BASE, layout.UART_SIZE, self.uart)
        counter, hz = self.host.counter, profile.cntfrq_hz
        self.rtc = Pl031(seconds=lambda c: counter.ticks(c) // hz, cycles_at=lambda s: counter.cycles_for(s * hz),
                         irq=lambda level: self._irq_line(layout.RTC_SPI, level))
        self.user_bus.register(layout.RTC_BASE, layout.RTC_SIZE, self.rtc)
        # virtio-mmio transport 0: a virtio-blk disk (-device virtio-blk-device), or no device
        # behind it (QEMU's empty transports)
        self.blk = self._virtio_blk(cfg.blk[0]) if cfg.blk else None
        self.virtio = VirtioMmio(log=self._device_guest_error, unimp=self._unimp, backend=self.blk,
                                 irq=lambda level: self._irq_line(layout.VIRTIO_MMIO_SPI, level))
        self.user_bus.register(layout.VIRTIO_MMIO_BASE, layout.VIRTIO_MMIO_SIZE, self.virtio)
        vm.user_deadline = self.vmm_deadline
        self.mpidrs = tuple(range(cfg.smp))
        # vCPUs go round-robin over the pCPUs in creation order, across VMs (two 1-vCPU
        # VMs on one pCPU share it); secondaries start powered off (PSCI CPU_ON starts them).
        npc = len(self.host.pcpus)
        first = sum(len(v.vcpus) for v in self.host.vms if v is not vm)
        self.vcpus = [vm.create_vcpu(mpidr, pcpu=(first + i) % npc) for i, mpidr in enumerate(self.mpidrs)]
        # the UART's polled registers: served in the engine while nothing else would happen
        self.fast_mmio = FastMmio(vm, layout.UART_BASE, layout.UART_SIZE, self.uart)
        for v in self.vcpus:
            v.fast_mmio = self.fast_mmio
        self.resets = 0
        self.reason, self.message = "", ""
        self._load()
        if self.image is not None and self.image.kind == "image":        # a Linux boot: when does it reach user space?
            vm.watch_first_el0()
        if cfg.max_insns is not None:
            for cpu in self.host.pcpus:
                cpu.set_insn_limit(cfg.max_insns)

    def _virtio_blk(self, drive) -> VirtioBlk:
        """The disk's model: guest memory through the VM's memory slots, its work charged
        to the vCPU whose QueueNotify runs it (QEMU without an iothread).

        The device's writes into guest RAM go to the memory the engines execute from, but
        translated code of those pages would survive them (no host write invalidates it:
        unicorn-facts.md; Unicorn 2.1.4's mem_write and invalidate_and_set_dirty do not
        either, and it has no invalidation by physical address).  A guest's own IC IVAU
        cannot be relied on here: locally it is a no-op in the engine, whose stores are
        caught by its own SMC detection instead.  So a write into RAM drops every engine's
        translated code, as QEMU's address_space_write drops that of the written pages."""
        cpus = self.host.pcpus

        def written(slot, off: int, n: int) -> None:
            for cpu in cpus:
                cpu.drop_code()

        def charge(key: str, what: str) -> None:
            v = self._mmio_vcpu
            if v is not None:
                v.ledger.charge_named(USER, what, key)

        try:
            return VirtioBlk(drive.file, drive.readonly, GuestMemory(self.vm.memslots, written),
                             log=self._device_guest_error, charge=charge)
        except OSError as e:
            raise ConfigError(f"{drive.text}: Could not open '{drive.file}': {e.strerror or e}") from None

    def _write_ram(self, addr: int, data: bytes) -> None:
        off = addr - layout.RAM_BASE
        self.ram.buf[off:off + len(data)] = data

    def _load(self) -> None:
        """What the boot loader does on power-on and on SYSTEM_RESET (QEMU hw/arm/boot.c)."""
        self.uart.reset()
        self.virtio.reset()               # QEMU resets every device on a system reset
        for addr, data, zeros in self.plan.blobs():
            self._write_ram(addr, data)
            if zeros:
                self._write_ram(addr + len(data), bytes(zeros))
        for cpu in self.host.pcpus:       # host writes do not invalidate translated code
            cpu.flush_code(layout.RAM_BASE, layout.RAM_BASE + self.cfg.ram_size)
        if self.flash is not None:
            self.flash.reset(self.host.pcpus)
        for v in self.vcpus[1:]:
            v.power_off()
        self.vcpus[0].reset(BootState(entry=self.plan.entry, x0=self.plan.x0))

    # --- user-space exits ----------------------------------------------------------
    def user_mmio(self, vcpu) -> None:
        acc = vcpu.kvm_run.mmio
        led = vcpu.ledger
        led.charge_named(USER, "VMM: dispatch KVM_EXIT_MMIO on the device bus", "vmm_mmio_dispatch")
        hit = self.user_bus.find(acc.phys_addr)
        if hit is None:
            what = layout.unmodeled(acc.phys_addr)
            access = f"{'write' if acc.is_write else 'read'} of {acc.size} bytes at IPA {acc.phys_addr:#x}"
            if what is not None:
                vcpu.unimplemented(f"{access}: {what} is not modeled, external abort")
            else:
                vcpu.guest_error(f"{access}: no device there, external abort")
            vcpu.set_external_abort(acc.phys_addr)
            return
        dev, off = hit
        led.charge_named(USER, f"VMM: {dev.name} register access", "user_mmio_device")
        if acc.size not in getattr(dev, "access_sizes", (1, 2, 4)):   # APB peripherals: 32-bit data bus
            vcpu.guest_error(f"{acc.size}-byte access to {dev.name} at {acc.phys_addr:#x}: external abort")
            vcpu.set_external_abort(acc.phys_addr)
            return
        self.now, self._mmio_vcpu = vcpu.cpu.cycles, vcpu
        try:
            if acc.is_write:
                dev.write(off, acc.size, acc.data, self.now)
            else:
                acc.data = dev.read(off, acc.size, self.now)
            if dev is self.uart:
                self.fast_mmio.accessed(vcpu, acc, self.now)
            else:
                self.uart.other_device_access()
        except DeviceError as e:
            vcpu.guest_error(f"{e}: external abort")
            vcpu.set_external_abort(acc.phys_addr)
        finally:
            self._mmio_vcpu = None

    def _irq_line(self, spi: int, level: bool) -> None:
        """A device's interrupt output changed: KVM_IRQ_LINE, from the vCPU thread that
        ran the device access (charged to it) or from the VMM's I/O thread (not)."""
        v = self._mmio_vcpu
        if v is not None:
            v.ledger.charge_named(USER, lambda: f"VMM: ioctl(KVM_IRQ_LINE, SPI {spi}, {int(level)})",
                                  "kvm_irq_line")
        if self.trace.on("int"):
            self.trace.log("int", f"{self.cfg.name}: SPI {spi} (INTID {layout.SPI_BASE + spi}) "
                                  f"line {'high' if level else 'low'} at {self.now}")
        self.vm.irq_line(layout.SPI_BASE + spi, level, self.now)

    def _device_guest_error(self, msg: str) -> None:
        """A user-space device saw an access the guest should not make (-d guest_errors)."""
        if self._mmio_vcpu is not None:
            self._mmio_vcpu.guest_error(msg)

    def _unimp(self, msg: str) -> None:
        if self.trace.on("unimp"):
            self.trace.log("unimp", f"{self.cfg.name}: {msg}")

    # --- the VMM's own timed events (its I/O thread) ------------------------------------------
    def _idle_since(self, blocking=None) -> int | None:
        """When every powered-on vCPU of this VM was last seen entering WFI (`blocking`:
        one about to), or None while one of them runs."""
        t = None
        for v in self.vcpus:
            if not v.powered_on:
                continue
            if v is not blocking and v.blocked_until is None:
                return None
            t = v.cpu.cycles if t is None else max(t, v.cpu.cycles)
        return t

    def vmm_deadline(self, blocking=None) -> int:
        return min(self.uart.deadline(self._idle_since(blocking)), self.rtc.deadline())

    def vmm_event(self, at: int, next_guest_event: int) -> None:
        """Run the device events due at `at` (the host scheduler calls this before any
        vCPU runs past `at`); a terminal may be waited on until `next_guest_event`."""
        self.now = at
        if self.rtc.deadline() <= at:
            self.rtc.event(at)
        if self.uart.deadline(self._idle_since()) <= at:
            self.uart.event(at, None if next_guest_event == NEVER else next_guest_event + 1)

    def system_event(self, type_: int) -> None:
        if type_ == psci.SYSTEM_EVENT_RESET and not self.cfg.no_reboot:
            self.resets += 1
            self._load()
            return
        self.finish("shutdown" if type_ == psci.SYSTEM_EVENT_SHUTDOWN else "reset")

    def finish(self, reason: str, message: str = "") -> None:
        """This VM is done: its vCPUs stop for good (the host may run other VMs on)."""
        self.reason, self.message = reason, message
        self.vm.finished = True

    def run(self) -> RunResult:
        """Run this VM alone on its host (several VMs: armvirt.scheduler.run_machines)."""
        return run_machines([self])[0]

    def result(self) -> RunResult:
        reason, message = self.reason, self.message
        for v in self.vcpus:
            v.finish()
        self.console.flush()
        if reason in ("shutdown", "all-off") or (reason == "reset" and self.cfg.no_reboot):
            status = self.console.exit_status if self.console.exit_status is not None else 0
        else:
            status = 3
        cpus = {id(v.cpu): v.cpu for v in self.vcpus}.values()
        stats = self.vcpus[0].stats.rows() if len(self.vcpus) == 1 else [
            {"vCPU": v.index, **row} for v in self.vcpus for row in v.stats.rows()]
        # instructions and cycles of this VM's pCPUs (VMs sharing pCPUs share these)
        extra = {"stage2_pages": self.vm.stage2.mapped_pages, "stage2_blocks": self.vm.stage2.mapped_blocks}
        if self.vm.first_el0 is not None:
            first = dict(self.vm.first_el0)
            first["guest_seconds"] = first["cycles"] / self.profile.cpu_hz   # the counter's view
            extra["first_el0"] = first
        return RunResult(status, reason, message, self.console, sum(c.insns for c in cpus),
                         max(c.cycles for c in cpus), stats,
                         dict(self.vm.counters), list(self.vm.guest_errors), self.profile.name,
                         self.resets, extra, [v.stats for v in self.vcpus])
