"""The world switch as a readable script of symmetric save/restore pairs
(KVM hyp/nvhe/switch.c; Linux 4.0 arch/arm64/kvm/hyp.S for the measured one).

Each register group declares its registers once; the same declaration drives
the state moved and the cycles charged.  Rows of the world-switch table are
the sums of what these functions charged while a real exit ran.
"""
from __future__ import annotations

from engine.ledger import LOWVISOR, Ledger
from el2 import context as C
from el2.regs import El2Regs
from gic.v2_hyp import (GICH_APR, GICH_EISR0, GICH_EISR1, GICH_ELRSR0, GICH_ELRSR1, GICH_HCR,
                        GICH_LR0, GICH_MISR, GICH_VMCR, GichV2)

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
    def __init__(self, cpu, ledger: Ledger, el2: El2Regs, gich: GichV2):
        self.cpu, self.ledger, self.el2, self.gich = cpu, ledger, el2, gich
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
        self.nregs = {(GP, "guest"): len(C.GP_X) + len(C.GP_SPECIAL),
                      (GP, "host"): len(C.HOST_GP_X) + len(C.GP_SPECIAL),
                      (FP, "guest"): len(C.FP_Q) + len(C.FP_CTRL), (FP, "host"): len(C.FP_Q) + len(C.FP_CTRL),
                      (EL1, "guest"): len(C.EL1_SYSREGS), (EL1, "host"): len(C.EL1_SYSREGS)}

    # --- charging --------------------------------------------------------------
    def _bank_charge(self, group: str, kind: str, who: str) -> None:
        self.ledger.charge(LOWVISOR, f"{kind} {who} {group}", self.cost[(group, kind, who)],
                           group=group, kind=kind, regs=self.nregs[(group, who)])

    def _access(self, group: str, kind: str, reads: int, writes: int, rkey: str, wkey: str,
                what: str) -> None:
        c = self.ledger.costs
        self.ledger.charge(LOWVISOR, what, reads * c[rkey] + writes * c[wkey], group=group, kind=kind,
                           regs=reads + writes)

    # --- GP, FP, EL1: engine banks (guest) and the host's values ---------------
    def save_guest_bank(self, group: str, bank) -> None:
        bank.read(self.cpu.uch)
        self._bank_charge(group, "save", "guest")

    def restore_guest_bank(self, group: str, bank) -> None:
        bank.write(self.cpu.uch)
        self._bank_charge(group, "restore", "guest")

    def save_host(self, group: str, values: list, saved: list) -> None:
        saved[:] = values
        self._bank_charge(group, "save", "host")

    def restore_host(self, group: str, values: list, saved: list) -> None:
        values[:] = saved
        self._bank_charge(group, "restore", "host")

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
        self.cpu.recalc_timer()
        self._access(TIMER, "restore", 0, 4, "el2_sysreg_read", "el2_sysreg_write",
                     "restore timer (CNTHCTL, CNTVOFF, CNTV_CVAL, CNTV_CTL)")

    # --- vGIC: GICH MMIO (GICv2) ------------------------------------------------
    def save_vgic(self, ctx: C.VcpuContext) -> None:
        g, v = self.gich, ctx.vgic
        v.vmcr, v.misr = g.read(GICH_VMCR), g.read(GICH_MISR)
        v.eisr = g.read(GICH_EISR0) | g.read(GICH_EISR1) << 32
        v.elrsr = g.read(GICH_ELRSR0) | g.read(GICH_ELRSR1) << 32
        v.apr = g.read(GICH_APR)
        for i in range(g.nr_lr):
            v.lr[i] = g.read(GICH_LR0 + 4 * i)
        g.write(GICH_HCR, 0)
        self._access(VGIC, "save", 7 + g.nr_lr, 1, "gich_mmio_read", "gich_mmio_write",
                     f"save vGIC (VMCR, MISR, EISR0/1, ELRSR0/1, APR, {g.nr_lr} LRs; HCR=0)")

    def restore_vgic(self, ctx: C.VcpuContext) -> None:
        g, v = self.gich, ctx.vgic
        g.write(GICH_HCR, v.hcr)
        g.write(GICH_VMCR, v.vmcr)
        g.write(GICH_APR, v.apr)
        for i in range(g.nr_lr):     # the LRs not in use are empty: only used ones are written
            if i < v.used_lrs:
                g.write(GICH_LR0 + 4 * i, v.lr[i])
            else:
                g.lr[i] = 0
        self._access(VGIC, "restore", 0, 3 + v.used_lrs, "gich_mmio_read", "gich_mmio_write",
                     f"restore vGIC (HCR, VMCR, APR, {v.used_lrs} used LRs)")

    # --- EL2 trap configuration and stage 2 ------------------------------------
    def deactivate_traps(self, host: C.HostContext) -> None:
        e, t = self.el2, host.trap
        e.hcr, e.cptr, e.hstr, e.mdcr = t.hcr, t.cptr, t.hstr, t.mdcr
        self._access(TRAPS, "save", 0, 4, "el2_sysreg_read", "el2_sysreg_write",
                     "deactivate traps (HCR, CPTR, HSTR, MDCR)")

    def activate_traps(self, ctx: C.VcpuContext) -> None:
        e, t = self.el2, ctx.trap
        e.hcr, e.cptr, e.hstr, e.mdcr = t.hcr, t.cptr, t.hstr, t.mdcr
        self._access(TRAPS, "restore", 0, 4, "el2_sysreg_read", "el2_sysreg_write",
                     "activate traps (HCR, CPTR, HSTR, MDCR)")

    def deactivate_vm(self) -> None:
        self.el2.vttbr = 0
        self.ledger.charge(LOWVISOR, "deactivate stage 2 (VTTBR=0)", self.ledger.costs["vttbr_write"],
                           group=VM, kind="save", regs=1)

    def activate_vm(self, ctx: C.VcpuContext) -> None:
        self.el2.vttbr = ctx.vttbr
        self.ledger.charge(LOWVISOR, "activate stage 2 (VTTBR, VMID)", self.ledger.costs["vttbr_write"],
                           group=VM, kind="restore", regs=1)

    # --- the scripts ---------------------------------------------------------------
    def enter_guest(self, ctx: C.VcpuContext, host: C.HostContext) -> None:
        """__kvm_vcpu_run, up to the ERET: save host, load guest."""
        self.save_host(GP, host.gp, host.saved_gp)
        self.save_host(FP, host.fp, host.saved_fp)
        self.save_host(EL1, host.el1, host.saved_el1)
        self.activate_traps(ctx)
        self.activate_vm(ctx)
        self.restore_vgic(ctx)
        self.restore_timer(ctx)
        self.restore_guest_bank(EL1, ctx.el1)
        self.restore_guest_bank(FP, ctx.fp)
        self.restore_guest_bank(GP, ctx.gp)

    def exit_guest(self, ctx: C.VcpuContext, host: C.HostContext) -> None:
        """__kvm_vcpu_return: save guest, load host - the mirror image of enter_guest."""
        self.save_guest_bank(GP, ctx.gp)
        self.save_guest_bank(FP, ctx.fp)
        self.save_guest_bank(EL1, ctx.el1)
        self.save_timer(ctx, host)
        self.save_vgic(ctx)
        self.deactivate_traps(host)
        self.deactivate_vm()
        self.restore_host(EL1, host.el1, host.saved_el1)
        self.restore_host(FP, host.fp, host.saved_fp)
        self.restore_host(GP, host.gp, host.saved_gp)
