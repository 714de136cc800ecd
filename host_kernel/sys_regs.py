"""Trapped system-register accesses (EC 0x18) as a sorted table keyed by
(op0, op1, CRn, CRm, op2), each entry with an accessor and a reset value
(KVM sys_regs.c).  The order is checked at import."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from engine.sysreg import (ACTLR_EL1, CNTP_CTL_EL0, CNTP_CVAL_EL0, CNTP_TVAL_EL0, CNTV_CTL_EL0,
                           CNTV_CVAL_EL0, CNTV_TVAL_EL0, SysReg)
from el2.syndrome import SysRegAccess

Accessor = Callable[["object", SysRegAccess, "SysRegDesc"], Optional[int]]


@dataclass(frozen=True)
class SysRegDesc:
    reg: SysReg
    access: Accessor
    reset: int = 0


def access_actlr(vcpu, p: SysRegAccess, r: SysRegDesc) -> Optional[int]:
    """ACTLR_EL1 (trapped by HCR_EL2.TACR): reads its value, writes are ignored, as KVM."""
    return vcpu.ctx.el1.get("ACTLR_EL1") if p.is_read else None


# ID register fields the VM's configuration decides (ARM ARM D17.2; KVM read_id_reg).
ID_AA64PFR0_EL1 = (3, 0, 0, 4, 0)
ID_AA64DFR0_EL1 = (3, 0, 0, 5, 0)
ID_PFR1_EL1 = (3, 0, 0, 1, 1)
ID_DFR0_EL1 = (3, 0, 0, 1, 2)


def _field(value: int, shift: int, new: int) -> int:
    return (value & ~(0xF << shift)) | (new << shift)


def _gicv3(vcpu) -> int:
    """GIC field: 1 = the GICv3 system-register CPU interface (ICC_*) is there."""
    return 1 if vcpu.vm.gic_version == 3 else 0


# key -> (field shift, the VM's value of that field)
ID_FIELDS = {
    ID_AA64PFR0_EL1: ((24, _gicv3),),
    ID_PFR1_EL1: ((28, _gicv3),),                     # the AArch32 view of the same
    ID_AA64DFR0_EL1: ((8, lambda vcpu: 0),),          # PMUVer: no PMU on this board
    ID_DFR0_EL1: ((24, lambda vcpu: 0),),             # PerfMon, AArch32
}


def access_id_reg(vcpu, p: SysRegAccess, r: SysRegDesc) -> Optional[int]:
    """ID group 3 (HCR_EL2.TID3): the core's own value, with the fields the VM decides.
    The core's model defines the instruction set, so ISA fields pass through (LSE
    atomics, for one, only where the core has them).  An encoding of this space the
    core does not implement reads as zero: the ARM ARM reserves them RAZ."""
    if not p.is_read:                   # read-only; TID3 traps reads only
        raise UndefinedAccess(r.reg)
    try:
        value = vcpu.cpu.read_sysreg(r.reg)
    except Exception:                   # unicorn.UcError: not in the core's model
        return 0
    for shift, field in ID_FIELDS.get(r.reg.key, ()):
        value = _field(value, shift, field(vcpu))
    return value


def access_dcsw(vcpu, p: SysRegAccess, r: SysRegDesc) -> Optional[int]:
    """DC ISW/CSW/CISW (HCR_EL2.TSW): set/way maintenance is meaningless to a guest whose
    caches are virtual; the engine models no caches, so there is nothing to clean."""
    if p.is_read:
        return None
    vcpu.vm.counters["dc_sw"] += 1
    return None


def _timer(name: str, field: str):
    """CNTP_* (always trapped) and CNTV_* (trapped with --no-vtimer) on the emulated timer."""
    def access(vcpu, p: SysRegAccess, r: SysRegDesc) -> Optional[int]:
        t = vcpu.emulated_timer(name)
        if t is None:
            return None
        value = None if p.is_read else vcpu.ctx.x(p.rt)
        return getattr(t, "access_" + field)(p.is_read, value)
    return access


def _sgi(allow_group1: bool):
    """ICC_SGI1R_EL1, ICC_ASGI1R_EL1, ICC_SGI0R_EL1 (trapped by HCR_EL2.IMO/FMO, IHI 0069
    12.1.8): generate the SGI in the vGIC, as KVM's access_gic_sgi - only SGI1R may set a
    group 1 SGI pending.  They are write-only: a read is UNDEFINED."""
    def access(vcpu, p: SysRegAccess, r: SysRegDesc) -> Optional[int]:
        if p.is_read:
            raise UndefinedAccess(r.reg)
        vcpu.vm.vgic.send_sgi_v3(vcpu.index, vcpu.ctx.x(p.rt), allow_group1=allow_group1)   # kicks via on_kick
        return None
    return access


class UndefinedAccess(Exception):
    """The accessor found the access UNDEFINED: the caller injects UNDEF."""


def access_icc_emulated(vcpu, p: SysRegAccess, r: SysRegDesc) -> Optional[int]:
    """--no-vgic on GICv3: the CPU interface register, emulated in software."""
    if vcpu.emul_cpuif is None or not hasattr(vcpu.emul_cpuif, "sysreg"):
        return 0 if p.is_read else None
    value = None if p.is_read else vcpu.ctx.x(p.rt)
    result = vcpu.emul_cpuif.sysreg(p.key, p.is_read, value)
    vcpu.set_soft_virq()
    return result


# ICC_* registers a guest may touch (IHI 0069 12.2); trapped only with --no-vgic.
ICC_REGS = {"ICC_PMR_EL1": (3, 0, 4, 6, 0), "ICC_IAR0_EL1": (3, 0, 12, 8, 0), "ICC_EOIR0_EL1": (3, 0, 12, 8, 1),
            "ICC_HPPIR0_EL1": (3, 0, 12, 8, 2), "ICC_BPR0_EL1": (3, 0, 12, 8, 3),
            **{f"ICC_AP0R{n}_EL1": (3, 0, 12, 8, 4 + n) for n in range(4)},
            **{f"ICC_AP1R{n}_EL1": (3, 0, 12, 9, n) for n in range(4)},
            "ICC_DIR_EL1": (3, 0, 12, 11, 1), "ICC_RPR_EL1": (3, 0, 12, 11, 3),
            "ICC_IAR1_EL1": (3, 0, 12, 12, 0), "ICC_EOIR1_EL1": (3, 0, 12, 12, 1),
            "ICC_HPPIR1_EL1": (3, 0, 12, 12, 2), "ICC_BPR1_EL1": (3, 0, 12, 12, 3),
            "ICC_CTLR_EL1": (3, 0, 12, 12, 4), "ICC_SRE_EL1": (3, 0, 12, 12, 5),
            "ICC_IGRPEN0_EL1": (3, 0, 12, 12, 6), "ICC_IGRPEN1_EL1": (3, 0, 12, 12, 7)}


def _sys(name: str, op0, op1, crn, crm, op2) -> SysReg:
    return SysReg(op0, op1, crn, crm, op2, name)


# The ID register space trapped by TID3: op0 3, op1 0, CRn 0, CRm 1-7.
ID_REG_NAMES = {(3, 0, 0, 1, 0): "ID_PFR0_EL1", ID_PFR1_EL1: "ID_PFR1_EL1", ID_DFR0_EL1: "ID_DFR0_EL1",
                ID_AA64PFR0_EL1: "ID_AA64PFR0_EL1", (3, 0, 0, 4, 1): "ID_AA64PFR1_EL1",
                ID_AA64DFR0_EL1: "ID_AA64DFR0_EL1", (3, 0, 0, 5, 1): "ID_AA64DFR1_EL1",
                (3, 0, 0, 6, 0): "ID_AA64ISAR0_EL1", (3, 0, 0, 6, 1): "ID_AA64ISAR1_EL1",
                (3, 0, 0, 7, 0): "ID_AA64MMFR0_EL1", (3, 0, 0, 7, 1): "ID_AA64MMFR1_EL1",
                (3, 0, 0, 7, 2): "ID_AA64MMFR2_EL1"}

SYS_REG_DESCS = (
    SysRegDesc(_sys("DC ISW", 1, 0, 7, 6, 2), access_dcsw),
    SysRegDesc(_sys("DC CSW", 1, 0, 7, 10, 2), access_dcsw),
    SysRegDesc(_sys("DC CISW", 1, 0, 7, 14, 2), access_dcsw),
    *(SysRegDesc(SysReg(3, 0, 0, crm, op2, ID_REG_NAMES.get((3, 0, 0, crm, op2), "")), access_id_reg)
      for crm in range(1, 8) for op2 in range(8)),
    SysRegDesc(ACTLR_EL1, access_actlr),
    *sorted((SysRegDesc(SysReg(*k, n), access_icc_emulated) for n, k in ICC_REGS.items()
             if k < (3, 0, 12, 11, 5)), key=lambda d: d.reg.key),
    SysRegDesc(SysReg(3, 0, 12, 11, 5, "ICC_SGI1R_EL1"), _sgi(allow_group1=True)),
    *sorted((SysRegDesc(SysReg(*k, n), access_icc_emulated) for n, k in ICC_REGS.items()
             if k > (3, 0, 12, 11, 5)), key=lambda d: d.reg.key),
    SysRegDesc(SysReg(3, 1, 12, 11, 6, "ICC_ASGI1R_EL1"), _sgi(allow_group1=False)),
    SysRegDesc(SysReg(3, 2, 12, 11, 7, "ICC_SGI0R_EL1"), _sgi(allow_group1=False)),
    SysRegDesc(CNTP_TVAL_EL0, _timer("ptimer", "tval")),
    SysRegDesc(CNTP_CTL_EL0, _timer("ptimer", "ctl")),
    SysRegDesc(CNTP_CVAL_EL0, _timer("ptimer", "cval")),
    SysRegDesc(CNTV_TVAL_EL0, _timer("vtimer", "tval")),
    SysRegDesc(CNTV_CTL_EL0, _timer("vtimer", "ctl")),
    SysRegDesc(CNTV_CVAL_EL0, _timer("vtimer", "cval")),
)

for _a, _b in zip(SYS_REG_DESCS, SYS_REG_DESCS[1:]):
    assert _a.reg.key < _b.reg.key, f"sys_reg table out of order at {_a.reg} / {_b.reg}"

BY_KEY = {d.reg.key: d for d in SYS_REG_DESCS}


def find(p: SysRegAccess) -> SysRegDesc | None:
    return BY_KEY.get(p.key)
