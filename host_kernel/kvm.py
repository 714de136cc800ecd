"""The host: physical CPUs with their lowvisors, host memory, VMIDs, and the
VMs created on it (KVM_CREATE_VM, KVM_SET_USER_MEMORY_REGION, KVM_CREATE_VCPU)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from typing import Callable, Mapping

from engine.core import PhysicalCpu
from engine.ledger import HIGHVISOR, Ledger
from engine.trace import NULL, Tracer
from el2.context import el1_bank, fp_bank
from el2.design import NVHE, TYPE1_KEYS, Design
from el2.lowvisor import Lowvisor
from el2.stage2 import PagePool, Stage2Tables
from el2.vmid import VmidAllocator
from engine import layout
from gic.v2_hyp import GichV2
from gic.v2_port import GICV_SIZE, GicvPort
from gic.v2_vcpuif import VirtualCpuInterface
from gic.vgic import Vgic
from host_kernel.bench_io import BenchIo, KvmIoBackend
from host_kernel import ipi
from host_kernel.dom0 import Dom0IoBackend, Dom0Paths
from host_kernel.memslots import MemSlot, MemSlots
from host_kernel.mmio import MmioBus
from host_kernel.vcpu import Vcpu
from timers.generic_timer import Counter as SystemCounter

HOST_PT_BASE = 0x80_0000_0000        # host-private page-table memory: beyond every guest IPA
HOST_PT_SIZE = 0x100_0000
HOST_RAM_BASE = 0x10_0000_0000       # backing of guest RAM: mapped for a guest only by stage 2
HOST_RAM_STRIDE = 0x4_0000_0000      # one 16 GiB window per VM
HOST_ROM_BASE = 0xC0_0000_0000       # backing of read-only slots (ROM devices: the flash), per VM
HOST_ROM_STRIDE = 0x1_0000_0000      # one 4 GiB window per VM
HOST_GICV_BASE = 0x0804_0000         # each pCPU's GICv2 virtual CPU interface (host physical)
NEVER = 2**64 - 1


@dataclass(frozen=True)
class Clocking:
    cpu_hz: int
    cntfrq_hz: int
    cpi: int


def deactivate_physical(cpu: PhysicalCpu, pintid: int) -> None:
    """The guest deactivated a HW-mapped interrupt: the physical one is inactive again."""
    if pintid == layout.INTID_VIRT_TIMER:
        cpu.st.timer_masked = 0               # the vtimer PPI may assert again


def wire_gic_outputs(cpu: PhysicalCpu, hyp, vcpuif, port) -> None:
    """The GIC's per-CPU outputs, either version: the virtual IRQ follows the virtual
    CPU interface, a maintenance condition (HCR.En, bit 0 in GICH_HCR and ICH_HCR_EL2)
    raises an IRQ to EL2, and a guest EOI of a HW interrupt deactivates the physical one."""
    def on_change():
        port.update_line()
        if hyp.hcr & 1 and hyp.misr:
            cpu.st.host_deadline = 0          # maintenance interrupt: an IRQ to EL2 now
    hyp.on_change = on_change
    vcpuif.on_hw_deactivate = lambda pintid: deactivate_physical(cpu, pintid)


class Host:
    def __init__(self, costs: Mapping[str, int], clocking: Clocking, npcpus: int = 1,
                 nr_lr: int = 4, trace: Tracer = NULL, gic_version: int = 2, design: Design = NVHE):
        from math import gcd
        if design.name == "type1" and design.driver_domain is None:
            design = replace(design, driver_domain=Dom0Paths)     # dom0's paths, for the lowvisor
        g = gcd(clocking.cntfrq_hz, clocking.cpu_hz)
        self.costs, self.clocking, self.trace, self.nr_lr = costs, clocking, trace, nr_lr
        self.gic_version, self.design = gic_version, design
        if design.name == "type1":
            missing = [k for k in TYPE1_KEYS if k not in costs]
            if missing:
                raise ValueError(f"--hyp-mode type1: the cost profile lacks {', '.join(missing)}")
        self.counter = SystemCounter.for_clock(clocking.cpu_hz, clocking.cntfrq_hz)
        self.pcpus: list[PhysicalCpu] = []
        self.lowvisors: list[Lowvisor] = []
        self.gicv_ports: list[GicvPort] = []
        for i in range(npcpus):
            cpu = PhysicalCpu(i, cpi=clocking.cpi, cnt_mul=clocking.cntfrq_hz // g,
                              cnt_div=clocking.cpu_hz // g, cntfrq=clocking.cntfrq_hz)
            cpu.guest_exception_cost = costs["exc_entry_el1"]
            cpu.st.virq_entry_cost = costs["exc_entry_el1"]
            if gic_version == 3:
                from gic.v3_hyp import IchV3
                gich = IchV3(nr_lr)
                low = Lowvisor(cpu, Ledger(cpu, costs), gich, design)
                port = self._wire_icv(cpu, gich, low)
            else:
                gich = GichV2(nr_lr)
                low = Lowvisor(cpu, Ledger(cpu, costs), gich, design)
                port = self._wire_gicv(cpu, gich, low)
            self.pcpus.append(cpu)
            self.lowvisors.append(low)
            self.gicv_ports.append(port)
        if trace.on("in_asm") or trace.on("exec"):
            self._log_blocks(trace)
        if trace.timeline is not None:            # --trace-out: every step with its time
            trace.timeline.host = self
            for cpu, low in zip(self.pcpus, self.lowvisors):
                trace.timeline.attach(cpu, low.ledger)
        if npcpus > 1:
            for cpu, low in zip(self.pcpus, self.lowvisors):
                cpu.note_maintenance()
                low.broadcast = self._broadcast_maintenance
        first = self.pcpus[0]
        self.pt_buf = first.map_memory(HOST_PT_BASE, HOST_PT_SIZE)
        for cpu in self.pcpus[1:]:
            cpu.map_shared(HOST_PT_BASE, self.pt_buf)
        self.pool = PagePool(self.pt_buf, HOST_PT_BASE)
        self.vmids = VmidAllocator()
        b1, b2 = el1_bank(), fp_bank()     # architectural reset values, read once from a fresh core
        b1.read(first.uch)
        b2.read(first.uch)
        self.el1_reset, self.fp_reset = b1.values(), b2.values()
        self.vms: list[Vm] = []

    def _log_blocks(self, trace: Tracer) -> None:
        """-d in_asm / -d exec (slow: a Python block hook on every pCPU).  Symbols come
        from the image of the VM whose stage 2 is loaded (Tracer.symbols, by VTTBR)."""
        from engine.blocklog import BlockLog
        log = BlockLog(trace.out, trace.on("in_asm"), trace.on("exec"))
        for cpu, low in zip(self.pcpus, self.lowvisors):
            loaded = low.engine_el2.loaded
            log.install(cpu, lambda pc, loaded=loaded: trace.symbol(loaded["vttbr"], pc))

    @property
    def lookahead(self) -> int:
        """The least virtual time from a guest instruction on one pCPU to a physical SGI it
        causes arriving at another: the exception to EL2, the vector, the registers every
        exit saves first, the SGI write and its delivery (host_kernel/ipi.py).  No pCPU may
        run further than this ahead of another running one, or a kick could arrive in its
        past (conservative parallel simulation: the lookahead bounds the skew)."""
        c, ws = self.costs, self.lowvisors[0].ws
        sgi = ipi.ACCESS[self.gic_version]["sgi"][1]
        return (c["exc_entry_el2"] + c["el2_vector_guest"] + ws.batches[("save", "guest")][0]
                + c[sgi] + c["gic_sgi_delivery"])

    @property
    def shared(self) -> bool:
        """More than one vCPU on this host: a blocked vCPU yields to the scheduler."""
        return sum(len(vm.vcpus) for vm in self.vms) > 1

    def _broadcast_maintenance(self, source: PhysicalCpu, m: int) -> None:
        """A guest's TLBI or IC (broadcast under HCR_EL2.FB, DVM in hardware): every
        other core invalidates too.  The others do not run during this pCPU's turn,
        so doing it before they next run is as if it completed with the guest's DSB."""
        for cpu in self.pcpus:
            if cpu is not source:
                cpu.apply_maintenance(m, source)

    @staticmethod
    def _wire_gicv(cpu: PhysicalCpu, gich: GichV2, low: Lowvisor) -> GicvPort:
        """GICv2: GICV on the physical bus, where stage 2 maps the guest's GICC."""
        vcpuif = VirtualCpuInterface(gich)
        port = GicvPort(cpu, vcpuif, low.ledger, low.engine_el2.set_virq_line)
        wire_gic_outputs(cpu, gich, vcpuif, port)
        port.attach(HOST_GICV_BASE)
        return port

    @staticmethod
    def _wire_icv(cpu: PhysicalCpu, ich, low: Lowvisor):
        """GICv3: the ICV_* system registers answer the guest's ICC_* accesses."""
        from gic.v3_port import IcvPort
        from gic.v3_vcpuif import VirtualCpuInterfaceV3
        vcpuif = VirtualCpuInterfaceV3(ich)
        port = IcvPort(cpu, vcpuif, low.ledger, low.engine_el2.set_virq_line)
        wire_gic_outputs(cpu, ich, vcpuif, port)
        return port

    def create_vm(self, name: str = "vm0", *, nr_vcpus: int = 1, vgic: bool = True,
                  vtimer: bool = True) -> "Vm":
        vm = Vm(self, name, len(self.vms), nr_vcpus=nr_vcpus, vgic_hw=vgic, vtimer=vtimer)
        if not vtimer:
            for cpu in self.pcpus:
                cpu.enable_precise_traps()
        self.vms.append(vm)
        return vm


class InKernelDevice:
    """Adapts a VM-level model to the in-kernel bus: (vcpu, offset, size) accesses."""

    def __init__(self, name: str, read, write, unhandled: list | None = None):
        self.name, self._read, self._write = name, read, write
        self._unhandled = unhandled if unhandled is not None else []

    def read(self, vcpu: int, offset: int, size: int) -> int:
        return self._read(vcpu, offset, size)

    def write(self, vcpu: int, offset: int, size: int, value: int) -> None:
        self._write(vcpu, offset, size, value)

    def emulation(self, offset: int, is_write: bool) -> tuple[str, str]:
        """(cost name, label) of what the kernel runs for an access: the device's handler."""
        return "kernel_mmio_device", f"in-kernel device {self.name}"

    def take_unhandled(self) -> list:
        out = list(self._unhandled)
        self._unhandled.clear()
        return out


class Vm:
    def __init__(self, host: Host, name: str, index: int, *, nr_vcpus: int = 1, vgic_hw: bool = True,
                 vtimer: bool = True):
        self.host, self.name, self.index = host, name, index
        self.trace = host.trace
        self.vmid = host.vmids.alloc()
        self.stage2 = Stage2Tables(host.pool, self.vmid)
        self.memslots = MemSlots()
        self.kernel_bus = MmioBus("in-kernel")
        self.vcpus: list[Vcpu] = []
        self.counters: Counter = Counter()
        self.guest_errors: list[str] = []
        self.vgic_hw, self.vtimer = vgic_hw, vtimer
        self.gic_version = host.gic_version
        self.vgic = Vgic(nr_vcpus=nr_vcpus, nr_lr=host.nr_lr, version=self.gic_version)
        self.vgic.on_hw_deactivate = self._hw_deactivated
        self.vgic.on_kick = self.kick
        self.running: Vcpu | None = None
        self.finished = False                 # shut down (SYSTEM_OFF / reset / every vCPU off)
        # The VMM's next timed event (a user-space device timer: UART line, RTC alarm),
        # as the host scheduler sees it; `blocking` is a vCPU about to block in WFI.
        # While one is pending a blocked vCPU returns to the scheduler, which runs it.
        self.user_deadline: Callable[[Vcpu | None], int] = lambda blocking=None: NEVER
        self.gicc_unhandled: list = []
        self.first_el0: dict | None = None    # the first user-space instruction (watch_first_el0)
        self._rom_used = 0                    # bytes of the VM's ROM window backing read-only slots
        backend = Dom0IoBackend() if host.design.name == "type1" else KvmIoBackend()
        self.bench_io = BenchIo(self, backend)
        self.kernel_bus.register(layout.BENCH_IO_BASE, layout.BENCH_IO_SIZE, self.bench_io)
        self.kernel_bus.register(layout.GIC_DIST_BASE, layout.GIC_DIST_SIZE,
                                 InKernelDevice("vgic-dist", self.vgic.dist_read, self.vgic.dist_write,
                                                self.vgic.unhandled))
        if self.gic_version == 3:
            # One redistributor frame (RD_base + SGI_base) per vCPU; devices see offsets.
            stride = layout.GIC_REDIST_STRIDE
            self.kernel_bus.register(layout.GIC_REDIST_BASE, stride * nr_vcpus, InKernelDevice(
                "vgic-redist", lambda v, o, s: self.vgic.redist_read(o // stride, o % stride, s),
                lambda v, o, s, x: self.vgic.redist_write(o // stride, o % stride, s, x), self.vgic.unhandled))
            for port in host.gicv_ports:
                port.emulated = not vgic_hw       # --no-vgic: every ICC_* access traps
        elif vgic_hw:
            # The guest's GICC page(s) are the hardware GICV: no trap on IAR/EOIR.
            for off in range(0, GICV_SIZE, 0x1000):
                self.stage2.map_page(layout.GIC_CPU_BASE + off, HOST_GICV_BASE + off, device=True,
                                     executable=False)
        else:
            self.kernel_bus.register(layout.GIC_CPU_BASE, GICV_SIZE, InKernelDevice(
                "gicc-emul", lambda v, o, s: self.vcpus[v].emul_cpuif.read(v, o, s),
                lambda v, o, s, x: self.vcpus[v].emul_cpuif.write(v, o, s, x), self.gicc_unhandled))

    @property
    def smp(self) -> bool:
        return len(self.vcpus) > 1

    def now(self) -> int:
        """Virtual time of whoever is acting: the vCPU the scheduler is running."""
        return self.running.cpu.cycles if self.running is not None else 0

    def wake(self, vcpu: int) -> None:
        """A vCPU becomes runnable at the caller's time (PSCI CPU_ON)."""
        v = self.vcpus[vcpu]
        now = self.now()
        if v.cpu.cycles < now:
            v.cpu.advance_idle(now - v.cpu.cycles)
        v.blocked_until = None

    def kick(self, vcpu: int, at: int | None = None) -> None:
        """kvm_vcpu_kick: a vCPU has something new pending.  Blocked: it wakes at the
        kicker's time (`at`, default the running vCPU's).  Paused mid-guest on its own
        pCPU: a physical IPI makes it exit as soon as it runs again, and it re-enters
        with the interrupt in a list register."""
        v = self.vcpus[vcpu]
        if v is self.running:
            return                                # it re-enters through the vGIC flush itself
        sender = self.running
        if sender is not None:
            sender.ledger.note(HIGHVISOR, f"kvm_vcpu_kick(vCPU{vcpu})", 0)
        if v.blocked_until is not None:
            if v.baton_waiting:                   # asleep in a hypercall, not in WFI
                return
            if sender is not None and sender.cpu is not v.cpu and (v.woken_not_asleep
                                                                   or sender.cpu.cycles < v.cpu.cycles):
                # Its WFx exit blocked, but its pCPU goes idle only later than this kick: the
                # thread has not slept yet, it continues at once (host_kernel/ipi.py WAKE_NOT_ASLEEP).
                what, key = ipi.WAKE_NOT_ASLEEP[self.host.design.name]
                sender.ledger.charge(sender.ledger.where_map.get(HIGHVISOR, HIGHVISOR),
                                     what.format(n=v.index), sender.ledger.costs[key])
                v.blocked_until, v.woken_not_asleep = v.cpu.cycles, True
            elif sender is not None and sender.cpu is not v.cpu:
                # Asleep in WFI, its pCPU idle: wake its thread, a physical SGI to that pCPU.
                arrival = self._send_sgi(sender, v, wake=True)
                if arrival < v.blocked_until:
                    v.blocked_until = v.sgi_wake_at = arrival
            else:
                v.blocked_until = min(v.blocked_until, self.now() if at is None else at)
        elif v.paused and sender is not None:
            # Running on its pCPU: a physical SGI (host_kernel/ipi.py) makes it exit when it arrives.
            v.sgi.post(self._send_sgi(sender, v, wake=False))
        elif v.paused:                            # the VMM's thread (no vCPU of this VM runs)
            v.sgi.post(self.now() if at is None else at)

    def _send_sgi(self, sender, v, wake: bool) -> int:
        """The sender's side of a kick by physical SGI (host_kernel/ipi.py): for a vCPU asleep,
        the wake-up of its thread first; then the SGI write (charged to the sender) and the
        delivery (in parallel).  Returns when the SGI reaches `v`'s pCPU."""
        led, design = sender.ledger, self.host.design.name
        where = led.where_map.get(HIGHVISOR, HIGHVISOR)
        if wake:
            for what, key in ipi.WAKE_SENDER[design]:
                led.charge(where, what.format(n=v.index), led.costs[key])
        write, delivery = ipi.send_steps(led.costs, self.gic_version, where,
                                         (ipi.WAKE if wake else ipi.KICK)[design], f"pCPU{v.cpu.index}")
        led.charge_steps(write.cycles, (write,))
        sent = sender.cpu.cycles
        led.note(delivery.where, delivery.what, delivery.cycles, at=sent)
        return sent + delivery.cycles

    def irq_line(self, intid: int, level: bool, at: int) -> None:
        """KVM_IRQ_LINE from user space (kvm_vm_ioctl_irq_line -> kvm_vgic_inject_irq):
        drive an SPI's input line; if that makes it pending for a vCPU, kick that vCPU
        (vgic_queue_irq_unlock).  `at` is the virtual time of the VMM's action."""
        self.vgic.set_level(intid, level)
        target = self.vgic.spi_target(intid)
        if level and target is not None and self.vgic.has_pending(target):
            self.kick(target, at)
    def watch_first_el0(self) -> None:
        """Note when the guest first runs user space (a Linux boot reaching init)."""
        for v in self.vcpus:
            v.cpu.watch_first_el0()

    def note_first_el0(self, vcpu: Vcpu, insns: int, cycles: int) -> None:
        """vCPU `vcpu` ran its first EL0 instruction after `insns` of its pCPU's
        instructions, at `cycles`.  The other pCPUs have not run since (one engine runs
        at a time), so their counts now are their counts then."""
        if self.first_el0 is not None:
            return
        others = {id(v.cpu): v.cpu.insns for v in self.vcpus if v.cpu is not vcpu.cpu}
        self.first_el0 = {"vcpu": vcpu.index, "insns": insns + sum(others.values()),
                          "vcpu_insns": insns, "cycles": cycles}
        for v in self.vcpus:
            v.cpu.watch_first_el0(False)

    def _hw_deactivated(self, vcpu: int, pintid: int) -> None:
        """The guest deactivated a HW-mapped interrupt (seen at fold; with a vGIC the GICV
        hardware already did it the moment the guest wrote EOIR)."""
        deactivate_physical(self.vcpus[vcpu].cpu, pintid)

    def add_ram(self, ipa: int, size: int, thp: bool = True):
        """KVM_SET_USER_MEMORY_REGION: back [ipa, ipa+size) with host memory on every pCPU.
        Nothing is mapped at stage 2 yet: pages fault in on first touch - 2 MiB blocks
        when `thp` (the VMM's RAM is backed by transparent huge pages, as QEMU asks
        with MADV_HUGEPAGE), else 4 KB pages."""
        host_pa = HOST_RAM_BASE + self.index * HOST_RAM_STRIDE
        if size > HOST_RAM_STRIDE:
            raise ValueError(f"RAM size {size:#x} exceeds the {HOST_RAM_STRIDE:#x} per-VM window")
        buf = self.host.pcpus[0].map_memory(host_pa, size)
        for cpu in self.host.pcpus[1:]:
            cpu.map_shared(host_pa, buf)
        slot = MemSlot(ipa, size, host_pa, buf, thp)
        self.memslots.add(slot)
        return slot

    def add_rom(self, ipa: int, size: int, thp: bool = True) -> MemSlot:
        """KVM_SET_USER_MEMORY_REGION with KVM_MEM_READONLY: host memory the VMM fills (a
        ROM device's array, QEMU's ROM-D region of the flash) read and executed in place
        by the guest; stage 2 maps it without write permission (2 MiB blocks when
        `thp`, as for RAM), and a write exits to user space as MMIO.  The slot is
        returned for `delete_slot` / `restore_slot` (the device leaving and re-entering
        ROM mode), its `buf` is the backing."""
        used = self._rom_used
        if used + size > HOST_ROM_STRIDE:
            raise ValueError(f"ROM size {size:#x} exceeds the {HOST_ROM_STRIDE:#x} per-VM window")
        host_pa = HOST_ROM_BASE + self.index * HOST_ROM_STRIDE + used
        self._rom_used = used + size
        buf = self.host.pcpus[0].map_memory(host_pa, size)
        for cpu in self.host.pcpus[1:]:
            cpu.map_shared(host_pa, buf)
        slot = MemSlot(ipa, size, host_pa, buf, thp, readonly=True)
        self.memslots.add(slot)
        return slot

    def delete_slot(self, slot: MemSlot) -> None:
        """KVM_SET_USER_MEMORY_REGION with memory_size 0: the slot goes, its stage-2
        mappings are flushed (kvm_arch_flush_shadow_memslot) and the TLBs of the VM's
        pCPUs invalidated (TLBI VMALLS12E1IS).  Accesses to the range then fault with no
        slot: MMIO exits to user space."""
        self.memslots.remove(slot)
        self.stage2.unmap_range(slot.ipa, slot.size)
        for cpu in self._pcpus():
            cpu.flush_tlb()

    def restore_slot(self, slot: MemSlot, changed: bool = False) -> None:
        """The slot again (KVM_SET_USER_MEMORY_REGION): pages fault in on first touch.
        `changed`: the VMM rewrote its memory meanwhile, and translated code of the old
        contents would survive that (PhysicalCpu.flush_tlb): drop it."""
        self.memslots.add(slot)
        if changed:
            for cpu in self._pcpus():
                cpu.drop_code()

    def _pcpus(self) -> list:
        """The pCPUs this VM's vCPUs run on, each once."""
        return list({id(v.cpu): v.cpu for v in self.vcpus}.values())

    def create_vcpu(self, mpidr: int, pcpu: int = 0) -> Vcpu:
        v = Vcpu(self, len(self.vcpus), mpidr, self.host.lowvisors[pcpu], self.host.nr_lr)
        self.vcpus.append(v)
        return v
