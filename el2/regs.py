"""The EL2 register file the lowvisor owns.

Exception-entry registers (ESR/FAR/HPFAR/ELR/SPSR_EL2) are written here by the
modeled exception entry; the trap and stage-2 controls are pushed into the
engine, which honours them (HCR_EL2 traps, the stage-2 walk), when a guest is
entered.
"""
from __future__ import annotations

from dataclasses import dataclass

from engine import sysreg as S
from el2.hcr import SCR_EL3_NS_HCE_RW
from el2.stage2 import VTCR_VALUE


@dataclass
class El2Regs:
    hcr: int = 0
    cptr: int = 0
    hstr: int = 0
    mdcr: int = 0
    vttbr: int = 0
    vtcr: int = VTCR_VALUE
    cnthctl: int = 0
    esr: int = 0
    far: int = 0
    hpfar: int = 0
    elr: int = 0
    spsr: int = 0


class EngineEl2:
    """The engine's copy of the controls it acts on; written only when they change."""
    CONTROLS = (("hcr", S.HCR_EL2), ("cptr", S.CPTR_EL2), ("hstr", S.HSTR_EL2), ("mdcr", S.MDCR_EL2),
                ("vtcr", S.VTCR_EL2), ("cnthctl", S.CNTHCTL_EL2))

    def __init__(self, cpu):
        self.cpu = cpu
        cpu.write_sysreg(S.SCR_EL3, SCR_EL3_NS_HCE_RW)
        self.loaded = {name: None for name, _ in self.CONTROLS}
        self.loaded["vttbr"] = None

    def sync(self, regs: El2Regs) -> None:
        for name, reg in self.CONTROLS:
            v = getattr(regs, name)
            if self.loaded[name] != v:
                self.cpu.write_sysreg(reg, v)
                self.loaded[name] = v
        if self.loaded["vttbr"] != regs.vttbr:
            self.cpu.write_sysreg(S.VTTBR_EL2, regs.vttbr)
            # The engine's TLB is not tagged by VMID: a new VTTBR must not hit old entries.
            self.cpu.flush_tlb()
            self.loaded["vttbr"] = regs.vttbr
