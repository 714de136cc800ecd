"""The GICv3 virtual CPU interface: the ICV_*_EL1 registers EL1 reaches through
the ICC_*_EL1 encodings while HCR_EL2.IMO/FMO are set (IHI 0069 chapter 8
and the ICV_* descriptions of chapter 12), on top of the live ICH registers of one
physical CPU.  The guest's IAR/EOIR work on the list registers, its PMR/BPR/
CTLR/IGRPEN are fields of ICH_VMCR_EL2 and its active priorities are
ICH_AP0R<n>_EL2 / ICH_AP1R<n>_EL2.  Semantics are those of QEMU's icv_*
functions (hw/intc/arm_gicv3_cpuif.c), which follow the spec pseudocode.

Accesses are keyed by the (op0, op1, CRn, CRm, op2) encoding of the ICC_*
register.  ICC_SGI1R/ASGI1R/SGI0R are not here: with IMO set they trap to EL2
(the caller hands them to Vgic.send_sgi_v3).

Choices where the spec leaves room:
  * ICH_HCR_EL2.En = 0: nothing is signalled, IAR and HPPIR read 1023.
  * among equal priorities the lowest-numbered LR wins; an LR of priority 0xFF
    is never signalled (HighestPriorityVirtualInterrupt starts at 0xFF).
  * group 0 is always a virtual FIQ, group 1 a virtual IRQ (system-register
    interface: VFIQEn is RES1); irq_line() reports group 1, fiq_line() group 0.
  * EOIR drops the priority before any check (QEMU's IMPLEMENTATION DEFINED
    order).  With no active priority, the write does nothing else (CONSTRAINED
    UNPREDICTABLE: EOIcount is left unchanged).  An EOI whose LR is of the
    other group or of another priority drops the priority but deactivates
    nothing.
  * EOIcount (ICH_HCR_EL2) counts, as its description says, an EOIR with
    VEOIM = 0 or a DIR with VEOIM = 1 that finds no LR (INTID < 8192).  QEMU and
    KVM also count an EOIR with VEOIM = 1; this model does not.
  * DIR with VEOIM = 0 is UNPREDICTABLE: ignored (as QEMU).
  * reading a write-only register (EOIR, DIR) or writing a read-only one (IAR,
    HPPIR, RPR) is UNDEFINED: recorded in `unhandled` and RAZ/WI.
  * ICV_AP<g>R1-3 read and write ICH_AP<g>R1-3, which no priority uses (32
    preemption levels fit AP<g>R0).
"""
from __future__ import annotations

from typing import Callable

from gic.v3_hyp import (HCR_EN, HCR_EOICOUNT_MASK, HCR_EOICOUNT_SHIFT, LR_ACTIVE_BIT, LR_PENDING_BIT,
                        LR_STATE_PENDING, MIN_VBPR0, MIN_VBPR1, PRE_BITS, PRI_BITS, PRIORITY_MASK,
                        VMCR_VBPR0_SHIFT, VMCR_VBPR1_SHIFT, VMCR_VCBPR, VMCR_VENG0, VMCR_VENG1, VMCR_VEOIM,
                        VMCR_VPMR_SHIFT, IchV3, lr_group1, lr_hw, lr_pintid, lr_priority, lr_state, lr_vintid)

# ICC_* encodings (op0, op1, CRn, CRm, op2), IHI 0069 chapter 12
ICC_PMR_EL1 = (3, 0, 4, 6, 0)
ICC_IAR0_EL1, ICC_EOIR0_EL1, ICC_HPPIR0_EL1, ICC_BPR0_EL1 = ((3, 0, 12, 8, i) for i in range(4))
ICC_AP0R_EL1 = tuple((3, 0, 12, 8, 4 + n) for n in range(4))
ICC_AP1R_EL1 = tuple((3, 0, 12, 9, n) for n in range(4))
ICC_DIR_EL1, ICC_RPR_EL1 = (3, 0, 12, 11, 1), (3, 0, 12, 11, 3)
ICC_SGI1R_EL1, ICC_ASGI1R_EL1, ICC_SGI0R_EL1 = (3, 0, 12, 11, 5), (3, 1, 12, 11, 6), (3, 2, 12, 11, 7)
(ICC_IAR1_EL1, ICC_EOIR1_EL1, ICC_HPPIR1_EL1, ICC_BPR1_EL1, ICC_CTLR_EL1, ICC_SRE_EL1,
 ICC_IGRPEN0_EL1, ICC_IGRPEN1_EL1) = ((3, 0, 12, 12, i) for i in range(8))
SGI_KEYS = (ICC_SGI1R_EL1, ICC_ASGI1R_EL1, ICC_SGI0R_EL1)     # trapped to EL2, never here

KEY_NAMES = {ICC_PMR_EL1: "PMR", ICC_IAR0_EL1: "IAR0", ICC_EOIR0_EL1: "EOIR0", ICC_HPPIR0_EL1: "HPPIR0",
             ICC_BPR0_EL1: "BPR0", ICC_DIR_EL1: "DIR", ICC_RPR_EL1: "RPR", ICC_IAR1_EL1: "IAR1",
             ICC_EOIR1_EL1: "EOIR1", ICC_HPPIR1_EL1: "HPPIR1", ICC_BPR1_EL1: "BPR1", ICC_CTLR_EL1: "CTLR",
             ICC_SRE_EL1: "SRE", ICC_IGRPEN0_EL1: "IGRPEN0", ICC_IGRPEN1_EL1: "IGRPEN1",
             **{k: f"AP0R{n}" for n, k in enumerate(ICC_AP0R_EL1)},
             **{k: f"AP1R{n}" for n, k in enumerate(ICC_AP1R_EL1)}}
READ_ONLY = frozenset({ICC_IAR0_EL1, ICC_IAR1_EL1, ICC_HPPIR0_EL1, ICC_HPPIR1_EL1, ICC_RPR_EL1})
WRITE_ONLY = frozenset({ICC_EOIR0_EL1, ICC_EOIR1_EL1, ICC_DIR_EL1})

# ICC_CTLR_EL1 fields (ICV_CTLR_EL1 view)
CTLR_CBPR, CTLR_EOIMODE = 1 << 0, 1 << 1
CTLR_PRIBITS_SHIFT, CTLR_IDBITS_SHIFT, CTLR_A3V = 8, 11, 1 << 15
SRE_VALUE = 0x7                    # ICC_SRE_EL1: SRE | DFB | DIB, RAO/WI

SPURIOUS = 1023
IDLE_PRIORITY = 0xFF               # ICV_RPR_EL1 with no active priority
MAX_INTID = 1020                   # 1020-1023 special; LPIs (>= 8192) are never in these LRs
LPI_BASE = 8192
G0, G1 = 0, 1


def _ctz(x: int) -> int:
    return (x & -x).bit_length() - 1


class VirtualCpuInterfaceV3:
    def __init__(self, ich: IchV3):
        self.ich = ich
        self.unhandled: list[tuple[tuple, bool]] = []
        self.on_hw_deactivate: Callable[[int], None] | None = None

    @staticmethod
    def keys() -> frozenset:
        """The ICC_* encodings this interface implements."""
        return frozenset(KEY_NAMES)

    # --- ICH_VMCR_EL2 views ------------------------------------------------------------------------
    def _vmcr(self, shift: int, width: int) -> int:
        return (self.ich.vmcr >> shift) & ((1 << width) - 1)

    def _set_vmcr(self, shift: int, width: int, value: int) -> None:
        mask = ((1 << width) - 1) << shift
        self.ich.vmcr = (self.ich.vmcr & ~mask) | ((value << shift) & mask)

    def _set_vmcr_bit(self, bit: int, on) -> None:
        self.ich.vmcr = self.ich.vmcr | bit if on else self.ich.vmcr & ~bit

    @property
    def pmr(self) -> int:
        return self._vmcr(VMCR_VPMR_SHIFT, 8)

    def _vbpr(self, grp: int) -> int:
        return self._vmcr(VMCR_VBPR1_SHIFT if grp else VMCR_VBPR0_SHIFT, 3)

    def _gprio_mask(self, grp: int) -> int:
        """The group-priority bits of a priority (VGroupBits): VBPR0 = n keeps [7:n+1];
        group 1 uses VBPR1 - 1, or VBPR0 when VCBPR is set."""
        if grp == G1 and self.ich.vmcr & VMCR_VCBPR:
            grp = G0
        bpr = self._vbpr(grp) - (1 if grp == G1 else 0)
        return (0xFF << (bpr + 1)) & 0xFF

    # --- priorities ------------------------------------------------------------------------------
    def running_priority(self) -> int:
        """From the lowest set bit of AP0R0 | AP1R0 (each bit is a group priority
        [7:3]); 0xFF when nothing is active (QEMU ich_highest_active_virt_prio)."""
        apr = self.ich.ap0r[0] | self.ich.ap1r[0]
        return _ctz(apr) << (8 - PRE_BITS) if apr else IDLE_PRIORITY

    def _hppvi(self) -> int | None:
        """The LR of the highest-priority pending interrupt of an enabled group
        (HighestPriorityVirtualInterrupt), or None."""
        vmcr = self.ich.vmcr
        idx, prio = None, 0xFF
        for i, v in enumerate(self.ich.lr):
            if lr_state(v) != LR_STATE_PENDING:
                continue
            if not vmcr & (VMCR_VENG1 if lr_group1(v) else VMCR_VENG0):
                continue
            if lr_priority(v) < prio:
                idx, prio = i, lr_priority(v)
        return idx

    def _can_preempt(self, v: int) -> bool:
        """CanSignalVirtualInterrupt: En, below the mask, and a group priority
        above the running one (subpriority does not count)."""
        if not self.ich.hcr & HCR_EN:
            return False
        prio = lr_priority(v)
        if prio >= self.pmr:
            return False
        rprio = self.running_priority()
        if rprio == IDLE_PRIORITY:
            return True
        mask = self._gprio_mask(G1 if lr_group1(v) else G0)
        return (prio & mask) < (rprio & mask)

    def _signalled(self, grp: int) -> bool:
        i = self._hppvi()
        if i is None:
            return False
        v = self.ich.lr[i]
        return int(lr_group1(v)) == grp and self._can_preempt(v)

    def irq_line(self) -> bool:
        """The virtual IRQ output (HCR_EL2.VI): a group 1 interrupt can be signalled."""
        return self._signalled(G1)

    def fiq_line(self) -> bool:
        """The virtual FIQ output: a group 0 interrupt can be signalled."""
        return self._signalled(G0)

    # --- acknowledge, end of interrupt, deactivate -----------------------------------------------
    def _hppir(self, grp: int) -> int:
        if not self.ich.hcr & HCR_EN:
            return SPURIOUS
        i = self._hppvi()
        if i is None or int(lr_group1(self.ich.lr[i])) != grp:
            return SPURIOUS
        return lr_vintid(self.ich.lr[i])

    def _acknowledge(self, grp: int) -> int:
        """ICV_IAR<grp>_EL1 (VirtualReadIAR): the highest pending LR of this group,
        if it can preempt, becomes active and its group priority active."""
        i = self._hppvi()
        if i is None:
            return SPURIOUS
        v = self.ich.lr[i]
        if int(lr_group1(v)) != grp or not self._can_preempt(v):
            return SPURIOUS
        intid = lr_vintid(v)
        if MAX_INTID <= intid < 1024:        # a special INTID in an LR: pending -> invalid, returned as is
            self.ich.lr[i] = v & ~LR_PENDING_BIT
        else:
            self.ich.lr[i] = (v & ~LR_PENDING_BIT) | LR_ACTIVE_BIT
            bit = (lr_priority(v) & self._gprio_mask(grp)) >> (8 - PRE_BITS)
            aprs = self.ich.ap1r if grp else self.ich.ap0r
            aprs[bit // 32] |= 1 << (bit % 32)
        self.ich.notify()
        return intid

    def _drop_priority(self) -> int | None:
        """Clear the highest active priority (group 0 first on a tie, QEMU
        icv_drop_prio); returns it, or None when none is active."""
        a0, a1 = self.ich.ap0r[0], self.ich.ap1r[0]
        if not a0 and not a1:
            return None
        c0 = _ctz(a0) if a0 else 32
        c1 = _ctz(a1) if a1 else 32
        if c0 <= c1:
            self.ich.ap0r[0] = a0 & (a0 - 1)
            return c0 << (8 - PRE_BITS)
        self.ich.ap1r[0] = a1 & (a1 - 1)
        return c1 << (8 - PRE_BITS)

    def _find_active(self, intid: int) -> int | None:
        """FindActiveVirtualInterrupt: the LR holding `intid` active or pending+active."""
        for i, v in enumerate(self.ich.lr):
            if v & LR_ACTIVE_BIT and lr_vintid(v) == intid:
                return i
        return None

    def _deactivate(self, i: int) -> None:
        """Active -> invalid, pending+active -> pending; HW=1 deactivates pINTID.
        An LR with HW=0 and EOI=1 now shows in ICH_EISR_EL2 (EOI maintenance)."""
        v = self.ich.lr[i]
        if lr_hw(v) and lr_pintid(v) < MAX_INTID and self.on_hw_deactivate is not None:
            self.on_hw_deactivate(lr_pintid(v))
        self.ich.lr[i] = v & ~LR_ACTIVE_BIT

    def _count_eoi(self) -> None:
        """ICH_HCR_EL2.EOIcount += 1 (5 bits; LRENP maintenance while non-zero)."""
        hcr = self.ich.hcr
        count = ((hcr >> HCR_EOICOUNT_SHIFT) + 1) & 0x1F
        self.ich.hcr = (hcr & ~HCR_EOICOUNT_MASK) | count << HCR_EOICOUNT_SHIFT

    def _eoi(self, grp: int, value: int) -> None:
        """ICV_EOIR<grp>_EL1: priority drop, then (VEOIM = 0) deactivation of the LR
        if it is of this group and of the dropped priority."""
        intid = value & 0xFFFFFF
        if MAX_INTID <= intid < 1024:
            return                              # special INTIDs: ignored
        dropped = self._drop_priority()
        if dropped is None:
            return                              # nothing active: no LR check
        split = bool(self.ich.vmcr & VMCR_VEOIM)
        i = self._find_active(intid)
        if i is None:
            if not split and intid < LPI_BASE:
                self._count_eoi()
        else:
            v = self.ich.lr[i]
            if (int(lr_group1(v)) == grp and lr_priority(v) & self._gprio_mask(grp) == dropped
                    and not split):
                self._deactivate(i)
        self.ich.notify()

    def _dir(self, value: int) -> None:
        """ICV_DIR_EL1: deactivation alone, meaningful with VEOIM = 1."""
        intid = value & 0xFFFFFF
        if intid >= MAX_INTID or not self.ich.vmcr & VMCR_VEOIM:
            return
        i = self._find_active(intid)
        if i is None:
            self._count_eoi()
        else:
            self._deactivate(i)
        self.ich.notify()

    # --- register file ---------------------------------------------------------------------------
    def _ctlr(self) -> int:
        vmcr = self.ich.vmcr
        v = CTLR_A3V | (PRI_BITS - 1) << CTLR_PRIBITS_SHIFT     # IDbits 0: 16-bit INTIDs, as ICH_VTR
        if vmcr & VMCR_VEOIM:
            v |= CTLR_EOIMODE
        if vmcr & VMCR_VCBPR:
            v |= CTLR_CBPR
        return v

    def _bpr_read(self, grp: int) -> int:
        if grp == G1 and self.ich.vmcr & VMCR_VCBPR:
            return min(self._vbpr(G0) + 1, 7)   # ICV_BPR1 with VCBPR: VBPR0 + 1, saturated
        return self._vbpr(grp)

    def _bpr_write(self, grp: int, value: int) -> None:
        if grp == G1 and self.ich.vmcr & VMCR_VCBPR:
            return                              # writes ignored while VCBPR is set
        lo = MIN_VBPR1 if grp else MIN_VBPR0
        self._set_vmcr(VMCR_VBPR1_SHIFT if grp else VMCR_VBPR0_SHIFT, 3, max(value & 7, lo))

    def read(self, key: tuple) -> int:
        key = tuple(key)
        if key not in KEY_NAMES or key in WRITE_ONLY:
            return self._bad(key, False)
        if key in (ICC_IAR0_EL1, ICC_IAR1_EL1):
            return self._acknowledge(G1 if key == ICC_IAR1_EL1 else G0)
        if key in (ICC_HPPIR0_EL1, ICC_HPPIR1_EL1):
            return self._hppir(G1 if key == ICC_HPPIR1_EL1 else G0)
        if key == ICC_RPR_EL1:
            return self.running_priority()
        if key == ICC_PMR_EL1:
            return self.pmr
        if key in (ICC_BPR0_EL1, ICC_BPR1_EL1):
            return self._bpr_read(G1 if key == ICC_BPR1_EL1 else G0)
        if key == ICC_CTLR_EL1:
            return self._ctlr()
        if key == ICC_SRE_EL1:
            return SRE_VALUE
        if key == ICC_IGRPEN0_EL1:
            return int(bool(self.ich.vmcr & VMCR_VENG0))
        if key == ICC_IGRPEN1_EL1:
            return int(bool(self.ich.vmcr & VMCR_VENG1))
        if key in ICC_AP0R_EL1:
            return self.ich.ap0r[ICC_AP0R_EL1.index(key)]
        return self.ich.ap1r[ICC_AP1R_EL1.index(key)]

    def write(self, key: tuple, value: int) -> None:
        key = tuple(key)
        if key not in KEY_NAMES or key in READ_ONLY:
            self._bad(key, True)
            return
        value &= 0xFFFFFFFFFFFFFFFF
        if key in (ICC_EOIR0_EL1, ICC_EOIR1_EL1):
            self._eoi(G1 if key == ICC_EOIR1_EL1 else G0, value)
            return
        if key == ICC_DIR_EL1:
            self._dir(value)
            return
        if key == ICC_SRE_EL1:
            return                              # RAO/WI
        if key == ICC_PMR_EL1:
            self._set_vmcr(VMCR_VPMR_SHIFT, 8, value & PRIORITY_MASK)
        elif key in (ICC_BPR0_EL1, ICC_BPR1_EL1):
            self._bpr_write(G1 if key == ICC_BPR1_EL1 else G0, value)
        elif key == ICC_CTLR_EL1:               # only CBPR and EOImode are writable
            self._set_vmcr_bit(VMCR_VCBPR, value & CTLR_CBPR)
            self._set_vmcr_bit(VMCR_VEOIM, value & CTLR_EOIMODE)
        elif key == ICC_IGRPEN0_EL1:
            self._set_vmcr_bit(VMCR_VENG0, value & 1)
        elif key == ICC_IGRPEN1_EL1:
            self._set_vmcr_bit(VMCR_VENG1, value & 1)
        elif key in ICC_AP0R_EL1:
            self.ich.ap0r[ICC_AP0R_EL1.index(key)] = value & 0xFFFFFFFF
        else:
            self.ich.ap1r[ICC_AP1R_EL1.index(key)] = value & 0xFFFFFFFF
        self.ich.notify()

    def _bad(self, key: tuple, is_write: bool) -> int:
        self.unhandled.append((key, is_write))
        return 0
