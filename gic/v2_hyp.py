"""GICv2 virtual interface control registers, GICH_* (IHI 0048B, 5.3).

This is the hardware the lowvisor programs through MMIO (slow on GICv2: the
cost profile charges gich_mmio_read/write per access).  Derived registers
(MISR, EISR, ELRSR) are computed from the list registers, never stored.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from gic.lr import LR_STATE_PENDING, lr_empty, lr_eoi_maintenance

GICH_HCR, GICH_VTR, GICH_VMCR, GICH_MISR = 0x00, 0x04, 0x08, 0x10
GICH_EISR0, GICH_EISR1, GICH_ELRSR0, GICH_ELRSR1 = 0x20, 0x24, 0x30, 0x34
GICH_APR, GICH_LR0 = 0xF0, 0x100

HCR_EN, HCR_UIE, HCR_LRENPIE, HCR_NPIE = 1 << 0, 1 << 1, 1 << 2, 1 << 3
MISR_EOI, MISR_U, MISR_LRENP, MISR_NP = 1 << 0, 1 << 1, 1 << 2, 1 << 3

PRI_BITS = 5
PRE_BITS = 5


@dataclass
class VgicV2CpuIf:
    """Saved copy of one vCPU's GICH state (KVM struct vgic_v2_cpu_if)."""
    nr_lr: int
    hcr: int = 0
    vmcr: int = 0
    misr: int = 0
    eisr: int = 0
    elrsr: int = 0
    apr: int = 0
    lr: list = field(default_factory=list)
    used_lrs: int = 0

    def __post_init__(self):
        if not self.lr:
            self.lr = [0] * self.nr_lr
        self.elrsr = (1 << self.nr_lr) - 1


class GichV2:
    """The per-pCPU hypervisor interface of a GIC-400-like GICv2."""

    def __init__(self, nr_lr: int = 4):
        if not 1 <= nr_lr <= 64:
            raise ValueError(f"GICv2 supports 1 to 64 list registers, got {nr_lr}")
        self.nr_lr = nr_lr
        self.hcr = 0
        self.vmcr = 0
        self.apr = 0
        self.lr = [0] * nr_lr
        self.on_change = None        # the GICV output and the maintenance line follow every write

    @property
    def vtr(self) -> int:
        return (PRI_BITS - 1) << 29 | (PRE_BITS - 1) << 26 | (self.nr_lr - 1)

    @property
    def elrsr(self) -> int:
        if not any(self.lr):
            return (1 << self.nr_lr) - 1
        return sum(1 << i for i, v in enumerate(self.lr) if lr_empty(v))

    @property
    def eisr(self) -> int:
        if not any(self.lr):
            return 0
        return sum(1 << i for i, v in enumerate(self.lr) if lr_eoi_maintenance(v))

    @property
    def misr(self) -> int:
        return self._misr(self.eisr)

    def _misr(self, eisr: int) -> int:
        """Maintenance interrupt status (IHI 0048B 5.3.4) given GICH_EISR, each condition gated by HCR."""
        if not any(self.lr):               # the common case: nothing in flight
            return (MISR_U if self.hcr & HCR_UIE else 0) | (MISR_NP if self.hcr & HCR_NPIE else 0) | (
                MISR_LRENP if self.hcr & HCR_LRENPIE and self.hcr >> 27 else 0)
        m = MISR_EOI if eisr else 0        # EOI is the one condition no HCR bit gates
        if not self.hcr:
            return m
        valid = [v for v in self.lr if (v >> 28) & 3]
        if self.hcr & HCR_UIE and len(valid) <= 1:
            m |= MISR_U
        if self.hcr & HCR_LRENPIE and self.hcr >> 27:
            m |= MISR_LRENP
        if self.hcr & HCR_NPIE and not any((v >> 28) & 3 == LR_STATE_PENDING for v in self.lr):
            m |= MISR_NP
        return m

    _READERS = {GICH_HCR: lambda g: g.hcr, GICH_VTR: lambda g: g.vtr, GICH_VMCR: lambda g: g.vmcr,
                GICH_MISR: lambda g: g.misr, GICH_EISR0: lambda g: g.eisr & 0xFFFFFFFF,
                GICH_EISR1: lambda g: g.eisr >> 32, GICH_ELRSR0: lambda g: g.elrsr & 0xFFFFFFFF,
                GICH_ELRSR1: lambda g: g.elrsr >> 32, GICH_APR: lambda g: g.apr}

    def read(self, offset: int) -> int:
        """32-bit MMIO read of GICH_* at `offset` (reserved offsets read as zero)."""
        if GICH_LR0 <= offset < GICH_LR0 + 4 * self.nr_lr:
            return self.lr[(offset - GICH_LR0) // 4]
        reader = self._READERS.get(offset)
        return reader(self) if reader else 0

    def snapshot(self) -> tuple[int, int, int, int, int, list]:
        """What the world switch reads, each derived register computed once:
        (VMCR, MISR, EISR, ELRSR, APR, LRs) - the same values as the individual reads."""
        eisr = self.eisr
        return self.vmcr, self._misr(eisr), eisr, self.elrsr, self.apr, list(self.lr)

    def write(self, offset: int, value: int, notify: bool = True) -> None:
        """32-bit MMIO write; `notify=False` when a batch of writes ends with notify()."""
        value &= 0xFFFFFFFF
        if GICH_LR0 <= offset < GICH_LR0 + 4 * self.nr_lr:
            self.lr[(offset - GICH_LR0) // 4] = value
        elif offset == GICH_HCR:
            self.hcr = value
        elif offset == GICH_VMCR:
            self.vmcr = value
        elif offset == GICH_APR:
            self.apr = value
        # VTR, MISR, EISR, ELRSR are read-only
        if notify:
            self.notify()

    def notify(self) -> None:
        """The outputs (virtual IRQ, maintenance) follow the registers."""
        if self.on_change is not None:
            self.on_change()

    def load(self, cpu_if: "VgicV2CpuIf") -> None:
        """Copy a saved state in without cost (a software interface, not the world switch)."""
        self.hcr, self.vmcr, self.apr = cpu_if.hcr, cpu_if.vmcr, cpu_if.apr
        self.lr = [cpu_if.lr[i] if i < cpu_if.used_lrs else 0 for i in range(self.nr_lr)]

    def store(self, cpu_if: "VgicV2CpuIf") -> None:
        eisr = self.eisr
        cpu_if.vmcr, cpu_if.apr, cpu_if.misr = self.vmcr, self.apr, self._misr(eisr)
        cpu_if.eisr, cpu_if.elrsr = eisr, self.elrsr
        cpu_if.lr[:] = self.lr[:len(cpu_if.lr)]
