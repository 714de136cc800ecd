"""System register encodings (op0, op1, CRn, CRm, op2) as the ARM ARM names them.

Unicorn orders the fields (crn, crm, op0, op1, op2); `SysReg.uc` is the one
place that converts.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class SysReg:
    op0: int
    op1: int
    crn: int
    crm: int
    op2: int
    name: str = ""

    @property
    def key(self) -> tuple[int, int, int, int, int]:
        return (self.op0, self.op1, self.crn, self.crm, self.op2)

    @property
    def uc(self) -> tuple[int, int, int, int, int]:
        return (self.crn, self.crm, self.op0, self.op1, self.op2)

    def __str__(self) -> str:
        return self.name or "S%d_%d_C%d_C%d_%d" % self.key


def _r(name: str, op0: int, op1: int, crn: int, crm: int, op2: int) -> SysReg:
    return SysReg(op0, op1, crn, crm, op2, name)


# EL1 / EL0 registers a world switch moves (KVM sysreg-sr.h, Linux 4.0 hyp.S).
MPIDR_EL1 = _r("MPIDR_EL1", 3, 0, 0, 0, 5)
CSSELR_EL1 = _r("CSSELR_EL1", 3, 2, 0, 0, 0)
SCTLR_EL1 = _r("SCTLR_EL1", 3, 0, 1, 0, 0)
ACTLR_EL1 = _r("ACTLR_EL1", 3, 0, 1, 0, 1)
CPACR_EL1 = _r("CPACR_EL1", 3, 0, 1, 0, 2)
TTBR0_EL1 = _r("TTBR0_EL1", 3, 0, 2, 0, 0)
TTBR1_EL1 = _r("TTBR1_EL1", 3, 0, 2, 0, 1)
TCR_EL1 = _r("TCR_EL1", 3, 0, 2, 0, 2)
SPSR_EL1 = _r("SPSR_EL1", 3, 0, 4, 0, 0)
ESR_EL1 = _r("ESR_EL1", 3, 0, 5, 2, 0)
AFSR0_EL1 = _r("AFSR0_EL1", 3, 0, 5, 1, 0)
AFSR1_EL1 = _r("AFSR1_EL1", 3, 0, 5, 1, 1)
FAR_EL1 = _r("FAR_EL1", 3, 0, 6, 0, 0)
PAR_EL1 = _r("PAR_EL1", 3, 0, 7, 4, 0)
MAIR_EL1 = _r("MAIR_EL1", 3, 0, 10, 2, 0)
AMAIR_EL1 = _r("AMAIR_EL1", 3, 0, 10, 3, 0)
VBAR_EL1 = _r("VBAR_EL1", 3, 0, 12, 0, 0)
CONTEXTIDR_EL1 = _r("CONTEXTIDR_EL1", 3, 0, 13, 0, 1)
TPIDR_EL0 = _r("TPIDR_EL0", 3, 3, 13, 0, 2)
TPIDRRO_EL0 = _r("TPIDRRO_EL0", 3, 3, 13, 0, 3)
TPIDR_EL1 = _r("TPIDR_EL1", 3, 0, 13, 0, 4)
CNTKCTL_EL1 = _r("CNTKCTL_EL1", 3, 0, 14, 1, 0)
MDSCR_EL1 = _r("MDSCR_EL1", 2, 0, 0, 2, 2)

# Generic timer (EL0 view).
CNTFRQ_EL0 = _r("CNTFRQ_EL0", 3, 3, 14, 0, 0)
CNTPCT_EL0 = _r("CNTPCT_EL0", 3, 3, 14, 0, 1)
CNTVCT_EL0 = _r("CNTVCT_EL0", 3, 3, 14, 0, 2)
CNTP_TVAL_EL0 = _r("CNTP_TVAL_EL0", 3, 3, 14, 2, 0)
CNTP_CTL_EL0 = _r("CNTP_CTL_EL0", 3, 3, 14, 2, 1)
CNTP_CVAL_EL0 = _r("CNTP_CVAL_EL0", 3, 3, 14, 2, 2)
CNTV_TVAL_EL0 = _r("CNTV_TVAL_EL0", 3, 3, 14, 3, 0)
CNTV_CTL_EL0 = _r("CNTV_CTL_EL0", 3, 3, 14, 3, 1)
CNTV_CVAL_EL0 = _r("CNTV_CVAL_EL0", 3, 3, 14, 3, 2)

# EL2 and EL3.
VPIDR_EL2 = _r("VPIDR_EL2", 3, 4, 0, 0, 0)
VMPIDR_EL2 = _r("VMPIDR_EL2", 3, 4, 0, 0, 5)
HCR_EL2 = _r("HCR_EL2", 3, 4, 1, 1, 0)
MDCR_EL2 = _r("MDCR_EL2", 3, 4, 1, 1, 1)
CPTR_EL2 = _r("CPTR_EL2", 3, 4, 1, 1, 2)
HSTR_EL2 = _r("HSTR_EL2", 3, 4, 1, 1, 3)
VTTBR_EL2 = _r("VTTBR_EL2", 3, 4, 2, 1, 0)
VTCR_EL2 = _r("VTCR_EL2", 3, 4, 2, 1, 2)
SPSR_EL2 = _r("SPSR_EL2", 3, 4, 4, 0, 0)
ELR_EL2 = _r("ELR_EL2", 3, 4, 4, 0, 1)
ESR_EL2 = _r("ESR_EL2", 3, 4, 5, 2, 0)
FAR_EL2 = _r("FAR_EL2", 3, 4, 6, 0, 0)
HPFAR_EL2 = _r("HPFAR_EL2", 3, 4, 6, 0, 4)
VBAR_EL2 = _r("VBAR_EL2", 3, 4, 12, 0, 0)
CNTHCTL_EL2 = _r("CNTHCTL_EL2", 3, 4, 14, 1, 0)
CNTVOFF_EL2 = _r("CNTVOFF_EL2", 3, 4, 14, 0, 3)
SCR_EL3 = _r("SCR_EL3", 3, 6, 1, 1, 0)
