"""The GICv3 face of the in-kernel vGIC (KVM vgic-mmio-v3.c, vgic-v3.c): the
distributor with affinity routing, one redistributor per vCPU and the
ICC_SGI1R_EL1 decoder.  A mixin of gic.vgic.Vgic (version=3): the interrupt
state machine, ap_lists and the register banks are Vgic's.

Resolved spec choices (IHI 0069):
  * a single Security state, as KVM: GICD_CTLR.DS (bit 6) and ARE (bit 4) read
    as one and are not writable; EnableGrp0 (bit 0) and EnableGrp1 (bit 1) are
    the two group enables; RWP (bit 31) reads 0 (writes take effect at once).
    GICD_IGRPMODR, GICR_IGRPMODR0 and GICD_NSACR are RAZ/WI (DS = 1).
  * with ARE = 1 the SGI/PPI part of GICD_IGROUPR0 .. GICD_ICFGR1 and
    GICD_IPRIORITYR0-7, and GICD_ITARGETSR, GICD_SGIR, GICD_C/SPENDSGIR are
    RES0 (RAZ/WI, not recorded): private interrupts live in the redistributors.
  * GICD_TYPER: ITLinesNumber, IDbits = 9 (INTIDs 0-1019), A3V and RSS (Aff3
    and the SGI range selector are honoured), CPUNumber = 0 (ignored with ARE),
    no LPIs.  GICD_IIDR / GICR_IIDR are KVM's (product 0x4B, revision 3).
    GICD_PIDR2 and GICR_PIDR2 read 0x3B (ArchRev 3 in [7:4], as KVM).
  * reset state as KVM for a GICv3 guest: every interrupt in group 1, SGIs
    enabled (their enables are programmable with GICv3), IROUTER = 0.
  * GICD_IROUTER<n> (64-bit, or two 32-bit halves): Aff3.Aff2.Aff1.Aff0 name the
    vCPU whose MPIDR affinity matches, none if no vCPU matches; IRM = 1 ("any
    participating PE") routes to vCPU 0.
  * GICR_WAKER: ProcessorSleep is writable and ChildrenAsleep follows it
    (resets asleep, as a real redistributor); it does not gate delivery (KVM).
  * SGIs have one pending bit per target (no source CPU); ICC_SGI1R_EL1 may set
    SGIs of either group pending, ICC_SGI0R/ASGI1R only group 0 ones
    (KVM vgic_v3_dispatch_sgi with DS = 1).
"""
from __future__ import annotations

NR_PRIVATE = 32
GICD_CTLR, GICD_TYPER, GICD_IIDR, GICD_TYPER2 = 0x0000, 0x0004, 0x0008, 0x000C
GICD_IGRPMODR, GICD_NSACR, GICD_SGIR = 0x0D00, 0x0E00, 0x0F00
GICD_IROUTER = 0x6000
ID_BASE, PIDR2 = 0xFFD0, 0xFFE8
PIDR2_VALUE = 0x3B                       # ArchRev 3 (GICv3) << 4 | JEP106 bits
IIDR_VALUE = 0x4B << 24 | 3 << 12 | 0x43B    # KVM: product 'K', revision 3, implementer ARM

CTLR_ENABLE_GRP0, CTLR_ENABLE_GRP1, CTLR_ARE, CTLR_DS, CTLR_RWP = 1 << 0, 1 << 1, 1 << 4, 1 << 6, 1 << 31
TYPER_IDBITS = (10 - 1) << 19            # 10-bit INTIDs
TYPER_A3V, TYPER_RSS = 1 << 24, 1 << 26

IROUTER_IRM = 1 << 31
IROUTER_MASK = 0xFF << 32 | IROUTER_IRM | 0xFFFFFF     # Aff3 [39:32], IRM [31], Aff2.Aff1.Aff0 [23:0]

# Redistributor region of one PE: RD_base, then SGI_base at +64 KB (IHI 0069, GICR_* register map)
RD_FRAME_SIZE, SGI_BASE, REDIST_STRIDE = 0x10000, 0x10000, 0x20000
GICR_CTLR, GICR_IIDR, GICR_TYPER, GICR_WAKER = 0x0000, 0x0004, 0x0008, 0x0014
GICR_IGRPMODR0 = 0x0D00
WAKER_PROCESSOR_SLEEP, WAKER_CHILDREN_ASLEEP = 1 << 1, 1 << 2
GICR_TYPER_LAST = 1 << 4


def affinity(mpidr: int) -> int:
    """The 32-bit affinity Aff3.Aff2.Aff1.Aff0 of an MPIDR_EL1 (or a GICD_IROUTER)
    value: Aff3 from [39:32], Aff2..Aff0 from [23:0]."""
    return (mpidr >> 32 & 0xFF) << 24 | mpidr & 0xFFFFFF


class VgicV3Mixin:
    """GICv3 distributor/redistributor MMIO and SGI generation for Vgic."""

    def _v3_init(self, mpidrs) -> None:
        mpidrs = list(range(self.nr_vcpus)) if mpidrs is None else [int(m) for m in mpidrs]
        if len(mpidrs) != self.nr_vcpus:
            raise ValueError(f"{len(mpidrs)} MPIDRs for {self.nr_vcpus} vCPUs")
        self.affinities = [affinity(m) for m in mpidrs]
        self._by_affinity = {a: v for v, a in enumerate(self.affinities)}
        if len(self._by_affinity) != self.nr_vcpus:
            raise ValueError(f"MPIDR affinities must be distinct, got {[hex(a) for a in self.affinities]}")
        self.waker = [WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP] * self.nr_vcpus

    def _require_v3(self, what: str) -> None:
        if self.version != 3:
            raise RuntimeError(f"{what} exists only in GICv3 mode (this vGIC is a GICv2)")

    # --- affinity routing ---------------------------------------------------------------------
    def _route_target(self, route: int) -> int | None:
        """The vCPU a GICD_IROUTER value names (IHI 0069, GICD_IROUTER<n>)."""
        if route & IROUTER_IRM:
            return 0
        return self._by_affinity.get(affinity(route))

    def send_sgi_v3(self, source: int, value: int, allow_group1: bool = True) -> list[int]:
        """A trapped ICC_SGI1R_EL1 write of `source` (allow_group1=False for
        ICC_SGI0R_EL1 / ICC_ASGI1R_EL1): INTID [27:24]; IRM [40] = 1 targets every
        vCPU but the sender, else the vCPUs of affinity Aff3.Aff2.Aff1.<n> [55:48],
        [39:32], [23:16] with n = 16 * RS [47:44] + a set bit of TargetList [15:0].
        Returns the targets whose SGI became pending (the vCPUs to kick)."""
        self._require_v3("ICC_SGI1R_EL1")
        self._check_vcpu(source)
        sgi = value >> 24 & 0xF
        if value >> 40 & 1:
            targets = [v for v in range(self.nr_vcpus) if v != source]
        else:
            cluster = (value >> 48 & 0xFF) << 24 | (value >> 32 & 0xFF) << 16 | (value >> 16 & 0xFF) << 8
            base, tlist = (value >> 44 & 0xF) * 16, value & 0xFFFF
            targets = sorted(t for n in range(16) if tlist >> n & 1
                             if (t := self._by_affinity.get(cluster | (base + n))) is not None)
        kicked = []
        for t in targets:
            irq = self.private[t][sgi]
            if irq.group == 1 and not allow_group1:
                continue
            if not irq.pending_latch:
                irq.pending_latch = True
                kicked.append(t)
                self._update(irq)
        self._kick(kicked)
        return kicked

    # --- distributor ----------------------------------------------------------------------------
    def _v3_dist_access(self, vcpu: int, offset: int, size: int, value: int | None) -> int:
        is_write = value is not None
        if GICD_IROUTER <= offset < GICD_IROUTER + 8 * 1024:
            return self._irouter_access(offset, size, value)
        bank = self._find_bank(offset)       # the register-bank table is shared with GICv2
        byte_ok = bank is not None and bank[3]
        if size not in ((1, 4) if byte_ok else (4,)) or offset % size:
            return self._bad(offset, is_write)
        if bank is not None:
            base, bits, kind, _ = bank
            if kind in ("target", "cpendsgi", "spendsgi") or (offset - base) * 8 // bits < NR_PRIVATE:
                return 0                     # RES0 with ARE = 1: banked state is in the redistributor
            return self._bank_access(vcpu, bank, offset, size, value)
        if offset == GICD_CTLR:
            if is_write:
                self.ctlr = value & (CTLR_ENABLE_GRP0 | CTLR_ENABLE_GRP1)
                self._update_all()
            return self.ctlr | CTLR_ARE | CTLR_DS
        if offset == GICD_TYPER:
            return 0 if is_write else (self.it_lines - 1) | TYPER_IDBITS | TYPER_A3V | TYPER_RSS
        if offset == GICD_IIDR:
            return 0 if is_write else IIDR_VALUE
        if offset == GICD_TYPER2:
            return 0
        if (GICD_IGRPMODR <= offset < GICD_IGRPMODR + 0x80 or GICD_NSACR <= offset < GICD_NSACR + 0x100
                or offset == GICD_SGIR):
            return 0                         # RAZ/WI: DS = 1, or RES0 with ARE = 1
        if ID_BASE <= offset < 0x10000:
            return PIDR2_VALUE if offset == PIDR2 and not is_write else 0
        return self._bad(offset, is_write)

    def _irouter_access(self, offset: int, size: int, value: int | None) -> int:
        """GICD_IROUTER<n> at 0x6000 + 8n: one 64-bit access or a 32-bit half."""
        is_write = value is not None
        if size not in (4, 8) or offset % size:
            return self._bad(offset, is_write)
        intid, shift = (offset - GICD_IROUTER) // 8, 8 * (offset % 8)
        if intid < NR_PRIVATE:
            return 0                         # IROUTER0-31: reserved, RAZ/WI
        if intid >= self.nr_irqs:
            return self._bad(offset, is_write)
        irq = self.spis[intid - NR_PRIVATE]
        mask = ((1 << (8 * size)) - 1) << shift
        if not is_write:
            return (irq.route & mask) >> shift
        irq.route = ((irq.route & ~mask) | (value << shift & mask)) & IROUTER_MASK
        self._update(irq)
        return 0

    # --- redistributors -------------------------------------------------------------------------
    def redist_read(self, vcpu_frame: int, offset: int, size: int) -> int:
        """Read from the redistributor of vCPU `vcpu_frame` (whoever accesses it);
        `offset` is within its 0x20000 region (RD_base, SGI_base at +0x10000)."""
        self._require_v3("a redistributor")
        self._check_vcpu(vcpu_frame)
        return self._redist_access(vcpu_frame, offset, size, None)

    def redist_write(self, vcpu_frame: int, offset: int, size: int, value: int) -> None:
        self._require_v3("a redistributor")
        self._check_vcpu(vcpu_frame)
        self._redist_access(vcpu_frame, offset, size, value & ((1 << (8 * size)) - 1) if size > 0 else 0)

    def _redist_access(self, frame: int, offset: int, size: int, value: int | None) -> int:
        if SGI_BASE <= offset < SGI_BASE + RD_FRAME_SIZE:
            return self._sgi_frame_access(frame, offset, size, value)
        is_write = value is not None
        if (offset, size) in ((GICR_TYPER, 8), (GICR_TYPER, 4), (GICR_TYPER + 4, 4)):   # 64-bit, or halves
            if is_write:
                return 0                     # read-only
            return self._gicr_typer(frame) >> (8 * (offset - GICR_TYPER)) & ((1 << (8 * size)) - 1)
        if size != 4 or offset % 4 or offset >= RD_FRAME_SIZE:
            return self._bad(offset, is_write)
        if offset == GICR_CTLR:
            return 0                         # no LPIs: EnableLPIs RAZ/WI, RWP/UWP read 0
        if offset == GICR_IIDR:
            return 0 if is_write else IIDR_VALUE
        if offset == GICR_WAKER:
            if is_write:
                sleep = value & WAKER_PROCESSOR_SLEEP
                self.waker[frame] = sleep | (WAKER_CHILDREN_ASLEEP if sleep else 0)
            return self.waker[frame]
        if ID_BASE <= offset:
            return PIDR2_VALUE if offset == PIDR2 and not is_write else 0
        return self._bad(offset, is_write)

    def _gicr_typer(self, frame: int) -> int:
        """GICR_TYPER: Affinity_Value [63:32], Processor_Number [23:8], Last [4];
        no (v)LPIs, no direct LPI injection."""
        last = GICR_TYPER_LAST if frame == self.nr_vcpus - 1 else 0
        return self.affinities[frame] << 32 | (frame & 0xFFFF) << 8 | last

    def _sgi_frame_access(self, frame: int, offset: int, size: int, value: int | None) -> int:
        """SGI_base: the banked SGI/PPI registers, at the GICD offsets of their first
        register (GICR_IGROUPR0 0x80 ... GICR_ICFGR1 0xC04)."""
        is_write = value is not None
        o = offset - SGI_BASE
        bank = self._find_bank(o)
        if bank is not None:
            base, bits, kind, byte_ok = bank
            span = NR_PRIVATE * bits // 8     # bytes of one vCPU's private INTIDs
            if (kind in ("target", "cpendsgi", "spendsgi") or not base <= o < base + span
                    or size not in ((1, 4) if byte_ok else (4,)) or o % size):
                return self._bad(offset, is_write)
            return self._bank_access(frame, bank, o, size, value)
        if size != 4 or o % 4:
            return self._bad(offset, is_write)
        if o == GICR_IGRPMODR0:
            return 0                         # DS = 1: RAZ/WI
        return self._bad(offset, is_write)
