"""ESR_ELx syndromes: one constructor per kind, named after the ARM ARM
(DDI 0487, D17.2.37 "ESR_EL2"), in the manner of QEMU target/arm/syndrome.h."""
from __future__ import annotations

from dataclasses import dataclass

# Exception classes, ESR_ELx.EC (bits [31:26]).
EC_UNKNOWN = 0x00
EC_WFX = 0x01
EC_CP15_32 = 0x03
EC_FP_ASIMD = 0x07
EC_ILLEGAL_STATE = 0x0E
EC_SVC64 = 0x15
EC_HVC64 = 0x16
EC_SMC64 = 0x17
EC_SYS64 = 0x18
EC_IABT_LOW = 0x20
EC_IABT_CUR = 0x21
EC_PC_ALIGN = 0x22
EC_DABT_LOW = 0x24
EC_DABT_CUR = 0x25
EC_SP_ALIGN = 0x26
EC_SERROR = 0x2F
EC_BRK64 = 0x3C

# KVM's names (arch/arm64/include/asm/kvm_arm.h, ESR_ELx_EC_*), used in exit statistics.
EC_NAMES = {EC_UNKNOWN: "UNKNOWN", EC_WFX: "WFx", EC_CP15_32: "CP15_32", EC_FP_ASIMD: "FP_ASIMD",
            EC_ILLEGAL_STATE: "ILL", EC_SVC64: "SVC64", EC_HVC64: "HVC64", EC_SMC64: "SMC64",
            EC_SYS64: "SYS64", EC_IABT_LOW: "IABT_LOW", EC_IABT_CUR: "IABT_CUR",
            EC_PC_ALIGN: "PC_ALIGN", EC_DABT_LOW: "DABT_LOW", EC_DABT_CUR: "DABT_CUR",
            EC_SP_ALIGN: "SP_ALIGN", EC_SERROR: "SERROR", EC_BRK64: "BRK64"}

IL = 1 << 25          # 32-bit instruction

# Fault status codes (DFSC/IFSC, ISS bits [5:0]).
FSC_ADDR_SIZE = 0x00      # + level
FSC_TRANSLATION = 0x04    # + level
FSC_ACCESS = 0x08         # + level
FSC_PERMISSION = 0x0C     # + level
FSC_SEA = 0x10            # synchronous external abort, not on a table walk
FSC_ALIGNMENT = 0x21


def ec_of(esr: int) -> int:
    return (esr >> 26) & 0x3F


def esr(ec: int, iss: int, il: bool = True) -> int:
    return (ec << 26) | (IL if il else 0) | (iss & 0x1FFFFFF)


def syn_uncategorized() -> int:
    """EC 0x00: an UNDEFINED instruction (what KVM's inject_undef uses)."""
    return esr(EC_UNKNOWN, 0)


def syn_aa64_hvc(imm16: int) -> int:
    return esr(EC_HVC64, imm16 & 0xFFFF)


def syn_aa64_smc(imm16: int) -> int:
    return esr(EC_SMC64, imm16 & 0xFFFF)


def syn_aa64_svc(imm16: int) -> int:
    return esr(EC_SVC64, imm16 & 0xFFFF)


def syn_aa64_sysregtrap(op0: int, op1: int, op2: int, crn: int, crm: int, rt: int, is_read: bool) -> int:
    """EC 0x18, ISS: Op0[21:20] Op2[19:17] Op1[16:14] CRn[13:10] Rt[9:5] CRm[4:1] Direction[0]."""
    iss = (op0 << 20) | (op2 << 17) | (op1 << 14) | (crn << 10) | (rt << 5) | (crm << 1) | int(is_read)
    return esr(EC_SYS64, iss)


def syn_wfx(cv: int, cond: int, ti: int) -> int:
    """EC 0x01, ISS: CV[24] COND[23:20] TI[1:0] (0 = WFI, 1 = WFE)."""
    return esr(EC_WFX, (cv << 24) | (cond << 20) | ti)


def syn_data_abort_with_iss(same_el: bool, sas: int, sse: bool, srt: int, sf: bool, ar: bool,
                            ea: bool, s1ptw: bool, wnr: bool, dfsc: int) -> int:
    """EC 0x24/0x25 with ISV=1: ISV[24] SAS[23:22] SSE[21] SRT[20:16] SF[15] AR[14]
    EA[9] S1PTW[7] WnR[6] DFSC[5:0]."""
    iss = ((1 << 24) | (sas << 22) | (int(sse) << 21) | (srt << 16) | (int(sf) << 15)
           | (int(ar) << 14) | (int(ea) << 9) | (int(s1ptw) << 7) | (int(wnr) << 6) | dfsc)
    return esr(EC_DABT_CUR if same_el else EC_DABT_LOW, iss)


def syn_data_abort_no_iss(same_el: bool, ea: bool, s1ptw: bool, wnr: bool, dfsc: int) -> int:
    iss = (int(ea) << 9) | (int(s1ptw) << 7) | (int(wnr) << 6) | dfsc
    return esr(EC_DABT_CUR if same_el else EC_DABT_LOW, iss)


def syn_insn_abort(same_el: bool, ea: bool, s1ptw: bool, ifsc: int) -> int:
    iss = (int(ea) << 9) | (int(s1ptw) << 7) | ifsc
    return esr(EC_IABT_CUR if same_el else EC_IABT_LOW, iss)


@dataclass(frozen=True)
class DataAbort:
    """The decoded ISS of a data abort (ARM ARM D17.2.37, ISS encoding for EC 0x24/0x25)."""
    isv: bool
    size: int          # access size in bytes, 1 << SAS
    sse: bool
    srt: int
    sf: bool
    wnr: bool
    s1ptw: bool
    ea: bool
    dfsc: int
    cm: bool = False   # a cache maintenance instruction (DC/IC by VA) faulted


    @classmethod
    def decode(cls, esr_value: int) -> "DataAbort":
        iss = esr_value & 0x1FFFFFF
        return cls(isv=bool(iss >> 24 & 1), size=1 << (iss >> 22 & 3), sse=bool(iss >> 21 & 1),
                   srt=iss >> 16 & 0x1F, sf=bool(iss >> 15 & 1), wnr=bool(iss >> 6 & 1),
                   s1ptw=bool(iss >> 7 & 1), ea=bool(iss >> 9 & 1), dfsc=iss & 0x3F,
                   cm=bool(iss >> 8 & 1))


@dataclass(frozen=True)
class SysRegAccess:
    """The decoded ISS of a trapped MSR/MRS (EC 0x18)."""
    op0: int
    op1: int
    crn: int
    crm: int
    op2: int
    rt: int
    is_read: bool

    @classmethod
    def decode(cls, esr_value: int) -> "SysRegAccess":
        iss = esr_value & 0x1FFFFFF
        return cls(op0=iss >> 20 & 3, op1=iss >> 14 & 7, crn=iss >> 10 & 0xF, crm=iss >> 1 & 0xF,
                   op2=iss >> 17 & 7, rt=iss >> 5 & 0x1F, is_read=bool(iss & 1))

    @property
    def key(self) -> tuple[int, int, int, int, int]:
        return (self.op0, self.op1, self.crn, self.crm, self.op2)


def hpfar_to_ipa(hpfar: int, far: int) -> int:
    """HPFAR_EL2.FIPA holds IPA[47:12] in bits [43:4]; the page offset comes from FAR."""
    return ((hpfar >> 4) << 12) | (far & 0xFFF)
