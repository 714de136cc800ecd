"""The lowvisor: the thin part of split-mode KVM/ARM that runs at EL2.

It does world switches and trap plumbing only.  `run()` is __kvm_vcpu_run:
the highvisor calls it (through an HVC, charged), it switches to the guest,
lets the engine execute until an exception targets EL2, switches back and
returns the exit to the highvisor - as KVM returns an exception code to
handle_exit.  It never decides what an exit means.
"""
from __future__ import annotations


from engine.aarch64 import PSR_I
from engine.core import NEVER, PhysicalCpu
from engine.ledger import GUEST, HW, LOWVISOR, Ledger
from engine.regbank import RegBank
from engine import sysreg as S
from el2 import syndrome as syn
from el2.context import HostContext, VcpuContext
from el2.design import NVHE, Design, configure_ledger
from el2.regs import El2Regs, EngineEl2
from el2.world_switch import WorldSwitch
from gic.v2_hyp import GichV2

# Exit codes (KVM's ARM_EXCEPTION_*), plus the engine's instruction limit.
ARM_EXCEPTION_TRAP = 1
ARM_EXCEPTION_IRQ = 0
EXIT_INSN_LIMIT = -1
EXIT_TURN = -2          # SMP: the pCPU's turn ended; the guest stays loaded, nothing switched


class Exit:
    """What __kvm_vcpu_run hands back: the exception code and the EL2 syndrome registers."""
    __slots__ = ("code", "esr", "far", "hpfar", "elr", "t_trap", "ec")

    def __init__(self, code: int, esr: int = 0, far: int = 0, hpfar: int = 0, elr: int = 0,
                 t_trap: int = 0):
        self.code, self.esr, self.far, self.hpfar, self.elr = code, esr, far, hpfar, elr
        self.t_trap = t_trap                 # cycles when the exception was taken
        self.ec = syn.ec_of(esr)

    def __repr__(self) -> str:
        return (f"Exit(code={self.code}, esr={self.esr:#x}, far={self.far:#x}, hpfar={self.hpfar:#x}, "
                f"elr={self.elr:#x}, t_trap={self.t_trap})")


class Lowvisor:
    def __init__(self, cpu: PhysicalCpu, ledger: Ledger, gich: GichV2, design: Design = NVHE):
        self.cpu, self.ledger, self.design = cpu, ledger, design
        self.el2 = El2Regs()
        self.engine_el2 = EngineEl2(cpu)
        self.host = HostContext()
        self.ws = WorldSwitch(cpu, ledger, self.el2, gich, design)
        # Type 1: the driver domain's paths come with the design (the host supplies them;
        # el2 does not reach up into host_kernel).
        self.dom0 = design.driver_domain(self.ws) if design.driver_domain is not None else None
        configure_ledger(ledger, design, self.dom0)
        self._exit: Exit | None = None
        self.entered_at = 0
        self.clear_monitor = False        # set while the host runs more than one vCPU
        self.broadcast = None             # (cpu, MAINT_*) -> repeat TLBI/IC on the other pCPUs
        self._hpfar = RegBank(["HPFAR_EL2"], [S.HPFAR_EL2])
        cpu.el2_vector = self._el2_vector
        c = ledger.costs
        self._c_trap, self._c_eret = c["exc_entry_el2"], c["eret"]
        self._c_vec_guest, self._c_vec_host = c["el2_vector_guest"], c["el2_vector_host"]
        self._trap_steps = ledger.steps_of(
            (HW, "exception entry to EL2", "exc_entry_el2"),
            (LOWVISOR, "EL2 vector: read ESR_EL2, branch to exit path", "el2_vector_guest"))
        self._hvc_in_steps = ledger.steps_of(
            (HW, "HVC from highvisor: exception entry to EL2", "exc_entry_el2"),
            (LOWVISOR, "EL2 vector: host HVC, dispatch to __kvm_vcpu_run", "el2_vector_host"))

    # The EL2 vector: exception entry to EL2 (ARM ARM D1.10), then the lowvisor's vector code.
    def _el2_vector(self, intno: int, syndrome: int, vaddress: int, pc: int, pstate: int) -> None:
        t = self.cpu.cycles
        led = self.ledger
        led.begin_segment()
        ec = syndrome >> 26
        if ec == syn.EC_HVC64:
            led.note(GUEST, lambda: f"HVC #{syndrome & 0xFFFF:#x} (1 instruction)", self.cpu.st.cpi)
        led.charge_steps(*self._trap_steps)       # exception entry to EL2, then the vector code
        e = self.el2
        e.esr, e.far, e.elr, e.spsr = syndrome, vaddress, pc, pstate
        if ec == syn.EC_DABT_LOW or ec == syn.EC_IABT_LOW:
            self._hpfar.read(self.cpu.uch)        # the core fills HPFAR_EL2 for stage-2 faults
            e.hpfar = self._hpfar[0]
        else:
            e.hpfar = 0                           # UNKNOWN for other classes: report 0
        self._exit = Exit(ARM_EXCEPTION_TRAP, e.esr, e.far, e.hpfar, e.elr, t)
        self.cpu.stop()

    def _fastpath_trap(self) -> Exit:
        """An MSR/MRS the fast path trapped (EC 0x18): exception entry to EL2 at its address."""
        st = self.cpu.st
        esr, pc = st.trap_esr, st.trap_pc
        st.trap_esr = 0
        self.cpu.retire_before(pc)
        self.ledger.begin_segment()
        t = self.cpu.cycles
        self.ledger.charge(HW, "exception entry to EL2", self._c_trap)
        self.el2.esr, self.el2.elr = esr, pc
        self.ledger.charge(LOWVISOR, "EL2 vector: read ESR_EL2, branch to exit path", self._c_vec_guest)
        return Exit(ARM_EXCEPTION_TRAP, esr, 0, 0, pc, t)

    def run(self, ctx: VcpuContext, resume: bool = False) -> Exit:
        """__kvm_vcpu_run: called from the highvisor by HVC; returns the next exit.
        `resume`: continue a guest whose turn ended (it never left the pCPU)."""
        self.cpu.run(self._enter_guest(ctx, resume))
        return self.guest_stopped(ctx)

    def _enter_guest(self, ctx: VcpuContext, resume: bool) -> int:
        """Up to the engine's run: the PC it starts from.  (A resume's steps are also
        armvirt/engine_resumes.py's C loop.)"""
        led = self.ledger
        st = self.cpu.st
        if resume:
            pc = self.cpu.pc()
        else:
            if not self.design.host_at_el2:       # split mode: the highvisor HVCs back into EL2
                led.charge_steps(*self._hvc_in_steps)
            self.ws.enter_guest(ctx, self.host)
            self.engine_el2.sync(self.el2)
            led.charge(HW, "ERET to guest", self._c_eret)
            self.entered_at = self.cpu.cycles
            if led.trace is not None:
                led.trace.entry()
            if st.vi_asserted and not ctx.pstate & PSR_I:
                # The core takes the virtual IRQ at once; the fast path charges the entry
                # when the handler's first block starts (it is the hardware that vectors it).
                led.note(HW, "vIRQ: exception entry to EL1 (VBAR_EL1 + 0x280/0x480)", st.virq_entry_cost,
                         at=self.entered_at)
            pc = ctx.pc
        self._exit = None
        st.turn_over = 0
        if self.clear_monitor:
            # An exception return clears the local monitor (which is why arm64 Linux
            # needs no CLREX on kernel_exit); the engine's monitor is value-based, so
            # without this a reservation taken before a turn or exit would survive
            # another vCPU's store of the same value (ABA).  Only when vCPUs share
            # memory and turns: it costs a host round trip.
            self.cpu.clear_exclusive()
        return pc

    def guest_stopped(self, ctx: VcpuContext) -> Exit:
        """The engine stopped: the exit it took, or EXIT_TURN."""
        st = self.cpu.st
        m = self.cpu.take_maintenance()
        if m and self.broadcast is not None:      # HCR_EL2.FB: TLBI and IC reach every pCPU
            self.broadcast(self.cpu, m)
        ex = self._exit
        if ex is None and not st.trap_esr and not st.irq_pending and st.turn_over and not self.cpu.limit_hit:
            return Exit(EXIT_TURN, t_trap=self.cpu.cycles)
        if ex is None and st.trap_esr:
            ex = self._fastpath_trap()
        if ex is None and st.irq_pending:
            st.irq_pending = 0
            ex = self._irq_exit()
        if ex is None:               # stopped without a trap: the instruction limit
            ex = Exit(EXIT_INSN_LIMIT, t_trap=self.cpu.cycles)
        return self._return_to_host(ctx, ex)

    def _irq_exit(self) -> Exit:
        """An IRQ routed to EL2 (HCR_EL2.IMO) was taken at the block boundary."""
        st, led = self.cpu.st, self.ledger
        t = self.cpu.cycles
        led.begin_segment()
        deadline = min(st.timer_deadline if not st.timer_masked else NEVER, st.host_deadline)
        if 0 < deadline <= t:            # a timer, not a line raised "now" (maintenance, IPI)
            led.note(GUEST, "instructions retired from the deadline to the block boundary", t - deadline)
        led.charge(HW, "IRQ: exception entry to EL2 (HCR_EL2.IMO)", self._c_trap)
        led.charge(LOWVISOR, "EL2 vector: IRQ, branch to exit path", self._c_vec_guest)
        return Exit(ARM_EXCEPTION_IRQ, elr=self.cpu.pc(), t_trap=t)

    def _return_to_host(self, ctx: VcpuContext, ex: Exit) -> Exit:
        st = self.cpu.st
        self.ws.exit_guest(ctx, self.host)
        if ex.code == ARM_EXCEPTION_TRAP and st.trap_pc:
            ctx.pc, st.trap_pc = ex.elr, 0   # the core moved past the trapped MSR/MRS
        if not self.design.host_at_el2:           # VHE / type 1: exit handling runs at EL2
            self.ledger.charge(HW, "ERET to highvisor", self._c_eret)
        return ex

    def preempt(self, ctx: VcpuContext) -> Exit:
        """The host's scheduler interrupt arrives for a guest paused at its turn boundary
        (its pCPU is wanted by another vCPU): the IRQ exit it would take right there."""
        self.cpu.st.irq_pending = 0
        return self._return_to_host(ctx, self._irq_exit())
