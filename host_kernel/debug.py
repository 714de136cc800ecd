"""The guest's self-hosted debug (ARM ARM D2) as far as the engine models it
(KVM's counterpart: arch/arm64/kvm/debug.c).

The debug registers are not trapped (MDCR_EL2.TDA/TDOSA clear) and stay in the
engine, which honours breakpoints (DBGBCRn/DBGBVRn: a Breakpoint exception, EC
0x31, as a core takes it) but not the rest (measured on Unicorn 2.1.4 with a
bare core at EL1, MDSCR_EL1.KDE/MDE set, PSTATE.D clear): an enabled watchpoint
(DBGWCRn_EL1.E) never raises a Watchpoint exception (EC 0x35), and
MDSCR_EL1.SS never raises a Software Step exception (EC 0x33), in the
active-pending state or after a stepped instruction.  The guest's program runs
on as if no debug event were programmed; a guest relying on them waits for an
exception that never comes.  That is armvirt not modelling an architectural
feature, so it is logged under `-d unimp`, once per vCPU and feature, at the
first exit that finds it enabled (the registers are read from the context the
exit saved and from the engine: nothing is charged, no figure changes).
"""
from __future__ import annotations

from engine.sysreg import SysReg

MDSCR_SS = 1 << 0           # D17.3.23 MDSCR_EL1.SS: software step control
MDSCR_MDE = 1 << 15         # MDSCR_EL1.MDE: breakpoint, watchpoint (and vector catch) enable
DBGWCR_E = 1 << 0           # D17.3.12 DBGWCRn_EL1.E: watchpoint enabled
ID_AA64DFR0_EL1 = SysReg(3, 0, 0, 5, 0, "ID_AA64DFR0_EL1")


def dbgwcr(n: int) -> SysReg:
    """DBGWCRn_EL1: op0 2, op1 0, CRn 0, CRm n, op2 7."""
    return SysReg(2, 0, 0, n, 7, f"DBGWCR{n}_EL1")


def num_watchpoints(cpu) -> int:
    """ID_AA64DFR0_EL1.WRPs (bits 23:20) + 1."""
    return ((cpu.read_sysreg(ID_AA64DFR0_EL1) >> 20) & 0xF) + 1


def unmodeled_debug(vcpu) -> list[str]:
    """What the guest's debug state asks for that the engine will not do."""
    mdscr = vcpu.ctx.el1.get("MDSCR_EL1")
    found = []
    if mdscr & MDSCR_SS:
        found.append("MDSCR_EL1.SS is set: software step is not modeled (the core takes no "
                      "Software Step exception, EC 0x33)")
    if mdscr & MDSCR_MDE:
        cpu = vcpu.cpu
        on = [n for n in range(num_watchpoints(cpu)) if cpu.read_sysreg(dbgwcr(n)) & DBGWCR_E]
        if on:
            names = ", ".join(f"DBGWCR{n}_EL1" for n in on)
            found.append(f"MDSCR_EL1.MDE with {names}.E set: watchpoints are not modeled (the core "
                         "takes no Watchpoint exception, EC 0x35)")
    return found


def check_guest_debug(vcpu) -> None:
    """At an exit: log (once per vCPU and feature) a debug feature the guest enabled
    that the engine does not model.  The common case is one bit test."""
    mdscr = vcpu.ctx.el1.get("MDSCR_EL1")
    if not mdscr & (MDSCR_SS | MDSCR_MDE):
        return
    for msg in unmodeled_debug(vcpu):
        if msg not in vcpu.debug_logged:
            vcpu.debug_logged.add(msg)
            vcpu.unimplemented(msg)
