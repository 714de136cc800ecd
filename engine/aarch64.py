"""Architectural helpers shared by the engine and the hypervisor: PSTATE
fields and exception entry to EL1 (ARM ARM D1.10, "Exception entry")."""
from __future__ import annotations

# PSTATE / SPSR fields (ARM ARM C5.2.18).
PSR_MODE_MASK = 0xF
PSR_MODE_EL0t, PSR_MODE_EL1t, PSR_MODE_EL1h, PSR_MODE_EL2h = 0x0, 0x4, 0x5, 0x9
PSR_F, PSR_I, PSR_A, PSR_D = 1 << 6, 1 << 7, 1 << 8, 1 << 9
PSR_DAIF = PSR_D | PSR_A | PSR_I | PSR_F
PSR_IL, PSR_SS = 1 << 20, 1 << 21

# Vector table offsets (ARM ARM D1.10.2, Table D1-7).
VEC_CURRENT_SP0, VEC_CURRENT_SPX, VEC_LOWER_A64, VEC_LOWER_A32 = 0x000, 0x200, 0x400, 0x600
VEC_SYNC, VEC_IRQ, VEC_FIQ, VEC_SERROR = 0x000, 0x080, 0x100, 0x180

RESET_PSTATE = PSR_MODE_EL1h | PSR_DAIF      # boot contract: EL1h, DAIF masked


def current_el(pstate: int) -> int:
    return (pstate >> 2) & 3


def uses_sp_el1(pstate: int) -> bool:
    """The live stack pointer is SP_EL1: EL1 with SPSel = 1 (EL1h; ARM ARM D1.6.2)."""
    return (pstate & 0b1101) == PSR_MODE_EL1h


def vector_offset_el1(pstate: int, kind: int = VEC_SYNC) -> int:
    """Offset into VBAR_EL1 for an exception taken to EL1 from `pstate`."""
    if current_el(pstate) == 0:
        return VEC_LOWER_A64 + kind
    return (VEC_CURRENT_SPX if pstate & 1 else VEC_CURRENT_SP0) + kind


def el1_entry_pstate(pstate: int) -> int:
    """PSTATE after taking an exception to EL1: EL1h, DAIF set, SS and IL cleared."""
    return PSR_MODE_EL1h | PSR_DAIF
