"""The lowvisor: the thin part of split-mode KVM/ARM that runs at EL2.

It does world switches and trap plumbing only.  `run()` is __kvm_vcpu_run:
the highvisor calls it (through an HVC, charged), it switches to the guest,
lets the engine execute until an exception targets EL2, switches back and
returns the exit to the highvisor - as KVM returns an exception code to
handle_exit.  It never decides what an exit means.
"""
from __future__ import annotations

from dataclasses import dataclass

from unicorn import arm64_const as A

from engine.core import PhysicalCpu
from engine.ledger import GUEST, HW, LOWVISOR, Ledger
from engine.regbank import RegBank
from engine import sysreg as S
from el2 import syndrome as syn
from el2.context import HostContext, VcpuContext
from el2.regs import El2Regs, EngineEl2
from el2.world_switch import WorldSwitch
from gic.v2_hyp import GichV2

# Exit codes (KVM's ARM_EXCEPTION_*), plus the engine's instruction limit.
ARM_EXCEPTION_TRAP = 1
ARM_EXCEPTION_IRQ = 0
EXIT_INSN_LIMIT = -1


@dataclass(frozen=True)
class Exit:
    code: int
    esr: int = 0
    far: int = 0
    hpfar: int = 0
    elr: int = 0
    t_trap: int = 0        # cycles when the exception was taken

    @property
    def ec(self) -> int:
        return syn.ec_of(self.esr)


class Lowvisor:
    def __init__(self, cpu: PhysicalCpu, ledger: Ledger, gich: GichV2):
        self.cpu, self.ledger = cpu, ledger
        self.el2 = El2Regs()
        self.engine_el2 = EngineEl2(cpu)
        self.host = HostContext()
        self.ws = WorldSwitch(cpu, ledger, self.el2, gich)
        self._exit: Exit | None = None
        self.entered_at = 0
        self._hpfar = RegBank(["HPFAR_EL2"], [S.HPFAR_EL2])
        self._pstate = RegBank(["pstate"], [A.UC_ARM64_REG_PSTATE])
        cpu.el2_vector = self._el2_vector
        c = ledger.costs
        self._c_trap, self._c_eret = c["exc_entry_el2"], c["eret"]
        self._c_vec_guest, self._c_vec_host = c["el2_vector_guest"], c["el2_vector_host"]

    # The EL2 vector: exception entry to EL2 (ARM ARM D1.10), then the lowvisor's vector code.
    def _el2_vector(self, intno: int, syndrome: int, vaddress: int, pc: int) -> None:
        t = self.cpu.cycles
        led = self.ledger
        led.begin_segment()
        if syn.ec_of(syndrome) == syn.EC_HVC64:
            led.note(GUEST, f"HVC #{syndrome & 0xFFFF:#x} (1 instruction)", self.cpu.st.cpi)
        led.charge(HW, "exception entry to EL2", self._c_trap)
        e = self.el2
        self._pstate.read(self.cpu.uch)
        e.esr, e.far, e.elr, e.spsr = syndrome, vaddress, pc, self._pstate[0]
        if syn.ec_of(syndrome) in (syn.EC_DABT_LOW, syn.EC_IABT_LOW):
            self._hpfar.read(self.cpu.uch)        # the core fills HPFAR_EL2 for stage-2 faults
            e.hpfar = self._hpfar[0]
        led.charge(LOWVISOR, "EL2 vector: read ESR_EL2, branch to exit path", self._c_vec_guest)
        self._exit = Exit(ARM_EXCEPTION_TRAP, e.esr, e.far, e.hpfar, e.elr, t)
        self.cpu.stop()

    def _guest_pc(self) -> int:
        return self.cpu.uc.reg_read(A.UC_ARM64_REG_PC)

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

    def run(self, ctx: VcpuContext) -> Exit:
        """__kvm_vcpu_run: called from the highvisor by HVC; returns the next exit."""
        led = self.ledger
        led.charge(HW, "HVC from highvisor: exception entry to EL2", self._c_trap)
        led.charge(LOWVISOR, "EL2 vector: host HVC, dispatch to __kvm_vcpu_run", self._c_vec_host)
        self.ws.enter_guest(ctx, self.host)
        self.engine_el2.sync(self.el2)
        led.charge(HW, "ERET to guest", self._c_eret)
        self.entered_at = self.cpu.cycles
        self._exit = None
        st = self.cpu.st
        self.cpu.run(ctx.pc)
        ex = self._exit
        if ex is None and st.trap_esr:
            ex = self._fastpath_trap()
        if ex is None and st.irq_pending:
            st.irq_pending = 0
            t = self.cpu.cycles
            led.begin_segment()
            led.charge(HW, "IRQ: exception entry to EL2 (HCR_EL2.IMO)", self._c_trap)
            led.charge(LOWVISOR, "EL2 vector: IRQ, branch to exit path", self._c_vec_guest)
            ex = Exit(ARM_EXCEPTION_IRQ, elr=self._guest_pc(), t_trap=t)
        if ex is None:               # stopped without a trap: the instruction limit
            ex = Exit(EXIT_INSN_LIMIT, t_trap=self.cpu.cycles)
        self.ws.exit_guest(ctx, self.host)
        if ex.code == ARM_EXCEPTION_TRAP and st.trap_pc:
            ctx.pc, st.trap_pc = ex.elr, 0   # the core moved past the trapped MSR/MRS
        led.charge(HW, "ERET to highvisor", self._c_eret)
        return ex
