"""The in-kernel vGIC of one VM: the emulated distributor and the per-vCPU
interrupt state KVM keeps (struct vgic_dist, struct vgic_cpu, vgic.c, vgic-v2.c,
vgic-mmio-v2.c), pure Python.  `version=2` (the default) models a GICv2;
`version=3` a GICv3 with affinity routing: list registers in ICH_LR format,
the GICv3 distributor, redistributors and ICC_SGI1R_EL1 (gic/vgic_v3.py, whose
docstring lists the GICv3 choices).  The state machine below is shared.

Every interrupt is an `IrqState` (KVM struct vgic_irq).  An interrupt that some
vCPU has to see - pending, enabled and forwarded, or active - sits on that
vCPU's *ap_list*; `flush_lr_state` copies the best of the list into the list
registers before guest entry and `fold_lr_state` reads them back after exit.

The list is kept exact at every change (`_update`): when Python runs, no vCPU
is inside the guest with LRs that have not been folded, so an interrupt can
move between ap_lists at once instead of KVM's lazy prune + kick.

Resolved spec choices (IHI 0048B):
  * groups are modelled: GICD_CTLR.EnableGrp0 (bit 0) / EnableGrp1 (bit 1)
    gate forwarding of group 0 / group 1 interrupts; IGROUPR is RW (GICv2
    without the Security Extensions), reset group 0.
  * SGI enable bits are RAO/WI (GIC-400; 4.3.5 leaves it IMPLEMENTATION DEFINED).
  * a uniprocessor VM (nr_vcpus == 1) has GICD_ITARGETSR RAZ/WI and every SPI
    targets CPU 0 (4.3.12); with several vCPUs an SPI goes to the lowest-
    numbered vCPU of its ITARGETSR byte (KVM's 1-of-N choice), none if 0.
  * PPI configuration (ICFGR1) is programmable and banked; ICFGR bit 2F is RAZ/WI.
  * SGIs with several pending sources take one list register per source
    (the LR's CPUID tells the sources apart, as in Linux 4.0 KVM).
  * the line of a level interrupt is tracked as is, also for HW-mapped ones
    (KVM lowers line_level of mapped level interrupts on populate because it
    only sees rising edges; here the timer reports both edges).
  * level interrupts, and HW ones, never go into an LR as pending+active
    (KVM vgic_v2_compute_lr); edge ones may.
  * has_pending: the wake-up rule of the distributor side, see its docstring.
GICv3 mode differs only where the architecture does: SGIs have one pending
bit per target and no source (IHI 0069: no CPUID in ICH_LR, no GICD_SGIR),
their enables are programmable, and SPIs follow GICD_IROUTER.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from gic.lr import LR_STATE_ACTIVE, LR_STATE_INVALID, LR_STATE_PENDING, ListReg
from gic.v2_hyp import HCR_EN, HCR_UIE, MISR_EOI, MISR_LRENP, MISR_NP, MISR_U
from gic.v3_hyp import (MISR_VGRP0D, MISR_VGRP0E, MISR_VGRP1D, MISR_VGRP1E, VgicV3CpuIf, ich_lr, lr_state,
                        lr_vintid)
from gic.vgic_v3 import VgicV3Mixin

NR_SGIS, NR_PRIVATE = 16, 32
MAX_CPUS, MAX_INTID = 8, 1020            # GICv2: 8 CPU interfaces, INTIDs 0-1019
MAX_CPUS_V3 = 512                        # GICv3: affinity routing; KVM_MAX_VCPUS on arm64
EDGE, LEVEL = "edge", "level"
PRIORITY_MASK = 0xF8                     # 5 implemented priority bits (IHI 0048B 3.3, 4.3.11)

# Distributor register map (IHI 0048B 4.1.2, Table 4-1)
GICD_CTLR, GICD_TYPER, GICD_IIDR = 0x000, 0x004, 0x008
GICD_IGROUPR, GICD_ISENABLER, GICD_ICENABLER = 0x080, 0x100, 0x180
GICD_ISPENDR, GICD_ICPENDR, GICD_ISACTIVER, GICD_ICACTIVER = 0x200, 0x280, 0x300, 0x380
GICD_IPRIORITYR, GICD_ITARGETSR, GICD_ICFGR = 0x400, 0x800, 0xC00
GICD_NSACR, GICD_SGIR, GICD_CPENDSGIR, GICD_SPENDSGIR = 0xE00, 0xF00, 0xF10, 0xF20
GICD_ID_BASE = 0xFD0
GICD_IIDR_VALUE = 0x0200043B             # ProductID 0x02, ARM implementer 0x43B
CTLR_ENABLE_GRP0, CTLR_ENABLE_GRP1 = 1 << 0, 1 << 1
# PIDR4-7, PIDR0-3, CIDR0-3 of a GICv2 (GIC-400): ICPIDR2 = ArchRev 2 << 4 | 0xB
ID_REGS = (0x04, 0x00, 0x00, 0x00, 0x90, 0xB4, 0x2B, 0x00, 0x0D, 0xF0, 0x05, 0xB1)


@dataclass(eq=False)
class IrqState:
    """One interrupt (KVM struct vgic_irq); SGIs and PPIs exist once per vCPU."""
    intid: int
    owner: int | None = None      # private interrupts: the vCPU they belong to
    enabled: bool = False
    pending_latch: bool = False   # edge: latched edge, or ISPENDR (software pending) for either
    line_level: bool = False      # the input line (set_level)
    active: bool = False
    priority: int = 0
    targets: int = 0              # SPIs: GICD_ITARGETSR byte (GICv2)
    route: int = 0                # SPIs: GICD_IROUTER value (GICv3)
    config: str = LEVEL
    group: int = 0
    hw: bool = False
    pintid: int = 0
    source: int = 0               # GICv2 SGIs: bitmap of CPUs whose request is pending
    active_source: int = 0        # GICv2 SGIs: bitmap of CPUs whose request is active
    vcpu: int | None = None       # ap_list membership: the vCPU whose list holds it
    on_lr: bool = False

    @property
    def is_sgi(self) -> bool:
        return self.intid < NR_SGIS

    @property
    def pending(self) -> bool:
        """IHI 0048B 3.2.4: a level interrupt is pending while its line is high
        (or it was made pending by software); an edge one once latched."""
        return self.pending_latch or (self.config == LEVEL and self.line_level)


@dataclass(frozen=True)
class _Entry:
    """One list-register candidate: an interrupt, and for SGIs one source CPU."""
    irq: IrqState
    source: int
    active: bool
    pending: bool

    def key(self):
        return (not self.active, self.irq.priority, self.irq.intid, self.source)


def _bits(mask: int):
    i = 0
    while mask:
        if mask & 1:
            yield i
        mask >>= 1
        i += 1


class Vgic(VgicV3Mixin):
    name = "vgic-dist"

    def __init__(self, nr_vcpus: int, nr_spis: int = 64, nr_lr: int = 4, version: int = 2,
                 mpidrs=None):
        """`mpidrs`: GICv3 only, the MPIDR_EL1 of each vCPU (affinity routing),
        default vCPU i has affinity 0.0.0.i."""
        if version not in (2, 3):
            raise ValueError(f"GIC version must be 2 or 3, got {version}")
        if version == 2 and not 1 <= nr_vcpus <= MAX_CPUS:
            raise ValueError(f"GICv2 supports 1 to {MAX_CPUS} CPUs, got {nr_vcpus}")
        if version == 3 and not 1 <= nr_vcpus <= MAX_CPUS_V3:
            raise ValueError(f"GICv3 supports 1 to {MAX_CPUS_V3} vCPUs, got {nr_vcpus}")
        if version == 2 and mpidrs is not None:
            raise ValueError("MPIDRs (affinity routing) are a GICv3 feature")
        if nr_spis < 0 or nr_spis % 32 or NR_PRIVATE + nr_spis > 1024:
            raise ValueError(f"nr_spis must be a multiple of 32 up to 992, got {nr_spis}")
        if nr_lr < 1:
            raise ValueError(f"nr_lr must be at least 1, got {nr_lr}")
        self.nr_vcpus, self.nr_spis, self.nr_lr, self.version = nr_vcpus, nr_spis, nr_lr, version
        self._sgi_sources = version == 2     # GICv2 SGIs are tracked per source CPU
        self.it_lines = (NR_PRIVATE + nr_spis) // 32          # GICD_TYPER.ITLinesNumber + 1
        self.nr_irqs = min(NR_PRIVATE + nr_spis, MAX_INTID)    # INTIDs 1020-1023 are special
        self.ctlr = 0
        self.unhandled: list[tuple[int, bool]] = []     # the bus drains this list: never rebind it
        self.on_hw_deactivate: Callable[[int, int], None] | None = None
        self.on_kick: Callable[[int], None] | None = None        # vCPU with something new pending
        self.private = [[self._new_private(v, i) for i in range(NR_PRIVATE)] for v in range(nr_vcpus)]
        self.spis = [IrqState(intid=i) for i in range(NR_PRIVATE, self.nr_irqs)]
        self.ap_list: list[list[IrqState]] = [[] for _ in range(nr_vcpus)]
        if version == 3:
            self._v3_init(mpidrs)
            for irq in self._all_irqs():      # KVM: a GICv3 guest starts with everything in group 1
                irq.group = 1

    def _all_irqs(self):
        for per_cpu in self.private:
            yield from per_cpu
        yield from self.spis

    @staticmethod
    def _new_private(vcpu: int, intid: int) -> IrqState:
        if intid < NR_SGIS:      # SGIs: always enabled, edge (IHI 0048B 4.3.5, 4.3.13)
            return IrqState(intid=intid, owner=vcpu, enabled=True, config=EDGE)
        return IrqState(intid=intid, owner=vcpu, config=LEVEL)

    # --- lookup ------------------------------------------------------------------------
    def _check_vcpu(self, vcpu: int) -> None:
        if not 0 <= vcpu < self.nr_vcpus:
            raise ValueError(f"no vCPU {vcpu} (the VM has {self.nr_vcpus})")

    def _irq(self, intid: int, vcpu: int | None) -> IrqState:
        if intid < NR_PRIVATE:
            if vcpu is None:
                raise ValueError(f"INTID {intid} is banked per CPU: a vCPU is required")
            self._check_vcpu(vcpu)
            return self.private[vcpu][intid]
        if intid >= self.nr_irqs:
            raise ValueError(f"INTID {intid} is not implemented (the distributor has {self.nr_irqs})")
        return self.spis[intid - NR_PRIVATE]

    def irq_state(self, intid: int, vcpu: int) -> IrqState:
        """The live state of `intid` as `vcpu` sees it (SPIs: vcpu is ignored)."""
        return self._irq(intid, vcpu)

    # --- routing and the ap_lists (KVM vgic_target_oracle, vgic_queue_irq_unlock) -------
    def _cpu_mask(self) -> int:
        return (1 << self.nr_vcpus) - 1

    def _target(self, irq: IrqState) -> int | None:
        if irq.owner is not None:
            return irq.owner
        if self.version == 3:
            return self._route_target(irq.route)
        if self.nr_vcpus == 1:
            return 0
        t = irq.targets & self._cpu_mask()
        return (t & -t).bit_length() - 1 if t else None

    def spi_target(self, intid: int) -> int | None:
        """The vCPU an SPI is routed to (GICD_ITARGETSR / GICD_IROUTER), or None."""
        return self._target(self._irq(intid, None))

    def _forwarded(self, irq: IrqState) -> bool:
        return bool(self.ctlr & (1 << irq.group))

    def _deliverable(self, irq: IrqState) -> bool:
        """Pending, enabled and forwarded by the distributor to a CPU interface."""
        return irq.pending and irq.enabled and self._forwarded(irq)

    def _is_active(self, irq: IrqState) -> bool:
        return bool(irq.active_source) if irq.is_sgi and self._sgi_sources else irq.active

    def _oracle(self, irq: IrqState) -> int | None:
        """The vCPU whose ap_list must hold `irq`, or None."""
        active = self._is_active(irq)
        if (irq.on_lr or active) and irq.vcpu is not None:
            return irq.vcpu       # active (or in flight in an LR): stays where it is
        return self._target(irq) if active or self._deliverable(irq) else None

    def _update(self, irq: IrqState) -> None:
        """Move `irq` to the ap_list the oracle names (or off every list)."""
        if irq.is_sgi and self._sgi_sources:      # per-source state; the flags summarise it
            irq.pending_latch, irq.active = bool(irq.source), bool(irq.active_source)
        t = self._oracle(irq)
        if t == irq.vcpu:
            return
        if irq.vcpu is not None:
            self.ap_list[irq.vcpu].remove(irq)
        irq.vcpu = t
        if t is not None:
            self.ap_list[t].append(irq)

    def _update_all(self) -> None:
        for irq in self._all_irqs():
            self._update(irq)

    # --- interrupt inputs ------------------------------------------------------------------
    def set_level(self, intid: int, level: bool, vcpu: int | None = None) -> None:
        """Drive the input line of a PPI (banked: `vcpu` required) or an SPI.
        IHI 0048B 3.2.4: a rising edge latches an edge-triggered interrupt; a level
        one is pending exactly while the line is high."""
        if intid < NR_SGIS:
            raise ValueError(f"INTID {intid} is an SGI: SGIs have no input line (use send_sgi)")
        irq = self._irq(intid, vcpu)
        level = bool(level)
        if irq.config == EDGE and level and not irq.line_level:
            irq.pending_latch = True
        irq.line_level = level
        self._update(irq)

    def map_hw(self, vcpu: int, intid: int, pintid: int) -> None:
        """Forward a physical interrupt: its LR gets HW=1 and pINTID (IHI 0048B 5.3.15),
        so the guest's deactivation deactivates the physical interrupt."""
        if intid < NR_SGIS:
            raise ValueError(f"INTID {intid} is an SGI: SGIs cannot be hardware-mapped")
        if not NR_SGIS <= pintid < MAX_INTID:
            raise ValueError(f"physical INTID {pintid} cannot be forwarded (16-1019)")
        irq = self._irq(intid, vcpu)
        irq.hw, irq.pintid = True, pintid

    def _kick(self, vcpus) -> None:
        """Tell the host which vCPUs have something new pending (KVM's kvm_vcpu_kick)."""
        if self.on_kick is not None:
            for v in vcpus:
                self.on_kick(v)

    def send_sgi(self, source: int, sgi: int, targets: set[int]) -> list[int]:
        """Make SGI `sgi` from `source` pending at each target (as GICD_SGIR does;
        GICv3: one pending bit per target, the source is not recorded).
        Returns the targets for which the request is new (the vCPUs to kick)."""
        self._check_vcpu(source)
        if not 0 <= sgi < NR_SGIS:
            raise ValueError(f"SGI number {sgi} is out of range 0-15")
        kicked = []
        for t in sorted(targets):
            self._check_vcpu(t)
            irq = self.private[t][sgi]
            if not self._sgi_sources:
                if not irq.pending_latch:
                    irq.pending_latch = True
                    kicked.append(t)
            elif not irq.source & (1 << source):
                irq.source |= 1 << source
                kicked.append(t)
            self._update(irq)
        self._kick(kicked)
        return kicked

    # --- the vCPU side -----------------------------------------------------------------------
    def has_pending(self, vcpu: int) -> bool:
        """Would a WFI on `vcpu` wake up?  An interrupt of this vCPU that is pending,
        enabled, not active and forwarded by the distributor (GICD_CTLR enable of its
        group) - the condition under which the GIC signals it (IHI 0048B 3.2, KVM
        kvm_vgic_vcpu_pending_irq).  PSTATE.I does not matter (ARM ARM: WFI wakes on
        a masked interrupt).  The CPU-interface masks (GICV_CTLR enables, PMR,
        running priority) live in the vCPU's GICH state and are not applied."""
        self._check_vcpu(vcpu)
        return any(self._deliverable(irq) and not self._is_active(irq) for irq in self.ap_list[vcpu])

    def _entries(self, vcpu: int) -> list[_Entry]:
        """The LR candidates of `vcpu`, best first: active ones (they must be in an LR
        to be deactivated, KVM vgic_irq_cmp), then pending ones by priority."""
        out = []
        for irq in self.ap_list[vcpu]:
            deliver = irq.enabled and self._forwarded(irq)
            if irq.is_sgi and self._sgi_sources:
                for src in _bits(irq.source | irq.active_source):
                    act = bool(irq.active_source >> src & 1)
                    pend = bool(irq.source >> src & 1) and deliver
                    if act or pend:
                        out.append(_Entry(irq, src, act, pend))
                continue
            act = irq.active
            pend = irq.pending and deliver and not (act and (irq.config == LEVEL or irq.hw))
            if act or pend:
                out.append(_Entry(irq, 0, act, pend))
        out.sort(key=_Entry.key)
        return out

    def _populate(self, e: _Entry) -> int:
        """The LR value for one entry (KVM vgic_v2_populate_lr / vgic_v3_populate_lr);
        takes the pending state of an edge interrupt (it now lives in the LR).
        Level non-HW interrupts ask for EOI maintenance (to resample the line)."""
        irq = e.irq
        state = (LR_STATE_PENDING if e.pending else 0) | (LR_STATE_ACTIVE if e.active else 0)
        if self.version == 3:             # ICH_LR<n>_EL2: no source CPU field
            value = ich_lr(irq.intid, state, irq.priority, group1=irq.group == 1, hw=irq.hw,
                           pintid=irq.pintid if irq.hw else 0, eoi=irq.config == LEVEL and not irq.hw)
        else:
            value = ListReg(vintid=irq.intid, state=state, priority=irq.priority, hw=irq.hw,
                            pintid=irq.pintid if irq.hw else 0, source_cpu=e.source if irq.is_sgi else 0,
                            eoi=irq.config == LEVEL and not irq.hw, group1=irq.group == 1).encode()
        if e.pending:
            if irq.is_sgi and self._sgi_sources:
                irq.source &= ~(1 << e.source)
                irq.pending_latch = bool(irq.source)
            elif irq.config == EDGE:
                irq.pending_latch = False
        irq.on_lr = True
        return value

    def _check_cpu_if(self, cpu_if) -> None:
        if (self.version == 3) != isinstance(cpu_if, VgicV3CpuIf):
            raise TypeError(f"a GICv{self.version} vGIC needs a "
                            f"{'VgicV3CpuIf' if self.version == 3 else 'VgicV2CpuIf'}, got {type(cpu_if).__name__}")

    def flush_lr_state(self, vcpu: int, cpu_if) -> None:
        """Before guest entry (kvm_vgic_flush_hwstate): fill cpu_if.lr[0:n] with the
        best entries of the ap_list; more entries than LRs sets GICH_HCR.UIE so the
        guest exits when the LRs drain (not with a single LR: U would fire at once).
        GICv3: ICH_LR format, and ICH_HCR_EL2.En/UIE (the same bits as GICH_HCR)."""
        self._check_vcpu(vcpu)
        self._check_cpu_if(cpu_if)
        if cpu_if.used_lrs:
            raise RuntimeError(f"vcpu{vcpu}: flush with {cpu_if.used_lrs} LRs not folded back")
        entries = self._entries(vcpu)
        cap = min(self.nr_lr, len(cpu_if.lr))
        chosen = entries[:cap]
        for i in range(len(cpu_if.lr)):
            cpu_if.lr[i] = self._populate(chosen[i]) if i < len(chosen) else 0
        cpu_if.used_lrs = len(chosen)
        hcr = (cpu_if.hcr & ~HCR_UIE) | HCR_EN
        if len(entries) > cap and cap > 1:
            hcr |= HCR_UIE
        cpu_if.hcr = hcr

    def fold_lr_state(self, vcpu: int, cpu_if) -> None:
        """After exit (vgic_v2_fold_lr_state): the LRs' state back into the interrupts.
        Active is copied; an edge interrupt still pending in its LR is latched again;
        an LR the guest deactivated (invalid) leaves the list, and a level interrupt
        whose line is still high is pending again (IHI 0048B 3.2.4)."""
        self._check_vcpu(vcpu)
        self._check_cpu_if(cpu_if)
        touched = []
        for i in range(cpu_if.used_lrs):
            if self.version == 3:
                intid, state, src = lr_vintid(cpu_if.lr[i]), lr_state(cpu_if.lr[i]), 0
            else:
                lr = ListReg.decode(cpu_if.lr[i])
                intid, state, src = lr.vintid, lr.state, lr.source_cpu
            irq = self._irq(intid, vcpu)
            pend, act = bool(state & LR_STATE_PENDING), bool(state & LR_STATE_ACTIVE)
            if irq.is_sgi and self._sgi_sources:
                bit = 1 << src
                irq.active_source = irq.active_source | bit if act else irq.active_source & ~bit
                irq.active = bool(irq.active_source)
                if pend:
                    irq.source |= bit
            else:
                irq.active = act
                if irq.config == EDGE and pend:
                    irq.pending_latch = True
                if irq.config == LEVEL and state == LR_STATE_INVALID:
                    irq.pending_latch = False        # software pending is consumed by the ack
                if irq.hw and state == LR_STATE_INVALID and self.on_hw_deactivate is not None:
                    self.on_hw_deactivate(vcpu, irq.pintid)
            irq.on_lr = False
            touched.append(irq)
        cpu_if.used_lrs = 0
        cpu_if.hcr &= ~HCR_UIE
        for irq in touched:
            self._update(irq)

    def handle_maintenance(self, vcpu: int, cpu_if) -> list[str]:
        """The maintenance conditions the saved GICH_MISR shows (IHI 0048B 5.3.4);
        GICv3: ICH_MISR_EL2, the same four bits and the VGrp enable conditions."""
        self._check_vcpu(vcpu)
        names = ((MISR_EOI, "EOI"), (MISR_U, "U"), (MISR_LRENP, "LRENP"), (MISR_NP, "NP"))
        if self.version == 3:
            names += ((MISR_VGRP0E, "VGrp0E"), (MISR_VGRP0D, "VGrp0D"), (MISR_VGRP1E, "VGrp1E"),
                      (MISR_VGRP1D, "VGrp1D"))
        return [n for bit, n in names if cpu_if.misr & bit]

    # --- distributor MMIO (IHI 0048B 4.3) --------------------------------------------------------
    def _bad(self, offset: int, is_write: bool) -> int:
        self.unhandled.append((offset, is_write))
        return 0

    def dist_read(self, vcpu: int, offset: int, size: int) -> int:
        self._check_vcpu(vcpu)
        return self._access(vcpu, offset, size, None)

    def dist_write(self, vcpu: int, offset: int, size: int, value: int) -> None:
        self._check_vcpu(vcpu)
        self._access(vcpu, offset, size, value & ((1 << (8 * size)) - 1) if size > 0 else 0)

    @staticmethod
    def _find_bank(offset: int):
        return _find_bank(offset)

    def _access(self, vcpu: int, offset: int, size: int, value: int | None) -> int:
        """Dispatch one access; value None means a read."""
        if self.version == 3:
            return self._v3_dist_access(vcpu, offset, size, value)
        is_write = value is not None
        bank = _find_bank(offset)
        byte_ok = bank is not None and bank[3]
        if size not in ((1, 4) if byte_ok else (4,)) or offset % size:
            return self._bad(offset, is_write)
        if bank is not None:
            return self._bank_access(vcpu, bank, offset, size, value)
        if offset == GICD_CTLR:
            if is_write:
                self.ctlr = value & (CTLR_ENABLE_GRP0 | CTLR_ENABLE_GRP1)
                self._update_all()
            return self.ctlr
        if offset == GICD_TYPER:          # ITLinesNumber, CPUNumber; SecurityExtn = 0
            return 0 if is_write else (self.it_lines - 1) | (self.nr_vcpus - 1) << 5
        if offset == GICD_IIDR:
            return 0 if is_write else GICD_IIDR_VALUE
        if offset == GICD_SGIR:           # write-only; reads RAZ
            if is_write:
                self._write_sgir(vcpu, value)
            return 0
        if GICD_NSACR <= offset < GICD_NSACR + 0x100:
            return 0                      # no Security Extensions: RAZ/WI (4.3.16)
        if GICD_ID_BASE <= offset < 0x1000:
            return 0 if is_write else ID_REGS[(offset - GICD_ID_BASE) // 4]
        return self._bad(offset, is_write)

    # Register banks: (base, bits per interrupt, field accessor name, byte-accessible)
    def _bank_access(self, vcpu: int, bank, offset: int, size: int, value: int | None) -> int:
        base, bits, kind, _ = bank
        first = (offset - base) * 8 // bits
        count = size * 8 // bits
        if kind in ("cpendsgi", "spendsgi"):
            return self._sgi_pending_access(vcpu, kind, first, count, value)
        if first >= self.nr_irqs:           # registers of unimplemented INTIDs: RAZ/WI
            return self._bad(offset, value is not None)
        count = min(count, self.nr_irqs - first)
        fmask = (1 << bits) - 1
        if value is None:
            out = 0
            for i in range(count):
                out |= (self._field_read(kind, self._irq(first + i, vcpu), vcpu) & fmask) << (i * bits)
            return out
        for i in range(count):
            irq = self._irq(first + i, vcpu)
            self._field_write(kind, irq, vcpu, value >> (i * bits) & fmask)
            self._update(irq)
        return 0

    def _field_read(self, kind: str, irq: IrqState, vcpu: int) -> int:
        if kind == "group":
            return irq.group
        if kind in ("senable", "cenable"):
            return int(irq.enabled)
        if kind in ("spend", "cpend"):
            return int(irq.pending)
        if kind in ("sactive", "cactive"):
            return int(self._is_active(irq))
        if kind == "priority":
            return irq.priority
        if kind == "target":
            if self.nr_vcpus == 1:
                return 0                     # uniprocessor: RAZ/WI (4.3.12)
            return 1 << vcpu if irq.owner is not None else irq.targets
        if kind == "config":                 # Int_config[1]: 1 = edge; [0] RAZ
            return 0b10 if irq.config == EDGE else 0b00
        raise AssertionError(kind)

    def _field_write(self, kind: str, irq: IrqState, vcpu: int, v: int) -> None:
        if kind == "group":
            irq.group = v & 1
        elif kind == "priority":
            irq.priority = v & PRIORITY_MASK
        elif kind == "target":
            if irq.owner is None and self.nr_vcpus > 1:   # SGI/PPI targets are read-only
                irq.targets = v & self._cpu_mask()
        elif kind == "config":
            if not irq.is_sgi:                             # ICFGR0 is read-only
                irq.config = EDGE if v & 0b10 else LEVEL
        elif not v & 1:
            return
        elif irq.is_sgi and self._sgi_sources and kind in ("senable", "cenable", "spend", "cpend"):
            return   # GICv2 SGIs: always enabled; pending only through SGIR / S/CPENDSGIR (4.3.7-8)
        elif kind == "senable":
            irq.enabled = True
        elif kind == "cenable":
            irq.enabled = False
        elif kind == "spend":
            irq.pending_latch = True
        elif kind == "cpend":
            irq.pending_latch = False      # a level interrupt with its line high stays pending
        elif kind == "sactive":
            if irq.is_sgi and self._sgi_sources:
                irq.active_source |= 1 << vcpu
            irq.active = True
        elif kind == "cactive":
            irq.active_source = 0
            irq.active = False

    def _sgi_pending_access(self, vcpu: int, kind: str, first: int, count: int,
                            value: int | None) -> int:
        """GICD_CPENDSGIR / GICD_SPENDSGIR (4.3.17-18): one byte per SGI, one bit per
        source CPU, banked per target CPU."""
        out = 0
        for i in range(count):
            irq = self.private[vcpu][first + i]
            if value is None:
                out |= irq.source << (8 * i)
                continue
            bits = value >> (8 * i) & self._cpu_mask()
            irq.source = irq.source | bits if kind == "spendsgi" else irq.source & ~bits
            self._update(irq)
        return out

    def _write_sgir(self, vcpu: int, value: int) -> None:
        """GICD_SGIR (4.3.15): TargetListFilter [25:24], CPUTargetList [23:16],
        NSATT [15] (no Security Extensions: ignored), SGIINTID [3:0]."""
        filt, cpus, sgi = value >> 24 & 3, value >> 16 & 0xFF, value & 0xF
        if filt == 0:
            targets = {c for c in _bits(cpus & self._cpu_mask())}
        elif filt == 1:
            targets = set(range(self.nr_vcpus)) - {vcpu}
        elif filt == 2:
            targets = {vcpu}
        else:
            self.unhandled.append((GICD_SGIR, True))     # reserved filter: no SGI sent
            return
        self.send_sgi(vcpu, sgi, targets)


_BANKS = (  # (base, bits per interrupt, kind, byte-accessible), IHI 0048B Table 4-1
    (GICD_IGROUPR, 1, "group", False), (GICD_ISENABLER, 1, "senable", False),
    (GICD_ICENABLER, 1, "cenable", False), (GICD_ISPENDR, 1, "spend", False),
    (GICD_ICPENDR, 1, "cpend", False), (GICD_ISACTIVER, 1, "sactive", False),
    (GICD_ICACTIVER, 1, "cactive", False), (GICD_IPRIORITYR, 8, "priority", True),
    (GICD_ITARGETSR, 8, "target", True), (GICD_ICFGR, 2, "config", False),
    (GICD_CPENDSGIR, 8, "cpendsgi", True), (GICD_SPENDSGIR, 8, "spendsgi", True),
)
_BANK_SIZE = {1: 0x80, 8: 0x3FC, 2: 0x100}      # IPRIORITYR/ITARGETSR: 0x7FC/0xBFC reserved


def _find_bank(offset: int):
    for bank in _BANKS:
        base, bits, kind = bank[0], bank[1], bank[2]
        size = 0x10 if kind.endswith("sgi") else _BANK_SIZE[bits]
        if base <= offset < base + size:
            return bank
    return None
