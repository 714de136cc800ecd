"""A vCPU and its KVM_RUN loop (KVM arm.c kvm_arch_vcpu_ioctl_run)."""
from __future__ import annotations

from dataclasses import dataclass

from engine import aarch64
from engine.ledger import GUEST, HIGHVISOR, USER, Step
from el2.context import TrapConfig, VcpuContext
from el2.hcr import CNTHCTL_EL1PCTEN, CNTHCTL_EL1TVT, HCR_GUEST_FLAGS, HCR_VI, MDCR_GUEST_FLAGS
from el2.lowvisor import ARM_EXCEPTION_IRQ, EXIT_TURN, Lowvisor
from gic.v2_hyp import VgicV2CpuIf
from host_kernel import inject, psci
from host_kernel.arch_timer import VTIMER_INTID, ArchTimer
from host_kernel.bench_io import BenchIoEvents
from host_kernel.emul_timer import make_timers
from host_kernel.handle_exit import exit_name, handle_exit
from host_kernel.irq import handle_host_irq
from host_kernel import ipi
from host_kernel.ipi import PhysicalSgi
from host_kernel.vgic_emul import EmulatedCpuInterface, EmulatedCpuInterfaceV3
from timers.generic_timer import NEVER
from host_kernel.mmio import MmioAccess, complete_read_value
from host_kernel.stats import ExitStats

MAX_GUEST_ERRORS = 1000                  # messages kept for the report (all are counted)

# struct kvm_run exit reasons (the ones armvirt produces).
KVM_EXIT_MMIO = "MMIO"
KVM_EXIT_SYSTEM_EVENT = "SYSTEM_EVENT"
KVM_EXIT_INSN_LIMIT = "INSN_LIMIT"
KVM_EXIT_HALTED = "HALTED"
# Scheduler-facing outcomes of KVM_RUN on an SMP VM (a vCPU thread giving up the pCPU).
EXIT_PREEMPTED = "PREEMPTED"       # the pCPU's turn of virtual time ended
EXIT_BLOCKED = "BLOCKED"           # WFI with nothing pending: sleep until `blocked_until`
EXIT_POWER_OFF = "POWER_OFF"       # PSCI CPU_OFF


@dataclass
class KvmRun:
    exit_reason: str = ""
    mmio: MmioAccess | None = None
    system_event_type: int = 0
    message: str = ""

    def system_event(self, type_: int) -> None:
        self.exit_reason, self.system_event_type = KVM_EXIT_SYSTEM_EVENT, type_

    def insn_limit(self) -> None:
        self.exit_reason = KVM_EXIT_INSN_LIMIT


@dataclass
class BootState:
    entry: int
    x0: int = 0


class Vcpu:
    def __init__(self, vm, index: int, mpidr: int, lowvisor: Lowvisor, nr_lr: int):
        self.vm, self.index, self.mpidr = vm, index, mpidr
        self.lowvisor = lowvisor
        self.ledger = lowvisor.ledger
        self.cpu = lowvisor.cpu
        self.trace = vm.trace
        self.nr_lr = nr_lr
        self.kvm_run = KvmRun()
        self.stats = ExitStats()
        self.powered_on = False
        self.on_pending = False            # CPU_ON accepted, not yet run (AFFINITY_INFO: ON_PENDING)
        self.blocked_until: int | None = None
        self.paused = False                # its turn ended mid-guest: resume without a world switch
        self._fp_at_load = None
        self.put_fp_used = False           # the last user exit's vcpu_put found FP/SIMD changed
        self.baton_waiting = False         # asleep in the VM-switch hypercall (host_kernel/vm_switch.py)
        self._pending_sample: tuple[str, int] | None = None
        self._mmio: MmioAccess | None = None
        self._ext_dabt: int | None = None
        self.arch_timer = ArchTimer(self, vm.host.counter)
        self.emul_cpuif = None if vm.vgic_hw else (
            EmulatedCpuInterfaceV3(self) if vm.gic_version == 3 else EmulatedCpuInterface(self))
        if vm.vtimer:
            vm.vgic.map_hw(index, VTIMER_INTID, VTIMER_INTID)
        self.blocked_cycles = 0
        self.last_exit = None              # the Exit __kvm_vcpu_run returned last (for debuggers)
        self.loads = 0                     # vcpu_load/put, preemptions, wake-ups: the pCPU's time moved
        # host_kernel/fast_mmio.py: exits the engine serves (the VMM sets fast_mmio)
        self.fast_mmio = None
        self.fm_pushed = self.fm_moved = self.fm_entry_quiet = False
        self.fm_learn = None
        self.ctx = self._reset_context()
        # host event sources standing in for hardware while the vCPU is out or blocked
        self.sgi = PhysicalSgi(self)       # a kick from another pCPU while this vCPU runs
        self.sgi_wake_at: int | None = None  # ... or while it sleeps: when its SGI arrives
        self.woken_not_asleep = False      # ... or kicked before its pCPU went idle (no SGI)
        self.asleep = False                # blocked in WFI: a back end's event wakes its thread
        self.debug_logged: set[str] = set()   # unmodeled debug features already logged (host_kernel/debug.py)
        self.loaded = False                # vcpu_load'ed on its pCPU (not put since)
        # Blocked in WFI, its thread schedules out (vcpu_put) only when its pCPU switches away
        # from it: a kick before then finds it still current and nothing is put or loaded.
        self.put_pending = False
        self.soft_timers = make_timers(self) + [BenchIoEvents(self, vm.bench_io), self.sgi]
        if self.trace.on("int"):
            # one hook per pCPU, and vCPUs may share a pCPU (--pcpus): it names the vCPU that
            # runs there when the exception is taken, not the last one built on it
            self.cpu.on_guest_exception = _GuestExceptionLog(vm.host, self.cpu)

    @property
    def tag(self) -> str:
        """How logs name this vCPU: with its VM's name once the host runs several."""
        return f"{self.vm.name}/vcpu{self.index}" if len(self.vm.host.vms) > 1 else f"vcpu{self.index}"

    # --- state --------------------------------------------------------------------
    def _reset_context(self) -> VcpuContext:
        trap = TrapConfig(hcr=HCR_GUEST_FLAGS, mdcr=MDCR_GUEST_FLAGS)
        if self.vm.gic_version == 3:
            from gic.v3_hyp import VgicV3CpuIf
            cpu_if = VgicV3CpuIf(self.nr_lr)
        else:
            cpu_if = VgicV2CpuIf(self.nr_lr)
        ctx = VcpuContext(cpu_if, trap, self.vm.stage2.vttbr)
        ctx.el1.load(self.vm.host.el1_reset)     # architectural reset values, from the core
        ctx.fp.load(self.vm.host.fp_reset)
        ctx.el1.set("VMPIDR_EL2", (1 << 31) | self.mpidr)   # MPIDR_EL1 bit 31 is RES1
        # EL1PCTEN: CNTPCT reads are allowed (the fast path virtualizes them); EL1PCEN = 0:
        # the physical timer traps and is emulated (ARM ARM D13.2.45, E2H = 0).
        ctx.timer.cnthctl = CNTHCTL_EL1PCTEN | (0 if self.vm.vtimer else CNTHCTL_EL1TVT)
        return ctx

    def emulated_timer(self, name: str):
        return next((t for t in self.soft_timers if t.name == name), None)

    def next_timer_deadline(self) -> int:
        return min([self.arch_timer.deadline_cycles()] + [t.deadline_cycles() for t in self.soft_timers])

    def update_timer_levels(self) -> None:
        self.arch_timer.update_level()
        for t in self.soft_timers:
            t.update_level()

    def reset(self, boot: BootState) -> None:
        """Boot contract: EL1h, MMU off, DAIF masked, x0 = DTB, x1-x3 = 0."""
        self.ctx = self._reset_context()
        self.ctx.gp.load([0] * len(self.ctx.gp))
        self.ctx.set_x(0, boot.x0)
        self.ctx.pc = boot.entry
        self.ctx.pstate = aarch64.RESET_PSTATE
        self.ctx.gp.set("SPSR_EL1", 0)
        self.powered_on = True

    def power_off(self) -> None:
        self.powered_on = False

    def power_on_request(self, entry: int, context_id: int) -> int:
        if self.powered_on:
            return psci.ALREADY_ON
        self.reset(BootState(entry=entry, x0=context_id))
        # It powers on now, in the caller's time: its pCPU's clock (and so its counter)
        # must not start from wherever that pCPU last stopped.
        self.vm.wake(self.index)
        return psci.SUCCESS

    def affinity_state(self) -> int:
        if self.on_pending:
            return psci.AFF_ON_PENDING
        return psci.AFF_ON if self.powered_on else psci.AFF_OFF

    # --- helpers for exit handlers -----------------------------------------------------
    def skip_instruction(self, what) -> None:
        """kvm_incr_pc: the trapped instruction completed by emulation retires."""
        self.ctx.pc += 4
        self.cpu.retire(1)
        self.ledger.note(GUEST, lambda: f"{what() if callable(what) else what}: 1 instruction", self.cpu.st.cpi)

    def guest_error(self, msg: str, category: str = "guest_errors") -> None:
        """Something the guest did that gets an architectural fault or is ignored, logged
        under -d guest_errors - or under -d unimp when the board does not model what the
        guest asked for (a system register or an exception class armvirt lacks)."""
        self.vm.counters[category] += 1
        if len(self.vm.guest_errors) < MAX_GUEST_ERRORS:      # a guest in a loop must not fill RAM
            self.vm.guest_errors.append(f"{self.tag}: {msg}")
        if self.trace.on(category):
            self.trace.log(category, f"{self.tag}: {msg}")

    def unimplemented(self, msg: str) -> None:
        self.guest_error(msg, "unimp")

    def block_in_wfi(self) -> int:
        """kvm_vcpu_block: sleep until an interrupt is pending for this vCPU - even one
        PSTATE.I masks (ARM ARM D1.16.2, WFI wake-up events).  Virtual time jumps to
        the host soft timer standing in for the guest's timer; nothing executes."""
        led = self.ledger
        self.update_timer_levels()
        if self.vm.vgic.has_pending(self.index):
            return 1
        self.asleep = True                   # a back end's event now wakes a sleeping thread
        deadline = self.next_timer_deadline()
        # a back end's event reaches the idle pCPU as a physical SGI (its soft timer is an hrtimer)
        by_sgi = deadline != NEVER and any(t.kind == "sgi" and t.deadline_cycles() == deadline
                                           for t in self.soft_timers)
        if self.vm.host.shared or self.vm.user_deadline(self) != NEVER:
            # Other vCPUs (or the VMM's timers) run meanwhile and may kick this one: the
            # scheduler decides when it wakes (its soft timer or a kick) and jumps its
            # pCPU's time to then.
            led.charge_named(HIGHVISOR, "kvm_vcpu_block: arm the soft timer, schedule out", "vcpu_block")
            # the thread schedules out (kvm_sched_out / ctxt_switch_from) when schedule() switches
            # away from it: charged then (wake_up, or the pCPU's next vCPU), unless a kick came first
            self.put_pending = True
            self.blocked_until = deadline
            self.sgi_wake_at = deadline if by_sgi else None
            self.kvm_run.exit_reason = EXIT_BLOCKED
            return 0
        if deadline == NEVER:
            self.asleep = False
            self.kvm_run.exit_reason = KVM_EXIT_HALTED
            self.kvm_run.message = "vCPU blocked in WFI with no interrupt that could ever wake it"
            return 0
        led.charge_named(HIGHVISOR, "kvm_vcpu_block: arm the soft timer, schedule out", "vcpu_block")
        now = self.cpu.cycles
        if deadline > now:
            self.cpu.advance_idle(deadline - now)
            self.blocked_cycles += deadline - now
            if self.trace.on("timer"):
                self.trace.log("timer", f"{self.tag}: blocked in WFI for {deadline - now} cycles")
        if by_sgi:
            self._woken_by_sgi()
        else:
            led.charge_named(HIGHVISOR, "soft timer expiry: kvm_vcpu_wake_up, schedule in", "vcpu_wakeup")
        self.update_timer_levels()
        self.asleep = False
        if not self.vm.vgic.has_pending(self.index):
            # the timer fired but its interrupt is not enabled at the GIC: nothing can wake us
            self.kvm_run.exit_reason = KVM_EXIT_HALTED
            self.kvm_run.message = "vCPU blocked in WFI: its timer fired but the interrupt is disabled"
            return 0
        return 1

    # --- the vGIC and the timer around each run ------------------------------------------------
    def _flush(self) -> None:
        led = self.ledger
        self.arch_timer.flush()
        for t in self.soft_timers:
            t.update_level()
        # the soft timers' comparator while the guest runs: a host deadline on this pCPU
        # (a timer whose output is already asserted has fired: its level is tracked, not re-armed)
        self.cpu.st.host_deadline = min([t.deadline_cycles() for t in self.soft_timers if not t.level],
                                        default=NEVER)
        led.charge_named(HIGHVISOR, "vGIC flush (kvm_vgic_flush_hwstate)", "vgic_flush")
        if self.emul_cpuif is None:
            self.vm.vgic.flush_lr_state(self.index, self.ctx.vgic)
            if led.trace is not None:
                led.trace.lrs(self.ctx.vgic.lr[:self.ctx.vgic.used_lrs])
            for i in range(self.ctx.vgic.used_lrs):
                led.charge_named(HIGHVISOR, lambda i=i: f"vGIC: populate LR{i}", "vgic_lr_populate")
        else:
            self.emul_cpuif.flush()
            self.set_soft_virq()

    def set_soft_virq(self) -> None:
        """--no-vgic: inject through HCR_EL2.VI from the emulated CPU interface."""
        line = self.emul_cpuif.irq_line()
        self.ctx.trap.hcr = (self.ctx.trap.hcr & ~HCR_VI) | (HCR_VI if line else 0)

    def _sync(self) -> None:
        led = self.ledger
        led.charge_named(HIGHVISOR, "vGIC sync (kvm_vgic_sync_hwstate)", "vgic_sync")
        if self.emul_cpuif is None:
            for i in range(self.ctx.vgic.used_lrs):
                led.charge_named(HIGHVISOR, lambda i=i: f"vGIC: fold LR{i}", "vgic_lr_fold")
            self.vm.vgic.fold_lr_state(self.index, self.ctx.vgic)
        else:
            self.emul_cpuif.fold()
        self.arch_timer.sync()
        for t in self.soft_timers:
            t.update_level()

    def complete_mmio(self, acc: MmioAccess) -> None:
        if not acc.is_write:
            self.ctx.set_x(acc.rt, complete_read_value(acc))
        self.skip_instruction(f"{'STR' if acc.is_write else 'LDR'} {acc.size * 8}-bit MMIO (emulated)")

    def start_user_mmio(self, acc: MmioAccess) -> None:
        self._mmio = acc
        self.kvm_run.exit_reason, self.kvm_run.mmio = KVM_EXIT_MMIO, acc
        self.ledger.charge_named(HIGHVISOR, "return to user space (KVM_EXIT_MMIO)", "exit_to_user")
        design = self.lowvisor.design
        if design.puts_on_user_exit:    # kvm_vcpu_ioctl: vcpu_put once KVM_RUN returns
            self.put_fp_used = self.ctx.fp.snapshot() != self._fp_at_load
            self.lowvisor.ws.vcpu_put(fp_used=self.put_fp_used, where=design.where)

    def stalled_exit(self) -> int:
        """An injected exception retired nothing since the previous one: stop at the
        instruction limit, else give the pCPU back when its turn is over (a guest in an
        exception loop must not keep the others from running).  1: resume the guest."""
        cpu = self.cpu
        cpu.note_stall()
        if cpu.limit_hit:
            self.kvm_run.insn_limit()
            return 0
        if cpu.cycles >= cpu.st.turn_deadline:
            self.kvm_run.exit_reason = EXIT_PREEMPTED
            return 0
        return 1

    def set_external_abort(self, addr: int) -> None:
        """KVM_SET_VCPU_EVENTS ext_dabt_pending: user space found no device."""
        self._ext_dabt = addr

    # --- KVM_RUN -------------------------------------------------------------------------
    def wake_up(self, at: int) -> None:
        """The scheduler wakes a blocked vCPU at virtual time `at` (soft timer or kick)."""
        if self.woken_not_asleep:            # schedule() picked the same thread: no switch at all
            self.put_pending = False
        elif self.put_pending:               # it did schedule out, at the time it blocked
            self.vcpu_put()
        now = self.cpu.cycles
        if at > now and at != NEVER:
            self.cpu.advance_idle(at - now)
            self.blocked_cycles += at - now
        self.blocked_until = None
        self.loads += 1
        if self.woken_not_asleep:            # its pCPU never went idle: nothing wakes it
            self.woken_not_asleep = False
            self.ledger.note(HIGHVISOR, ipi.NOT_ASLEEP, 0)
        elif self.sgi_wake_at is not None and at == self.sgi_wake_at:
            self._woken_by_sgi()
        else:
            self.ledger.charge_named(HIGHVISOR, "soft timer / kick: kvm_vcpu_wake_up, schedule in", "vcpu_wakeup")
        self.sgi_wake_at = None
        self.vcpu_load()                     # schedule in (kvm_sched_in / ctxt_switch_to)
        self.update_timer_levels()
        self.asleep = False

    def _woken_by_sgi(self) -> None:
        """A kick's SGI takes this vCPU's idle pCPU out of WFI; its scheduler switches to it."""
        led, design = self.ledger, self.vm.host.design.name
        where = led.where_map.get(HIGHVISOR, HIGHVISOR)
        entry = ("Xen EL2 idle loop" if design == "type1" else
                 "host EL2 idle loop" if self.vm.host.design.host_at_el2 else "host EL1 idle loop")
        handler = [Step(where, "do_sgi: GIC_SGI_EVENT_CHECK, nothing to do (softirqs run on the way out)"
                        if design == "type1" else "handle_IPI(IPI_RESCHEDULE): scheduler_ipi, the woken thread is runnable",
                        led.costs[led.key_map.get("host_event_handler", ("host_event_handler",))[0]])]
        steps = ipi.idle_wakeup_steps(led.costs, self.vm.host.gic_version, where, entry,
                                      ipi.KICK_SGI[design], handler,
                                      entry_sw=ipi.XEN_IRQ_ENTRY if design == "type1" else None,
                                      split_eoi=ipi.SPLIT_EOI[design],
                                      host_el=2 if self.vm.host.design.host_at_el2 else 1)
        steps += ipi.receiver_steps(led.costs, design, where, f"vCPU{self.index}")
        led.charge_steps(sum(st.cycles for st in steps), tuple(steps))

    def run(self) -> KvmRun:
        led = self.ledger
        self.on_pending = False
        self.lowvisor.clear_monitor = self.cpu.st.fm_clear_monitor = self.vm.host.shared
        if self.paused:                     # the same guest continues on its pCPU
            self.paused = False
            self.kvm_run = KvmRun()
            return self._resumed(self._enter(resume=True))
        if self._mmio is not None:          # kvm_handle_mmio_return
            led.charge_named(USER, "ioctl(KVM_RUN): re-enter the kernel", "kvm_run_ioctl")
            design = self.lowvisor.design
            if design.puts_on_user_exit:    # kvm_vcpu_ioctl: vcpu_load before KVM_RUN
                self._fp_at_load = self.ctx.fp.snapshot()
                self.lowvisor.ws.vcpu_load(where=design.where)
            acc, self._mmio = self._mmio, None
            if self._ext_dabt is not None:
                inject.inject_dabt(self.ctx, self._ext_dabt, acc.is_write)
                led.charge_named(HIGHVISOR, "inject external abort (no device)", "inject_fault")
                self._ext_dabt = None
            else:
                self.complete_mmio(acc)
        self.kvm_run = KvmRun()
        while True:
            led.charge_named(HIGHVISOR, "run loop: signals, requests, preemption", "run_loop")
            self._flush()
            ex = self._enter()
            if ex.code == EXIT_TURN:
                self.paused = True
                self.kvm_run = KvmRun(EXIT_PREEMPTED)
                return self.kvm_run
            if self._handle(ex) <= 0:
                return self.kvm_run

    def _resumed(self, ex) -> KvmRun:
        if ex.code == EXIT_TURN:
            self.paused = True
            self.kvm_run = KvmRun(EXIT_PREEMPTED)
            return self.kvm_run
        return self._after_exit(ex)

    def run_resumed_in_engine(self) -> KvmRun:
        """The rest of run() for a resume that armvirt/engine_resumes.py's C loop started
        (it did the steps up to the engine's run, as run() and _enter() do them)."""
        self.paused = False
        self.kvm_run = KvmRun()
        return self._resumed(self._entered(self.lowvisor.guest_stopped(self.ctx)))

    def _enter(self, resume: bool = False):
        """__kvm_vcpu_run; afterwards, the exits the engine served meanwhile, and whether
        the guest reached user space in that run."""
        fm = self.fast_mmio
        if fm is not None:
            fm.enter(self)
        return self._entered(self.lowvisor.run(self.ctx, resume))

    def _entered(self, ex):
        fm = self.fast_mmio
        if fm is not None:
            fm.exited(self, ex)
        first = self.cpu.take_first_el0()
        if first is not None:
            self.vm.note_first_el0(self, *first)
        return ex

    def vcpu_load(self) -> None:
        """kvm_arch_vcpu_load: this vCPU gets its pCPU (state the design defers moves now)."""
        if self.loaded:
            return
        self.loaded = True
        self._fp_at_load = self.ctx.fp.snapshot()
        self.loads += 1
        self.lowvisor.ws.vcpu_load()

    def vcpu_put(self) -> None:
        """kvm_arch_vcpu_put: another vCPU takes the pCPU, or its thread blocks."""
        self.put_pending = False
        if not self.loaded:
            return
        self.loaded = False
        self.loads += 1
        self.lowvisor.ws.vcpu_put(fp_used=self.ctx.fp.snapshot() != self._fp_at_load)

    def preempt(self) -> None:
        """The scheduler gives this vCPU's pCPU to another vCPU while this one is paused
        mid-guest: the scheduler tick's IRQ exits it (charged: the exit, the host's IRQ
        handling, the switch out); it re-enters later by a full world switch."""
        self.paused = False
        self.loads += 1
        self.cpu.st.host_deadline = 0            # the tick: a host interrupt is pending now
        self._handle(self.lowvisor.preempt(self.ctx))
        self.ledger.charge_named(HIGHVISOR, "need_resched: schedule() to another vCPU thread", "sched_switch")
        self.kvm_run = KvmRun(EXIT_PREEMPTED)

    def _after_exit(self, ex) -> KvmRun:
        """Continue KVM_RUN after an exit taken in a resumed turn."""
        if self._handle(ex) <= 0:
            return self.kvm_run
        return self.run()

    def _handle(self, ex) -> int:
        """After __kvm_vcpu_run returned: statistics, vGIC/timer sync, host IRQs, handle_exit."""
        self.close_pending_sample()
        self.last_exit = ex
        self._sync()
        if ex.code == ARM_EXCEPTION_IRQ:          # the host takes it once it unmasks IRQs
            handle_host_irq(self)
        name = exit_name(ex)
        if self.ledger.trace is not None:
            self.ledger.trace.exit(name, ex)
        if self.trace.on("exits"):
            self.trace.log("exits", f"{self.tag}: {name} esr={ex.esr:#010x} pc={ex.elr:#x} "
                                    f"far={ex.far:#x} cycles={ex.t_trap}")
        self._pending_sample = (name, ex.t_trap) if name != "LIMIT" else None
        return handle_exit(self, ex, name)

    def close_pending_sample(self) -> None:
        """The last exit's sample ends at the entry that followed it."""
        if self._pending_sample is not None:
            name, t = self._pending_sample
            self.stats.add(name, self.lowvisor.entered_at - t)
            self._pending_sample = None

    def open_sample(self, name: str, t_trap: int) -> None:
        self._pending_sample = (name, t_trap)

    def finish(self) -> None:
        """Close the last exit's sample when the run ends (nothing re-enters the guest)."""
        if self._pending_sample is not None:
            name, t = self._pending_sample
            self.stats.add(name, self.cpu.cycles - t)
            self._pending_sample = None


class _GuestExceptionLog:
    """`-d int`'s line for an exception the core takes to the guest's EL1 on `cpu`."""

    def __init__(self, host, cpu):
        self.host, self.cpu = host, cpu

    def __call__(self, intno: int, esr: int, far: int, pc: int) -> None:
        vcpu = next((vm.running for vm in self.host.vms
                     if vm.running is not None and vm.running.cpu is self.cpu), None)
        if vcpu is None:
            return
        far_text = f" FAR {far:#x}" if intno in (3, 4) else ""      # only aborts set FAR_EL1
        vcpu.trace.log("int", f"{vcpu.tag}: exception taken to EL1: ESR_EL1 {esr:#010x} "
                              f"(EC {esr >> 26:#x}){far_text} ELR {pc:#x}")
