"""The EL2 register file the lowvisor owns.

Exception-entry registers (ESR/FAR/HPFAR/ELR/SPSR_EL2) are written here by the
modeled exception entry; the trap and stage-2 controls are pushed into the
engine, which honours them (HCR_EL2 traps, the stage-2 walk), when a guest is
entered.
"""
from __future__ import annotations

from dataclasses import dataclass

from engine import sysreg as S
from el2.hcr import HCR_VI, SCR_EL3_NS_HCE_RW
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
        self.regs: El2Regs | None = None
        self._last: tuple | None = None
        self.virq_line = False      # the GIC's virtual IRQ output, ORed with HCR_EL2.VI

    def set_virq_line(self, level: bool) -> None:
        """The vGIC hardware raises or lowers the virtual IRQ while the guest runs.
        The core has only HCR_EL2.VI as its virtual IRQ input, so the wire is ORed in."""
        if level != self.virq_line:
            self.virq_line = level
            if self.regs is not None:
                self.sync(self.regs)

    def effective_hcr(self, regs: El2Regs) -> int:
        return regs.hcr | (HCR_VI if self.virq_line else 0)

    def sync(self, regs: El2Regs) -> None:
        self.regs = regs
        key = (regs.hcr, regs.cptr, regs.hstr, regs.mdcr, regs.vtcr, regs.cnthctl, regs.vttbr, self.virq_line)
        if key == self._last:
            return                               # the engine already holds every control
        self._last = key
        for name, reg in self.CONTROLS:
            v = self.effective_hcr(regs) if name == "hcr" else getattr(regs, name)
            if self.loaded[name] != v:
                self.cpu.write_sysreg(reg, v)
                self.loaded[name] = v
                if name == "hcr":
                    self.cpu.st.vi_asserted = int(bool(v & HCR_VI))
        if self.loaded["vttbr"] != regs.vttbr:
            self.cpu.write_sysreg(S.VTTBR_EL2, regs.vttbr)
            # The engine's TLB is not tagged by VMID: a new VTTBR must not hit old entries.
            # Nor is its translated code: a TB is found by virtual PC, so another VM's
            # code at the same IPA would run (measured: two VMs on one pCPU); drop it all.
            self.cpu.flush_tlb()
            self.cpu.drop_code()
            self.loaded["vttbr"] = regs.vttbr
