"""vCPU and host register contexts: what a world switch moves (KVM kvm_cpu_context).

While a vCPU is not running, its state lives here; the register groups are
declared once, and the declarations drive both the move and the charge.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from unicorn import arm64_const as A

from engine import sysreg as S
from engine.regbank import BankSet, RegBank

# General-purpose group (Linux 4.0 hyp.S save_guest_regs/save_common_regs).  The
# guest's PC and PSTATE are ELR_EL2/SPSR_EL2 once it has trapped; SPSR_EL1 goes
# last because only a CP_REG write rebuilds the core's cached EL after PSTATE.
GP_X = tuple(f"x{i}" for i in range(31))
GP_SPECIAL = ("SP_EL0", "SP_EL1", "ELR_EL1", "ELR_EL2", "SPSR_EL2", "SPSR_EL1")
_GP_SPECS = ([A.UC_ARM64_REG_X0 + i for i in range(29)] + [A.UC_ARM64_REG_X29, A.UC_ARM64_REG_X30]
             + [A.UC_ARM64_REG_SP_EL0, A.UC_ARM64_REG_SP_EL1, A.UC_ARM64_REG_ELR_EL1,
                A.UC_ARM64_REG_PC, A.UC_ARM64_REG_PSTATE, S.SPSR_EL1, A.UC_ARM64_REG_SP])
HOST_GP_X = tuple(f"x{i}" for i in range(19, 31))      # callee-saved: the host's x0-x18 are clobbered
# Xen's trap frame (struct cpu_user_regs; xen/arch/arm/arm64/entry.S `entry hyp=0` and
# entry_guest): x0-x29 pushed in pairs, LR stored with the frame's SP slot, ELR_EL2/SPSR_EL2,
# then the guest's SPSR_EL1, SP_EL0, SP_EL1 and ELR_EL1 - nothing else on a trap.
XEN_FRAME_X = tuple(f"x{i}" for i in range(30)) + ("lr",)
XEN_FRAME_SPECIAL = ("ELR_EL2", "SPSR_EL2", "SPSR_EL1", "SP_EL0", "SP_EL1", "ELR_EL1")

FP_Q = tuple(f"q{i}" for i in range(32))
FP_CTRL = ("FPCR", "FPSR")
_FP_SPECS = [("q", A.UC_ARM64_REG_Q0 + i) for i in range(32)] + [A.UC_ARM64_REG_FPCR, A.UC_ARM64_REG_FPSR]

# EL1 system registers (calibration.md; KVM sysreg-sr.h of the measured kernel).
EL1_SYSREGS = (S.VMPIDR_EL2, S.CSSELR_EL1, S.SCTLR_EL1, S.ACTLR_EL1, S.CPACR_EL1, S.TTBR0_EL1,
               S.TTBR1_EL1, S.TCR_EL1, S.ESR_EL1, S.AFSR0_EL1, S.AFSR1_EL1, S.FAR_EL1, S.MAIR_EL1,
               S.VBAR_EL1, S.CONTEXTIDR_EL1, S.TPIDR_EL0, S.TPIDRRO_EL0, S.TPIDR_EL1, S.AMAIR_EL1,
               S.CNTKCTL_EL1, S.PAR_EL1, S.MDSCR_EL1)

# Timer group and EL2 trap configuration: values the lowvisor writes, not engine banks.
TIMER_REGS = ("CNTV_CTL_EL0", "CNTV_CVAL_EL0", "CNTVOFF_EL2", "CNTHCTL_EL2")
TRAP_REGS = ("HCR_EL2", "CPTR_EL2", "HSTR_EL2", "MDCR_EL2")


_SP = len(GP_X) + 6
# slots of plain registers in a RegBank's storage (two 64-bit words per entry)
_SP_EL0_SLOT, _SP_EL1_SLOT, _PSTATE_SLOT, _SP_SLOT = 2 * len(GP_X), 2 * (len(GP_X) + 1), 2 * 35, 2 * _SP


def gp_bank() -> RegBank:
    # "sp": the engine's live stack pointer.  The core keeps the SP of the current
    # mode in X31 and copies it to SP_EL0/SP_EL1 only on exception entry and return,
    # which the core never performs for armvirt's traps: VcpuContext fixes them up.
    names = GP_X + ("SP_EL0", "SP_EL1", "ELR_EL1", "pc", "pstate", "SPSR_EL1", "sp")
    return RegBank(names, _GP_SPECS)


def fp_bank() -> RegBank:
    return RegBank(FP_Q + FP_CTRL, _FP_SPECS)


def el1_bank() -> RegBank:
    return RegBank([r.name for r in EL1_SYSREGS], EL1_SYSREGS)


@dataclass
class TimerState:
    cntv_ctl: int = 0
    cntv_cval: int = 0
    cntvoff: int = 0
    cnthctl: int = 0


@dataclass
class TrapConfig:
    hcr: int = 0
    cptr: int = 0
    hstr: int = 0
    mdcr: int = 0


class VcpuContext:
    """Guest state of one vCPU while it is not on a pCPU."""

    def __init__(self, vgic_state, trap: TrapConfig, vttbr: int):
        self.gp = gp_bank()
        self.fp = fp_bank()
        self.el1 = el1_bank()
        # One raw call moves all three; GP last, so its trailing CP_REG write rebuilds the EL flags.
        self.engine_banks = BankSet(self.el1, self.fp, self.gp)
        self._gp_plain = self.gp._plain
        self.timer = TimerState()
        self.vgic = vgic_state
        self.trap = trap
        self.vttbr = vttbr

    # The live SP is SP_EL1 at EL1 with SPSel = 1, else SP_EL0 (ARM ARM D1.6.2).  These
    # run on every world switch: plain 64-bit slots of the GP bank, no lookups.
    def after_engine_read(self) -> None:
        v = self._gp_plain
        p = v[_PSTATE_SLOT]
        v[_SP_EL1_SLOT if (p & 0b1101) == 0b0101 else _SP_EL0_SLOT] = v[_SP_SLOT]

    def before_engine_write(self) -> None:
        v = self._gp_plain
        p = v[_PSTATE_SLOT]
        v[_SP_SLOT] = v[_SP_EL1_SLOT if (p & 0b1101) == 0b0101 else _SP_EL0_SLOT]

    # Convenience accessors used by exit handlers (KVM vcpu_get_reg/vcpu_set_reg).
    def x(self, n: int) -> int:
        return 0 if n == 31 else self.gp[n]

    def set_x(self, n: int, value: int) -> None:
        if n != 31:                       # XZR
            self.gp[n] = value

    @property
    def pc(self) -> int:
        return self.gp[34]

    @pc.setter
    def pc(self, value: int) -> None:
        self.gp[34] = value

    @property
    def pstate(self) -> int:
        return self.gp[35]

    @pstate.setter
    def pstate(self, value: int) -> None:
        self.gp[35] = value


@dataclass
class HostContext:
    """The highvisor's own EL1 state.  The host runs as Python, not on the engine,
    so its registers are values the world switch saves and restores by copy;
    the cycles are charged all the same, as on hardware."""
    gp: list = field(default_factory=lambda: [0] * (len(HOST_GP_X) + len(GP_SPECIAL)))
    fp: list = field(default_factory=lambda: [0] * (len(FP_Q) + len(FP_CTRL)))
    el1: list = field(default_factory=lambda: [0] * len(EL1_SYSREGS))
    saved_gp: list = field(default_factory=list)
    saved_fp: list = field(default_factory=list)
    saved_el1: list = field(default_factory=list)
    trap: TrapConfig = field(default_factory=TrapConfig)
    cnthctl: int = 0
