"""The GICv2 virtual CPU interface, GICV_* (IHI 0048B chapter 5; register
semantics those of the GICC_* registers, 4.4), as the hardware implements it on
top of the live GICH registers of one physical CPU: the guest's IAR/EOIR work
on the list registers, its CTLR/PMR/BPR are fields of GICH_VMCR and its
active priorities are GICH_APR.  QEMU hw/intc/arm_gic.c models the same.

Choices where the spec leaves room:
  * GICH_HCR.En = 0: the interface signals nothing and IAR/HPPIR read 1023.
  * only an LR in the pending state (not pending+active) can be acknowledged or
    signalled: its interrupt is active until deactivated (3.2.4).
  * among equal priorities the lowest-numbered LR wins (IMPLEMENTATION DEFINED).
  * a group 1 interrupt read through GICV_IAR/HPPIR with VMAckCtl = 0 returns
    1022 (as GICC_IAR without Security Extensions, 4.4.4); GICV_AIAR/AHPPIR/
    AEOIR are the group 1 aliases.  A group 0 interrupt with VMFIQEn = 1 is a
    virtual FIQ, which irq_line() does not report.
  * the binary points never go below their minimum: with 5 priority bits the
    group priority is at most [7:3], so BPR >= 2 and ABPR >= 3 (GICH_VTR.PREbits).
  * GICV_DIR with EOImode = 0 is UNPREDICTABLE: ignored (as QEMU).
"""
from __future__ import annotations

from typing import Callable

from gic.lr import LR_HW, LR_STATE_ACTIVE, LR_STATE_PENDING, ListReg
from gic.v2_hyp import HCR_EN, PRE_BITS, GichV2

GICV_CTLR, GICV_PMR, GICV_BPR, GICV_IAR, GICV_EOIR = 0x00, 0x04, 0x08, 0x0C, 0x10
GICV_RPR, GICV_HPPIR, GICV_ABPR, GICV_AIAR, GICV_AEOIR = 0x14, 0x18, 0x1C, 0x20, 0x24
GICV_AHPPIR, GICV_APR0, GICV_NSAPR0, GICV_IIDR, GICV_DIR = 0x28, 0xD0, 0xE0, 0xFC, 0x1000
GICV_IIDR_VALUE = 0x0202043B      # ProductID 0x020, architecture GICv2, ARM implementer

# GICH_VMCR fields (IHI 0048B 5.3.3)
VMCR_GRP0EN, VMCR_GRP1EN, VMCR_ACKCTL, VMCR_FIQEN, VMCR_CBPR = 1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 4
VMCR_EOIMODE = 1 << 9
VMCR_ABP_SHIFT, VMCR_BP_SHIFT, VMCR_PRIMASK_SHIFT = 18, 21, 27
CTLR_MASK = VMCR_GRP0EN | VMCR_GRP1EN | VMCR_ACKCTL | VMCR_FIQEN | VMCR_CBPR | VMCR_EOIMODE
HCR_EOICOUNT_SHIFT = 27

SPURIOUS, GROUP1_SPURIOUS = 1023, 1022
IDLE_PRIORITY = 0x100              # internal: no active priority (RPR reads 0xFF)
MIN_BPR = 7 - PRE_BITS             # 2: group priority [7:3]
MIN_ABPR = MIN_BPR + 1
READ_ONLY = (GICV_IAR, GICV_RPR, GICV_HPPIR, GICV_AIAR, GICV_AHPPIR, GICV_IIDR)
WRITE_ONLY = (GICV_EOIR, GICV_AEOIR, GICV_DIR)
RAZ_WI = tuple(range(0xD4, 0xF0, 4))   # APR1-3 (5 preemption bits fit APR0), NSAPR0-3


def _state(v: int) -> int:
    return (v >> 28) & 3


def _set_state(v: int, state: int) -> int:
    return (v & ~(3 << 28)) | (state << 28)


class VirtualCpuInterface:
    def __init__(self, gich: GichV2):
        self.gich = gich
        self.unhandled: list[tuple[int, bool]] = []
        self.on_hw_deactivate: Callable[[int], None] | None = None

    # --- GICH_VMCR views --------------------------------------------------------------------
    def _vmcr_field(self, shift: int, width: int) -> int:
        return (self.gich.vmcr >> shift) & ((1 << width) - 1)

    def _set_vmcr_field(self, shift: int, width: int, value: int) -> None:
        mask = ((1 << width) - 1) << shift
        self.gich.vmcr = (self.gich.vmcr & ~mask) | ((value << shift) & mask)

    @property
    def pmr(self) -> int:
        return self._vmcr_field(VMCR_PRIMASK_SHIFT, 5) << 3

    @property
    def bpr(self) -> int:
        return max(self._vmcr_field(VMCR_BP_SHIFT, 3), MIN_BPR)

    @property
    def abpr(self) -> int:
        return max(self._vmcr_field(VMCR_ABP_SHIFT, 3), MIN_ABPR)

    def _eoi_split(self) -> bool:
        return bool(self.gich.vmcr & VMCR_EOIMODE)

    # --- priorities (IHI 0048B 3.3) --------------------------------------------------------------
    def _group_priority(self, lr: ListReg) -> int:
        """Priority bits that take part in preemption (3.3.3, binary point): group 1
        uses ABPR - 1 unless VMCBPR makes both groups use BPR."""
        bp = self.abpr - 1 if lr.group1 and not self.gich.vmcr & VMCR_CBPR else self.bpr
        return lr.priority & (0xFF << (bp + 1)) & 0xFF

    def running_priority(self) -> int:
        """From the lowest set GICH_APR bit (the highest active group priority)."""
        apr = self.gich.apr
        if not apr:
            return IDLE_PRIORITY
        return ((apr & -apr).bit_length() - 1) << (8 - PRE_BITS)

    def _group_enabled(self, lr: ListReg) -> bool:
        return bool(self.gich.vmcr & (VMCR_GRP1EN if lr.group1 else VMCR_GRP0EN))

    def _best_pending(self) -> tuple[int, ListReg] | None:
        """The highest-priority pending LR of an enabled group that the priority mask
        lets through, or None (what HPPIR reports)."""
        if not self.gich.hcr & HCR_EN:
            return None
        best = None
        for i, v in enumerate(self.gich.lr):
            if _state(v) != LR_STATE_PENDING:
                continue
            lr = ListReg.decode(v)
            if self._group_enabled(lr) and (best is None or lr.priority < best[1].priority):
                best = (i, lr)
        if best is None or best[1].priority >= self.pmr:
            return None
        return best

    def _can_preempt(self, lr: ListReg) -> bool:
        return self._group_priority(lr) < self.running_priority()

    def irq_line(self) -> bool:
        """The virtual IRQ output (drives HCR_EL2.VI): the best pending LR passes the
        priority mask and preempts the running priority, and is signalled as IRQ."""
        best = self._best_pending()
        if best is None:
            return False
        lr = best[1]
        if not lr.group1 and self.gich.vmcr & VMCR_FIQEN:
            return False                       # a virtual FIQ
        return self._can_preempt(lr)

    # --- acknowledge, end of interrupt, deactivate -------------------------------------------------
    @staticmethod
    def _iar_value(lr: ListReg) -> int:
        cpuid = lr.source_cpu if lr.vintid < 16 and not lr.hw else 0
        return lr.vintid | cpuid << 10

    def _hppir(self, alias: bool) -> int:
        best = self._best_pending()
        if best is None:
            return SPURIOUS
        lr = best[1]
        if alias:
            return self._iar_value(lr) if lr.group1 else SPURIOUS
        if lr.group1 and not self.gich.vmcr & VMCR_ACKCTL:
            return GROUP1_SPURIOUS
        return self._iar_value(lr)

    def _acknowledge(self, alias: bool) -> int:
        """GICV_IAR / GICV_AIAR: pending -> active, raise the running priority."""
        best = self._best_pending()
        if best is None:
            return SPURIOUS
        i, lr = best
        if alias and not lr.group1:
            return SPURIOUS
        if not alias and lr.group1 and not self.gich.vmcr & VMCR_ACKCTL:
            return GROUP1_SPURIOUS
        if not self._can_preempt(lr):
            return SPURIOUS
        self.gich.lr[i] = _set_state(self.gich.lr[i], LR_STATE_ACTIVE)
        self.gich.apr |= 1 << (self._group_priority(lr) >> (8 - PRE_BITS))
        self._changed()
        return self._iar_value(lr)

    def _find_active_lr(self, intid: int, cpuid: int) -> int | None:
        """The LR holding `intid` active (or pending+active); SGIs also match CPUID."""
        for i, v in enumerate(self.gich.lr):
            if not _state(v) & LR_STATE_ACTIVE or (v & 0x3FF) != intid:
                continue
            if intid < 16 and not v & LR_HW and (v >> 10) & 7 != cpuid:
                continue
            return i
        return None

    def _count_eoi(self) -> None:
        """GICH_HCR.EOICount (5.3.1): a deactivation found no LR (the LRENP condition)."""
        hcr = self.gich.hcr
        count = ((hcr >> HCR_EOICOUNT_SHIFT) + 1) & 0x1F
        self.gich.hcr = (hcr & ~(0x1F << HCR_EOICOUNT_SHIFT)) | count << HCR_EOICOUNT_SHIFT

    def _deactivate(self, value: int, count: bool = True) -> None:
        """Deactivate the LR holding the interrupt; none: EOICount (if `count`)."""
        intid, cpuid = value & 0x3FF, (value >> 10) & 7
        i = self._find_active_lr(intid, cpuid)
        if i is None:
            if count:
                self._count_eoi()
            return
        v = self.gich.lr[i]
        self.gich.lr[i] = _set_state(v, _state(v) & LR_STATE_PENDING)   # A -> invalid, P+A -> P
        if v & LR_HW and self.on_hw_deactivate is not None:
            self.on_hw_deactivate((v >> 10) & 0x3FF)

    def _eoi(self, value: int) -> None:
        """GICV_EOIR / GICV_AEOIR: priority drop, and with EOImode = 0 deactivation."""
        if value & 0x3FF >= 1020:
            return                               # special INTIDs: ignored
        dropped = bool(self.gich.apr)
        if dropped:
            self.gich.apr &= self.gich.apr - 1   # clear the highest active priority
        if not self._eoi_split():
            # an EOI with no active priority is UNPREDICTABLE: it still deactivates
            # a matching LR but is not counted (QEMU gic_complete_irq)
            self._deactivate(value, count=dropped)
        self._changed()

    def _dir(self, value: int) -> None:
        if value & 0x3FF >= 1020 or not self._eoi_split():
            return
        self._deactivate(value)
        self._changed()

    def _changed(self) -> None:
        if self.gich.on_change is not None:
            self.gich.on_change()

    # --- MMIO --------------------------------------------------------------------------------------
    def read(self, offset: int, size: int) -> int:
        if size != 4 or offset % 4:
            return self._bad(offset, False)
        if offset == GICV_CTLR:
            return self.gich.vmcr & CTLR_MASK
        if offset == GICV_PMR:
            return self.pmr
        if offset == GICV_BPR:
            return self.bpr
        if offset == GICV_ABPR:
            return self.abpr
        if offset in (GICV_IAR, GICV_AIAR):
            return self._acknowledge(alias=offset == GICV_AIAR)
        if offset in (GICV_HPPIR, GICV_AHPPIR):
            return self._hppir(alias=offset == GICV_AHPPIR)
        if offset == GICV_RPR:
            return min(self.running_priority(), 0xFF)
        if offset == GICV_APR0:
            return self.gich.apr
        if offset == GICV_IIDR:
            return GICV_IIDR_VALUE
        if offset in WRITE_ONLY or offset in RAZ_WI:
            return 0
        return self._bad(offset, False)

    def write(self, offset: int, size: int, value: int) -> None:
        if size != 4 or offset % 4:
            self._bad(offset, True)
            return
        value &= 0xFFFFFFFF
        if offset == GICV_CTLR:
            self.gich.vmcr = (self.gich.vmcr & ~CTLR_MASK) | (value & CTLR_MASK)
        elif offset == GICV_PMR:
            self._set_vmcr_field(VMCR_PRIMASK_SHIFT, 5, (value & 0xFF) >> 3)
        elif offset == GICV_BPR:
            self._set_vmcr_field(VMCR_BP_SHIFT, 3, max(value & 7, MIN_BPR))
        elif offset == GICV_ABPR:
            self._set_vmcr_field(VMCR_ABP_SHIFT, 3, max(value & 7, MIN_ABPR))
        elif offset in (GICV_EOIR, GICV_AEOIR):
            self._eoi(value)
            return
        elif offset == GICV_DIR:
            self._dir(value)
            return
        elif offset == GICV_APR0:
            self.gich.apr = value
        elif offset in READ_ONLY or offset in RAZ_WI:
            return
        else:
            self._bad(offset, True)
            return
        self._changed()

    def _bad(self, offset: int, is_write: bool) -> int:
        self.unhandled.append((offset, is_write))
        return 0
