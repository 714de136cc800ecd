"""The world switch as a readable script of symmetric save/restore pairs
(KVM hyp/nvhe/switch.c; Linux 4.0 arch/arm64/kvm/hyp.S for the measured one).

Each register group declares its registers once; the same declaration drives
the state moved and the cycles charged.  Rows of the world-switch table are
the sums of what these functions charged while a real exit ran.
"""
from __future__ import annotations

from engine.ledger import LOWVISOR, Ledger, Step
from el2 import context as C
from el2.hcr import CNTHCTL_EL1TVT
from el2.regs import El2Regs
from gic.v2_hyp import GICH_APR, GICH_HCR, GICH_LR0, GICH_VMCR, GichV2

GP = "GP registers"
FP = "FP/SIMD registers"
EL1 = "EL1 system registers"
VGIC = "VGIC registers"
TIMER = "Timer registers"
TRAPS = "EL2 configuration registers"
VM = "EL2 virtual memory registers"
GROUPS = (GP, FP, EL1, VGIC, TIMER, TRAPS, VM)


def _pairs(n: int) -> int:
    return (n + 1) // 2          # STP/LDP move two registers


class WorldSwitch:
    def __init__(self, cpu, ledger: Ledger, el2: El2Regs, gich):
        """`gich`: the pCPU's GICv2 GICH (MMIO) or GICv3 ICH (system registers)."""
        self.cpu, self.ledger, self.el2, self.gich = cpu, ledger, el2, gich
        v3 = not isinstance(gich, GichV2)
        self.save_vgic = self.save_vgic_v3 if v3 else self.save_vgic_v2
        self.restore_vgic = self.restore_vgic_v3 if v3 else self.restore_vgic_v2
        c = ledger.costs
        self.cost = {
            (GP, "save", "guest"): _pairs(len(C.GP_X)) * c["gp_pair_store"] + len(C.GP_SPECIAL) * c["special_reg_save"],
            (GP, "restore", "guest"): _pairs(len(C.GP_X)) * c["gp_pair_load"] + len(C.GP_SPECIAL) * c["special_reg_restore"],
            (GP, "save", "host"): _pairs(len(C.HOST_GP_X)) * c["gp_pair_store"] + len(C.GP_SPECIAL) * c["special_reg_save"],
            (GP, "restore", "host"): _pairs(len(C.HOST_GP_X)) * c["gp_pair_load"] + len(C.GP_SPECIAL) * c["special_reg_restore"],
            (FP, "save", "guest"): _pairs(len(C.FP_Q)) * c["fp_pair_store"] + len(C.FP_CTRL) * c["fp_ctrl_save"],
            (FP, "restore", "guest"): _pairs(len(C.FP_Q)) * c["fp_pair_load"] + len(C.FP_CTRL) * c["fp_ctrl_restore"],
            (EL1, "save", "guest"): len(C.EL1_SYSREGS) * c["el1_sysreg_save"],
            (EL1, "restore", "guest"): len(C.EL1_SYSREGS) * c["el1_sysreg_restore"],
        }
        for kind in ("save", "restore"):     # the host's FP and EL1 state are the same lists
            self.cost[(FP, kind, "host")] = self.cost[(FP, kind, "guest")]
            self.cost[(EL1, kind, "host")] = self.cost[(EL1, kind, "guest")]
        self.labels = {(g, k, w): f"{k} {w} {g}" for (g, k, w) in self.cost}
        self.nregs = {(GP, "guest"): len(C.GP_X) + len(C.GP_SPECIAL),
                      (GP, "host"): len(C.HOST_GP_X) + len(C.GP_SPECIAL),
                      (FP, "guest"): len(C.FP_Q) + len(C.FP_CTRL), (FP, "host"): len(C.FP_Q) + len(C.FP_CTRL),
                      (EL1, "guest"): len(C.EL1_SYSREGS), (EL1, "host"): len(C.EL1_SYSREGS)}

        # Each batch of bank moves is one charge of the declared groups' steps.
        self.batches = {}
        for kind, who, order in (("save", "guest", (GP, FP, EL1)), ("restore", "guest", (EL1, FP, GP)),
                                 ("save", "host", (GP, FP, EL1)), ("restore", "host", (EL1, FP, GP))):
            steps = tuple(Step(LOWVISOR, self.labels[(g, kind, who)], self.cost[(g, kind, who)], g, kind,
                               self.nregs[(g, who)]) for g in order)
            self.batches[(kind, who)] = (sum(st.cycles for st in steps), steps)
        rd, wr = "el2_sysreg_read", "el2_sysreg_write"
        # Fixed-shape groups: (reads, writes) per access list, as declared below.
        self.fixed = {
            "save_timer": self._fixed(TIMER, "save", 2, 2, rd, wr, "save timer (CNTV_CTL, CNTV_CVAL; disable; CNTHCTL)"),
            "restore_timer": self._fixed(TIMER, "restore", 0, 4, rd, wr,
                                         "restore timer (CNTHCTL, CNTVOFF, CNTV_CVAL, CNTV_CTL)"),
            "deactivate_traps": self._fixed(TRAPS, "save", 0, 4, rd, wr, "deactivate traps (HCR, CPTR, HSTR, MDCR)"),
            "activate_traps": self._fixed(TRAPS, "restore", 0, 4, rd, wr, "activate traps (HCR, CPTR, HSTR, MDCR)"),
            "deactivate_vm": self._fixed(VM, "save", 0, 1, "vttbr_write", "vttbr_write", "deactivate stage 2 (VTTBR=0)"),
            "activate_vm": self._fixed(VM, "restore", 0, 1, "vttbr_write", "vttbr_write", "activate stage 2 (VTTBR, VMID)"),
        }

    def _fixed(self, group, kind, reads, writes, rkey, wkey, what):
        c = self.ledger.costs
        cycles = reads * c[rkey] + writes * c[wkey]
        return cycles, (Step(LOWVISOR, what, cycles, group, kind, reads + writes),)

    # --- charging --------------------------------------------------------------
    def _access(self, group: str, kind: str, reads: int, writes: int, rkey: str, wkey: str,
                what: str) -> None:
        c = self.ledger.costs
        self.ledger.charge(LOWVISOR, what, reads * c[rkey] + writes * c[wkey], group=group, kind=kind,
                           regs=reads + writes)

    # --- GP, FP, EL1: engine banks (guest) and the host's values ---------------
    # The three guest groups move in one raw batch (ctx.engine_banks); each group
    # is still charged for exactly the registers its declaration lists.
    def save_guest_banks(self, ctx: C.VcpuContext) -> None:
        ctx.engine_banks.read(self.cpu.uch)
        ctx.after_engine_read()
        self.ledger.charge_steps(*self.batches[("save", "guest")])

    def restore_guest_banks(self, ctx: C.VcpuContext) -> None:
        ctx.before_engine_write()
        ctx.engine_banks.write(self.cpu.uch)
        self.ledger.charge_steps(*self.batches[("restore", "guest")])

    def save_host_state(self, host: C.HostContext) -> None:
        """GP (callee-saved), FP/SIMD and EL1 system registers of the host."""
        host.saved_gp[:], host.saved_fp[:], host.saved_el1[:] = host.gp, host.fp, host.el1
        self.ledger.charge_steps(*self.batches[("save", "host")])

    def restore_host_state(self, host: C.HostContext) -> None:
        host.el1[:], host.fp[:], host.gp[:] = host.saved_el1, host.saved_fp, host.saved_gp
        self.ledger.charge_steps(*self.batches[("restore", "host")])

    # --- timer: the engine's virtual timer registers ----------------------------
    def save_timer(self, ctx: C.VcpuContext, host: C.HostContext) -> None:
        st, t = self.cpu.st, ctx.timer
        t.cntv_ctl, t.cntv_cval = st.cntv_ctl, st.cntv_cval          # 2 reads
        st.cntv_ctl = 0                                              # disable: the host must not see it fire
        self.cpu.recalc_timer()
        self.el2.cnthctl = host.cnthctl                              # give the host its counter access
        self._access(TIMER, "save", 2, 2, "el2_sysreg_read", "el2_sysreg_write",
                     "save timer (CNTV_CTL, CNTV_CVAL; disable; CNTHCTL)")

    def restore_timer(self, ctx: C.VcpuContext) -> None:
        st, t = self.cpu.st, ctx.timer
        self.el2.cnthctl = t.cnthctl
        st.cntvoff, st.cntv_cval, st.cntv_ctl = t.cntvoff, t.cntv_cval, t.cntv_ctl   # 3 writes
        st.trap_timer = int(bool(t.cnthctl & CNTHCTL_EL1TVT))
        self.cpu.recalc_timer()
        self.ledger.charge_steps(*self.fixed["restore_timer"])

    # --- vGIC: GICH MMIO (GICv2) ------------------------------------------------
    def save_vgic_v2(self, ctx: C.VcpuContext) -> None:
        g, v = self.gich, ctx.vgic
        # VMCR, MISR, EISR0/1, ELRSR0/1, APR and every LR: 7 + nr_lr GICH reads
        v.vmcr, v.misr, v.eisr, v.elrsr, v.apr, lrs = g.snapshot()
        v.lr[:] = lrs
        # The virtual IRQ output drops with HCR.En; nothing runs on the engine until the
        # next restore re-evaluates it, so the output is not recomputed here.
        g.write(GICH_HCR, 0, notify=False)
        self._access(VGIC, "save", 7 + g.nr_lr, 1, "gich_mmio_read", "gich_mmio_write",
                     lambda: f"save vGIC (VMCR, MISR, EISR0/1, ELRSR0/1, APR, {g.nr_lr} LRs; HCR=0)")

    def restore_vgic_v2(self, ctx: C.VcpuContext) -> None:
        g, v = self.gich, ctx.vgic
        g.write(GICH_HCR, v.hcr, notify=False)
        g.write(GICH_VMCR, v.vmcr, notify=False)
        g.write(GICH_APR, v.apr, notify=False)
        for i in range(g.nr_lr):     # the LRs not in use are empty: only used ones are written
            if i < v.used_lrs:
                g.write(GICH_LR0 + 4 * i, v.lr[i], notify=False)
            else:
                g.lr[i] = 0
        g.notify()
        self._access(VGIC, "restore", 0, 3 + v.used_lrs, "gich_mmio_read", "gich_mmio_write",
                     lambda: f"restore vGIC (HCR, VMCR, APR, {v.used_lrs} used LRs)")

    # --- vGIC: ICH_* system registers (GICv3) ----------------------------------------
    def save_vgic_v3(self, ctx: C.VcpuContext) -> None:
        """KVM __vgic_v3_save_state: ICH_VMCR, MISR, EISR, ELRSR, AP0R0, AP1R0 and the
        LRs are system-register reads (far cheaper than GICv2's GICH MMIO), HCR = 0."""
        g, v = self.gich, ctx.vgic
        v.vmcr, v.misr, v.eisr, v.elrsr, ap0r, ap1r, lrs = g.snapshot()
        v.ap0r, v.ap1r, v.lr[:] = list(ap0r), list(ap1r), lrs
        g.write("HCR", 0, notify=False)
        self._access(VGIC, "save", 6 + g.nr_lr, 1, "ich_sysreg_read", "ich_sysreg_write",
                     lambda: f"save vGIC (ICH_VMCR, MISR, EISR, ELRSR, AP0R0, AP1R0, {g.nr_lr} LRs; HCR=0)")

    def restore_vgic_v3(self, ctx: C.VcpuContext) -> None:
        g, v = self.gich, ctx.vgic
        g.write("HCR", v.hcr, notify=False)
        g.write("VMCR", v.vmcr, notify=False)
        g.write("AP0R0", v.ap0r[0], notify=False)
        g.write("AP1R0", v.ap1r[0], notify=False)
        for i in range(g.nr_lr):
            g.write(f"LR{i}", v.lr[i] if i < v.used_lrs else 0, notify=False)
        g.notify()
        self._access(VGIC, "restore", 0, 4 + v.used_lrs, "ich_sysreg_read", "ich_sysreg_write",
                     lambda: f"restore vGIC (ICH_HCR, VMCR, AP0R0, AP1R0, {v.used_lrs} used LRs)")

    # --- EL2 trap configuration and stage 2 ------------------------------------
    def deactivate_traps(self, host: C.HostContext) -> None:
        e, t = self.el2, host.trap
        e.hcr, e.cptr, e.hstr, e.mdcr = t.hcr, t.cptr, t.hstr, t.mdcr
        self.ledger.charge_steps(*self.fixed["deactivate_traps"])

    def activate_traps(self, ctx: C.VcpuContext) -> None:
        e, t = self.el2, ctx.trap
        e.hcr, e.cptr, e.hstr, e.mdcr = t.hcr, t.cptr, t.hstr, t.mdcr
        self.ledger.charge_steps(*self.fixed["activate_traps"])

    def deactivate_vm(self) -> None:
        self.el2.vttbr = 0
        self.ledger.charge_steps(*self.fixed["deactivate_vm"])

    def activate_vm(self, ctx: C.VcpuContext) -> None:
        self.el2.vttbr = ctx.vttbr
        self.ledger.charge_steps(*self.fixed["activate_vm"])

    # --- the scripts ---------------------------------------------------------------
    def enter_guest(self, ctx: C.VcpuContext, host: C.HostContext) -> None:
        """__kvm_vcpu_run, up to the ERET: save host, load guest."""
        self.save_host_state(host)              # GP, FP/SIMD, EL1
        self.activate_traps(ctx)
        self.activate_vm(ctx)
        self.restore_vgic(ctx)
        self.restore_timer(ctx)
        self.restore_guest_banks(ctx)           # EL1, FP/SIMD, then GP (PC, PSTATE) last

    def exit_guest(self, ctx: C.VcpuContext, host: C.HostContext) -> None:
        """__kvm_vcpu_return: save guest, load host - the mirror image of enter_guest."""
        self.save_guest_banks(ctx)              # GP, FP/SIMD, EL1
        self.save_timer(ctx, host)
        self.save_vgic(ctx)
        self.deactivate_traps(host)
        self.deactivate_vm()
        self.restore_host_state(host)           # EL1, FP/SIMD, GP
