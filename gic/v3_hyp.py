"""GICv3 virtual interface control registers, ICH_*_EL2 (IHI 0069 chapter 12),
and the ICH_LR<n>_EL2 encoding.

The v3 analogue of gic/lr.py + gic/v2_hyp.py: `IchV3` is the live register file
of one physical CPU (system registers on GICv3, not MMIO), `VgicV3CpuIf` the
copy a vCPU keeps while it is not running (KVM struct vgic_v3_cpu_if).  Derived
registers (MISR, EISR, ELRSR) are computed from the list registers, as QEMU's
ich_misr_read / ich_eisr_read / ich_elrsr_read do, never stored.

Implementation choices (ICH_VTR_EL2 as reported):
  * 5 preemption and 5 priority bits (PREbits = PRIbits = 5): 32 preemption
    levels, so only ICH_AP0R0/AP1R0 carry active priorities; AP<g>R1-3 are
    kept as plain storage (the world switch copies them) and never consulted.
  * IDbits = 0 (16-bit INTIDs), SEIS = 0, A3V = 1, TDS = 0 (no ICH_HCR.TDIR),
    no NMI (ICH_LR.NMI, bit 59, is RES0).
  * writes keep RES0 fields at zero: the unimplemented low priority bits of an
    LR and of VMCR.VPMR; VMCR.VFIQEn is RES1 and VAckCtl RES0 with system-
    register access (QEMU ich_vmcr_write); VBPR0/VBPR1 below their minimum
    read as the minimum (IHI 0069 ICH_VMCR_EL2, ICV_BPR0_EL1).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

# the LR state values are those of GICv2 (gic.lr), re-exported for convenience
from gic.lr import LR_STATE_ACTIVE, LR_STATE_INVALID, LR_STATE_PENDING, LR_STATE_PENDING_ACTIVE  # noqa: F401

# --- ICH_LR<n>_EL2 (IHI 0069) --------------------------------------------------------------------
LR_VINTID_MASK = 0xFFFF_FFFF                 # vINTID [31:0]
LR_PINTID_SHIFT, LR_PINTID_MASK = 32, 0x1FFF  # pINTID [44:32], HW == 1
LR_EOI = 1 << 41                             # HW == 0: pINTID[9] is the EOI maintenance request
LR_PRIORITY_SHIFT = 48                       # Priority [55:48]
LR_GROUP = 1 << 60
LR_HW = 1 << 61
LR_STATE_SHIFT = 62                          # State [63:62]: 00 invalid, 01 P, 10 A, 11 P+A
LR_PENDING_BIT, LR_ACTIVE_BIT = 1 << 62, 1 << 63

# --- ICH_HCR_EL2 ------------------------------------------------------------------------------------
HCR_EN, HCR_UIE, HCR_LRENPIE, HCR_NPIE = 1 << 0, 1 << 1, 1 << 2, 1 << 3
HCR_VGRP0EIE, HCR_VGRP0DIE, HCR_VGRP1EIE, HCR_VGRP1DIE = 1 << 4, 1 << 5, 1 << 6, 1 << 7
HCR_TC, HCR_TALL0, HCR_TALL1 = 1 << 10, 1 << 11, 1 << 12
HCR_EOICOUNT_SHIFT, HCR_EOICOUNT_MASK = 27, 0x1F << 27
HCR_WRITABLE = (HCR_EN | HCR_UIE | HCR_LRENPIE | HCR_NPIE | HCR_VGRP0EIE | HCR_VGRP0DIE | HCR_VGRP1EIE
                | HCR_VGRP1DIE | HCR_TC | HCR_TALL0 | HCR_TALL1 | HCR_EOICOUNT_MASK)   # TSEI/TDIR: RES0

# --- ICH_MISR_EL2 -----------------------------------------------------------------------------------
MISR_EOI, MISR_U, MISR_LRENP, MISR_NP = 1 << 0, 1 << 1, 1 << 2, 1 << 3
MISR_VGRP0E, MISR_VGRP0D, MISR_VGRP1E, MISR_VGRP1D = 1 << 4, 1 << 5, 1 << 6, 1 << 7

# --- ICH_VMCR_EL2 -----------------------------------------------------------------------------------
VMCR_VENG0, VMCR_VENG1, VMCR_VACKCTL, VMCR_VFIQEN, VMCR_VCBPR = 1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 4
VMCR_VEOIM = 1 << 9
VMCR_VBPR1_SHIFT, VMCR_VBPR0_SHIFT, VMCR_VPMR_SHIFT = 18, 21, 24

# --- ICH_VTR_EL2 -----------------------------------------------------------------------------------
PRI_BITS = PRE_BITS = 5
ID_BITS_FIELD = 0                             # 16-bit INTIDs
VTR_TDS, VTR_A3V, VTR_SEIS = 1 << 19, 1 << 21, 1 << 22
PRIORITY_MASK = (0xFF << (8 - PRI_BITS)) & 0xFF    # 0xF8: implemented priority bits
MIN_VBPR0 = 7 - PRE_BITS                      # 2: group priority [7:3]
MIN_VBPR1 = MIN_VBPR0 + 1

NR_APR = 4                                    # ICH_AP<g>R<n>_EL2, n = 0..3
MAX_LRS = 16


# --- ICH_LR encoding: pure functions -----------------------------------------------------------------
_LR_STATE_BITS = 3 << LR_STATE_SHIFT
_LR_HW_EOI = LR_HW | LR_EOI


def lr_state(v: int) -> int:
    return (v >> LR_STATE_SHIFT) & 3


def lr_set_state(v: int, state: int) -> int:
    return (v & ~(3 << LR_STATE_SHIFT)) | (state & 3) << LR_STATE_SHIFT


def lr_vintid(v: int) -> int:
    return v & LR_VINTID_MASK


def lr_priority(v: int) -> int:
    return (v >> LR_PRIORITY_SHIFT) & 0xFF


def lr_group1(v: int) -> bool:
    return bool(v & LR_GROUP)


def lr_hw(v: int) -> bool:
    return bool(v & LR_HW)


def lr_pintid(v: int) -> int:
    """pINTID [44:32]; only meaningful with HW == 1 (else bit 41 is EOI)."""
    return (v >> LR_PINTID_SHIFT) & LR_PINTID_MASK


def lr_eoi(v: int) -> bool:
    return not v & LR_HW and bool(v & LR_EOI)


# Bit tests, not field decodes: ELRSR/EISR derive from these on every world switch.
def lr_empty(v: int) -> bool:
    """ICH_ELRSR_EL2: no interrupt and no outstanding EOI maintenance."""
    return not v & _LR_STATE_BITS and v & _LR_HW_EOI != LR_EOI


def lr_eoi_maintenance(v: int) -> bool:
    """ICH_EISR_EL2: State 00, HW 0 and EOI 1."""
    return not v & _LR_STATE_BITS and v & _LR_HW_EOI == LR_EOI


@dataclass(frozen=True)
class IchLr:
    """The fields of one ICH_LR<n>_EL2 value (64 bits)."""
    vintid: int
    state: int = LR_STATE_INVALID
    priority: int = 0          # the full 8-bit field; hardware keeps PRIbits of it
    group1: bool = False
    hw: bool = False
    pintid: int = 0            # HW == 1: physical INTID deactivated with the virtual one
    eoi: bool = False          # HW == 0: maintenance interrupt when deactivated

    def encode(self) -> int:
        v = (self.vintid & LR_VINTID_MASK) | (self.priority & 0xFF) << LR_PRIORITY_SHIFT
        v |= (self.state & 3) << LR_STATE_SHIFT
        if self.group1:
            v |= LR_GROUP
        if self.hw:
            v |= LR_HW | (self.pintid & LR_PINTID_MASK) << LR_PINTID_SHIFT
        elif self.eoi:
            v |= LR_EOI
        return v

    @classmethod
    def decode(cls, v: int) -> "IchLr":
        hw = lr_hw(v)
        return cls(vintid=lr_vintid(v), state=lr_state(v), priority=lr_priority(v), group1=lr_group1(v),
                   hw=hw, pintid=lr_pintid(v) if hw else 0, eoi=lr_eoi(v))


def ich_lr(vintid: int, state: int = LR_STATE_INVALID, priority: int = 0, group1: bool = False,
           hw: bool = False, pintid: int = 0, eoi: bool = False) -> int:
    """Shorthand for IchLr(...).encode()."""
    return IchLr(vintid, state, priority, group1, hw, pintid, eoi).encode()


# LR bits a write keeps: no NMI, RES0 [47:45] and [59:56], low priority bits RES0
LR_WRITABLE = (LR_VINTID_MASK | LR_PINTID_MASK << LR_PINTID_SHIFT | PRIORITY_MASK << LR_PRIORITY_SHIFT
               | LR_GROUP | LR_HW | 3 << LR_STATE_SHIFT)
VMCR_WRITABLE = (VMCR_VENG0 | VMCR_VENG1 | VMCR_VCBPR | VMCR_VEOIM | 7 << VMCR_VBPR1_SHIFT
                 | 7 << VMCR_VBPR0_SHIFT | PRIORITY_MASK << VMCR_VPMR_SHIFT)


def vmcr_sanitise(value: int) -> int:
    """An ICH_VMCR_EL2 write as the hardware keeps it (QEMU ich_vmcr_write)."""
    v = (value & VMCR_WRITABLE) | VMCR_VFIQEN
    bpr0 = max((v >> VMCR_VBPR0_SHIFT) & 7, MIN_VBPR0)
    bpr1 = max((v >> VMCR_VBPR1_SHIFT) & 7, MIN_VBPR1)
    v &= ~(7 << VMCR_VBPR0_SHIFT | 7 << VMCR_VBPR1_SHIFT)
    return v | bpr0 << VMCR_VBPR0_SHIFT | bpr1 << VMCR_VBPR1_SHIFT


@dataclass
class VgicV3CpuIf:
    """Saved copy of one vCPU's ICH state (KVM struct vgic_v3_cpu_if)."""
    nr_lr: int
    hcr: int = 0
    vmcr: int = 0
    misr: int = 0
    eisr: int = 0
    elrsr: int = 0
    ap0r: list = field(default_factory=lambda: [0] * NR_APR)
    ap1r: list = field(default_factory=lambda: [0] * NR_APR)
    lr: list = field(default_factory=list)
    used_lrs: int = 0

    def __post_init__(self):
        if not self.lr:
            self.lr = [0] * self.nr_lr
        self.elrsr = (1 << self.nr_lr) - 1


REGISTER_NAMES = (("HCR", "VTR", "VMCR", "MISR", "EISR", "ELRSR")
                  + tuple(f"AP{g}R{n}" for g in (0, 1) for n in range(NR_APR))
                  + tuple(f"LR{i}" for i in range(MAX_LRS)))


class IchV3:
    """The per-pCPU hypervisor interface of a GICv3 CPU interface (ICH_*_EL2)."""

    def __init__(self, nr_lr: int = 4):
        if not 1 <= nr_lr <= MAX_LRS:
            raise ValueError(f"GICv3 supports 1 to {MAX_LRS} list registers, got {nr_lr}")
        self.nr_lr = nr_lr
        self.hcr = 0
        self.vmcr = vmcr_sanitise(0)
        self.ap0r = [0] * NR_APR
        self.ap1r = [0] * NR_APR
        self.lr = [0] * nr_lr
        self.on_change: Callable[[], None] | None = None   # virtual IRQ/FIQ and maintenance follow writes

    # --- derived registers (QEMU ich_vtr_read, ich_misr_read, ich_eisr_read, ich_elrsr_read) ----
    @property
    def vtr(self) -> int:
        return ((PRI_BITS - 1) << 29 | (PRE_BITS - 1) << 26 | ID_BITS_FIELD << 23 | VTR_A3V
                | (self.nr_lr - 1))

    # The derived registers are read on every world switch and after every write (the
    # maintenance line follows them): one plain pass over the LRs.
    # A zero LR (most of them) is empty and needs no maintenance: skip the predicate.
    @property
    def elrsr(self) -> int:
        m = 0
        for i, v in enumerate(self.lr):
            if not v or lr_empty(v):
                m |= 1 << i
        return m

    @property
    def eisr(self) -> int:
        m = 0
        for i, v in enumerate(self.lr):
            if v and lr_eoi_maintenance(v):
                m |= 1 << i
        return m

    @property
    def misr(self) -> int:
        return self._misr(self.eisr)

    def _misr(self, eisr: int) -> int:
        """ICH_MISR_EL2 given ICH_EISR_EL2: EOI is ungated, every other condition has its HCR enable."""
        hcr, vmcr = self.hcr, self.vmcr
        m = MISR_EOI if eisr else 0
        if hcr & HCR_UIE and sum(1 for v in self.lr if v & _LR_STATE_BITS) <= 1:
            m |= MISR_U
        if hcr & HCR_LRENPIE and hcr & HCR_EOICOUNT_MASK:
            m |= MISR_LRENP
        if hcr & HCR_NPIE and all(lr_state(v) != LR_STATE_PENDING for v in self.lr):
            m |= MISR_NP
        for ie, en, on, off in ((HCR_VGRP0EIE, VMCR_VENG0, MISR_VGRP0E, 0), (HCR_VGRP0DIE, VMCR_VENG0, 0, MISR_VGRP0D),
                                (HCR_VGRP1EIE, VMCR_VENG1, MISR_VGRP1E, 0), (HCR_VGRP1DIE, VMCR_VENG1, 0, MISR_VGRP1D)):
            if hcr & ie:
                m |= on if vmcr & en else off
        return m

    def maintenance_line(self) -> bool:
        """The maintenance interrupt output: ICH_HCR.En and a MISR condition (as QEMU)."""
        return bool(self.hcr & HCR_EN) and self.misr != 0

    # --- named access ---------------------------------------------------------------------------
    @staticmethod
    def _split(name: str) -> tuple[str, int]:
        if name not in REGISTER_NAMES:
            raise ValueError(f"no ICH register {name!r}")
        if name.startswith("LR"):
            return "LR", int(name[2:])
        if name.startswith("AP"):
            return name[:4], int(name[4:])
        return name, 0

    def read(self, name: str) -> int:
        """MRS of ICH_<name>_EL2; LRs beyond ListRegs read as zero."""
        kind, n = self._split(name)
        if kind == "LR":
            return self.lr[n] if n < self.nr_lr else 0
        if kind == "AP0R":
            return self.ap0r[n]
        if kind == "AP1R":
            return self.ap1r[n]
        if kind == "HCR":
            return self.hcr
        if kind == "VMCR":
            return self.vmcr
        return getattr(self, kind.lower())          # VTR, MISR, EISR, ELRSR: derived

    def write(self, name: str, value: int, notify: bool = True) -> None:
        """MSR of ICH_<name>_EL2; `notify=False` when a batch of writes ends with notify().
        VTR, MISR, EISR, ELRSR are read-only (writes ignored)."""
        kind, n = self._split(name)
        if kind == "LR":
            if n < self.nr_lr:
                self.lr[n] = value & LR_WRITABLE
        elif kind == "AP0R":
            self.ap0r[n] = value & 0xFFFFFFFF
        elif kind == "AP1R":
            self.ap1r[n] = value & 0xFFFFFFFF
        elif kind == "HCR":
            self.hcr = value & HCR_WRITABLE
        elif kind == "VMCR":
            self.vmcr = vmcr_sanitise(value)
        if notify:
            self.notify()

    def notify(self) -> None:
        """The outputs (virtual IRQ/FIQ, maintenance) follow the registers."""
        if self.on_change is not None:
            self.on_change()

    def snapshot(self) -> tuple[int, int, int, int, tuple, tuple, list]:
        """What the world switch reads, each derived register computed once:
        (VMCR, MISR, EISR, ELRSR, AP0R[0..3], AP1R[0..3], LRs)."""
        eisr = self.eisr
        return self.vmcr, self._misr(eisr), eisr, self.elrsr, tuple(self.ap0r), tuple(self.ap1r), list(self.lr)

    def load(self, cpu_if: VgicV3CpuIf) -> None:
        """Copy a saved state in without cost (a software interface, not the world switch)."""
        self.hcr = cpu_if.hcr & HCR_WRITABLE
        self.vmcr = vmcr_sanitise(cpu_if.vmcr)
        self.ap0r, self.ap1r = list(cpu_if.ap0r), list(cpu_if.ap1r)
        self.lr = [cpu_if.lr[i] & LR_WRITABLE if i < cpu_if.used_lrs else 0 for i in range(self.nr_lr)]

    def store(self, cpu_if: VgicV3CpuIf) -> None:
        eisr = self.eisr
        cpu_if.vmcr, cpu_if.misr, cpu_if.eisr, cpu_if.elrsr = self.vmcr, self._misr(eisr), eisr, self.elrsr
        cpu_if.ap0r[:], cpu_if.ap1r[:] = self.ap0r, self.ap1r
        n = min(len(cpu_if.lr), self.nr_lr)
        cpu_if.lr[:n] = self.lr[:n]
