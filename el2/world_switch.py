"""The world switch as a readable script of symmetric save/restore pairs
(KVM hyp/nvhe/switch.c; Linux 4.0 arch/arm64/kvm/hyp.S for the measured one).

Each register group declares its registers once; the same declaration drives
the state moved and the cycles charged.  Rows of the world-switch table are
the sums of what these functions charged while a real exit ran.
"""
from __future__ import annotations

from dataclasses import replace

from engine.ledger import LOWVISOR, Ledger, Step
from el2 import context as C
from el2.hcr import CNTHCTL_EL1TVT
from el2.design import NVHE, Design
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


HOST_USER_REGS = ("TPIDR_EL0", "TPIDRRO_EL0")    # arch/arm64/kvm/hyp/include/hyp/sysreg-sr.h


def _pairs(n: int) -> int:
    return (n + 1) // 2          # STP/LDP move two registers


class WorldSwitch:
    def __init__(self, cpu, ledger: Ledger, el2: El2Regs, gich, design: Design = NVHE):
        """`gich`: the pCPU's GICv2 GICH (MMIO) or GICv3 ICH (system registers).
        `design`: which groups a trap switches; the others move at vcpu_load/put."""
        self.cpu, self.ledger, self.el2, self.gich, self.design = cpu, ledger, el2, gich, design
        self.v3 = not isinstance(gich, GichV2)
        # the design's choices, read on every trap: plain attributes
        self._per_exit_timer, self._per_exit_traps = design.per_exit_timer, design.per_exit_traps
        self._per_exit_vttbr, self._per_exit_vgic = design.per_exit_vttbr, design.per_exit_vgic
        v3 = not isinstance(gich, GichV2)
        self.save_vgic = self.save_vgic_v3 if v3 else self.save_vgic_v2
        self.restore_vgic = self.restore_vgic_v3 if v3 else self.restore_vgic_v2
        c = ledger.costs
        # the guest's GP state on a trap: KVM's context (hyp/entry.S), or Xen's trap frame
        gp_x, gp_special = (C.XEN_FRAME_X, C.XEN_FRAME_SPECIAL) if design.name == "type1" else (C.GP_X, C.GP_SPECIAL)
        self.cost = {
            (GP, "save", "guest"): _pairs(len(gp_x)) * c["gp_pair_store"] + len(gp_special) * c["special_reg_save"],
            (GP, "restore", "guest"): _pairs(len(gp_x)) * c["gp_pair_load"] + len(gp_special) * c["special_reg_restore"],
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
        if design.name == "type1":
            frame = "x0-x30, ELR/SPSR_EL2, SPSR/SP/ELR_EL1, SP_EL0"
            self.labels[(GP, "save", "guest")] = f"entry.S: save the trap frame ({frame})"
            self.labels[(GP, "restore", "guest")] = "return_to_guest (exit hyp=0): restore the trap frame"
        self.nregs = {(GP, "guest"): len(gp_x) + len(gp_special),
                      (GP, "host"): len(C.HOST_GP_X) + len(C.GP_SPECIAL),
                      (FP, "guest"): len(C.FP_Q) + len(C.FP_CTRL), (FP, "host"): len(C.FP_Q) + len(C.FP_CTRL),
                      (EL1, "guest"): len(C.EL1_SYSREGS), (EL1, "host"): len(C.EL1_SYSREGS)}

        # Each batch of bank moves is one charge of the declared groups' steps: the groups
        # this design switches on every trap (the rest: vcpu_load/put, or never).
        d = design
        guest = [GP] + [FP] * d.per_exit_fp + [EL1] * d.per_exit_el1
        # the host's FP/SIMD state is live whenever it has a context (split mode or VHE)
        host = ([GP] * d.saves_host_gp + [FP] * (d.per_exit_fp and d.saves_host_gp)
                + [EL1] * d.switches_host_el1)
        # lazy FP/SIMD is switched only when the guest uses it (vcpu_put charges that case)
        deferred = [g for g in (FP, EL1) if g not in guest and not (g == FP and d.fp_lazy)]
        # A VHE host keeps its own EL0 thread registers in the EL1 bank's TPIDR_EL0/TPIDRRO_EL0:
        # when the guest's EL1 state is deferred, load/put swap those two with the host's.
        self._host_user_regs = EL1 in deferred and d.host_at_el2 and d.saves_host_gp
        self.batches = {}
        for kind, who, order in (("save", "guest", guest), ("restore", "guest", guest[::-1]),
                                 ("save", "host", host), ("restore", "host", host[::-1]),
                                 ("save", "put", deferred), ("restore", "load", deferred[::-1])):
            w = who if who in ("guest", "host") else "guest"
            steps = tuple(Step(LOWVISOR, self.labels[(g, kind, w)] + ("" if w == who else f" (vcpu_{who})"),
                               self.cost[(g, kind, w)], g, kind, self.nregs[(g, w)]) for g in order)
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
        st = self._step(group, kind, reads, writes, rkey, wkey, what)
        return st.cycles, (st,)

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
        if self._per_exit_timer:
            self.ledger.charge_steps(*self.fixed["save_timer"])

    def restore_timer(self, ctx: C.VcpuContext) -> None:
        st, t = self.cpu.st, ctx.timer
        self.el2.cnthctl = t.cnthctl
        st.cntvoff, st.cntv_cval, st.cntv_ctl = t.cntvoff, t.cntv_cval, t.cntv_ctl   # 3 writes
        st.trap_timer = int(bool(t.cnthctl & CNTHCTL_EL1TVT))
        self.cpu.recalc_timer()
        if self._per_exit_timer:
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
        mode = self._per_exit_vgic
        if mode == "all":
            self._access(VGIC, "save", 7 + g.nr_lr, 1, "gich_mmio_read", "gich_mmio_write",
                         lambda: f"save vGIC (VMCR, MISR, EISR0/1, ELRSR0/1, APR, {g.nr_lr} LRs; HCR=0)")
        elif mode == "used" and v.used_lrs:     # KVM 4.12+: ELRSR0/1 and the used LRs only
            self._access(VGIC, "save", 2 + v.used_lrs, 1, "gich_mmio_read", "gich_mmio_write",
                         lambda: f"save vGIC (ELRSR0/1, {v.used_lrs} used LRs; HCR=0)")

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
        mode = self._per_exit_vgic
        if mode == "all":
            self._access(VGIC, "restore", 0, 3 + v.used_lrs, "gich_mmio_read", "gich_mmio_write",
                         lambda: f"restore vGIC (HCR, VMCR, APR, {v.used_lrs} used LRs)")
        elif mode == "used" and v.used_lrs:
            self._access(VGIC, "restore", 0, 1 + v.used_lrs, "gich_mmio_read", "gich_mmio_write",
                         lambda: f"restore vGIC (HCR, {v.used_lrs} used LRs)")

    # --- vGIC: ICH_* system registers (GICv3) ----------------------------------------
    def save_vgic_v3(self, ctx: C.VcpuContext) -> None:
        """KVM __vgic_v3_save_state: ICH_VMCR, MISR, EISR, ELRSR, AP0R0, AP1R0 and the
        LRs are system-register reads (far cheaper than GICv2's GICH MMIO), HCR = 0."""
        g, v = self.gich, ctx.vgic
        v.vmcr, v.misr, v.eisr, v.elrsr, ap0r, ap1r, lrs = g.snapshot()
        v.ap0r, v.ap1r, v.lr[:] = list(ap0r), list(ap1r), lrs
        g.write("HCR", 0, notify=False)
        mode = self._per_exit_vgic
        if mode == "all":
            self._access(VGIC, "save", 6 + g.nr_lr, 1, "ich_sysreg_read", "ich_sysreg_write",
                         lambda: f"save vGIC (ICH_VMCR, MISR, EISR, ELRSR, AP0R0, AP1R0, {g.nr_lr} LRs; HCR=0)")
        elif mode == "used" and v.used_lrs:
            self._access(VGIC, "save", 1 + v.used_lrs, 1, "ich_sysreg_read", "ich_sysreg_write",
                         lambda: f"save vGIC (ICH_ELRSR, {v.used_lrs} used LRs; HCR=0)")

    def restore_vgic_v3(self, ctx: C.VcpuContext) -> None:
        g, v = self.gich, ctx.vgic
        g.write("HCR", v.hcr, notify=False)
        g.write("VMCR", v.vmcr, notify=False)
        g.write("AP0R0", v.ap0r[0], notify=False)
        g.write("AP1R0", v.ap1r[0], notify=False)
        for i in range(g.nr_lr):
            g.write(f"LR{i}", v.lr[i] if i < v.used_lrs else 0, notify=False)
        g.notify()
        mode = self._per_exit_vgic
        if mode == "all":
            self._access(VGIC, "restore", 0, 4 + v.used_lrs, "ich_sysreg_read", "ich_sysreg_write",
                         lambda: f"restore vGIC (ICH_HCR, VMCR, AP0R0, AP1R0, {v.used_lrs} used LRs)")
        elif mode == "used" and v.used_lrs:
            self._access(VGIC, "restore", 0, 1 + v.used_lrs, "ich_sysreg_read", "ich_sysreg_write",
                         lambda: f"restore vGIC (ICH_HCR, {v.used_lrs} used LRs)")

    # --- EL2 trap configuration and stage 2 ------------------------------------
    def deactivate_traps(self, host: C.HostContext) -> None:
        e, t = self.el2, host.trap
        e.hcr, e.cptr, e.hstr, e.mdcr = t.hcr, t.cptr, t.hstr, t.mdcr
        if self._per_exit_traps:
            self.ledger.charge_steps(*self.fixed["deactivate_traps"])

    def activate_traps(self, ctx: C.VcpuContext) -> None:
        e, t = self.el2, ctx.trap
        e.hcr, e.cptr, e.hstr, e.mdcr = t.hcr, t.cptr, t.hstr, t.mdcr
        if self._per_exit_traps:
            self.ledger.charge_steps(*self.fixed["activate_traps"])

    def deactivate_vm(self) -> None:
        self.el2.vttbr = 0
        if self._per_exit_vttbr:
            self.ledger.charge_steps(*self.fixed["deactivate_vm"])

    def activate_vm(self, ctx: C.VcpuContext) -> None:
        self.el2.vttbr = ctx.vttbr
        if self._per_exit_vttbr:
            self.ledger.charge_steps(*self.fixed["activate_vm"])

    # --- vcpu_put / vcpu_load: what this design defers from the trap path --------
    def _vgic_deferred(self, kind: str) -> tuple[int, int, str]:
        """(reads, writes, what) of the vGIC state moved at put/load."""
        mode, nr = self._per_exit_vgic, self.gich.nr_lr
        if mode == "all":
            return 0, 0, ""
        if mode == "used":                      # VMCR and the active priorities
            regs = 3 if self.v3 else 2
            what = "ICH_VMCR, AP0R0, AP1R0" if self.v3 else "GICH_VMCR, GICH_APR"
        else:                                   # the whole interface, as a trap never moves it
            regs = {(True, "save"): 6 + nr, (True, "restore"): 4 + nr,        # as save/restore_vgic_v3
                    (False, "save"): 7 + nr, (False, "restore"): 3 + nr}[(self.v3, kind)]
            what = f"vGIC interface and {nr} LRs"
        return (regs, 0, what) if kind == "save" else (0, regs, what)

    def _step(self, group: str, kind: str, reads: int, writes: int, rkey: str, wkey: str, what: str,
              where: str = LOWVISOR) -> Step:
        c = self.ledger.costs
        return Step(where, what, reads * c[rkey] + writes * c[wkey], group, kind, reads + writes)

    def _vgic_keys(self) -> tuple[str, str]:
        return ("ich_sysreg_read", "ich_sysreg_write") if self.v3 else ("gich_mmio_read", "gich_mmio_write")

    def put_steps(self, fp_used: bool = False, where: str = LOWVISOR) -> list[Step]:
        """What vcpu_put moves: the groups this design leaves loaded across traps.
        `fp_used`: a lazy design saw the guest use FP/SIMD (CPTR_EL2.TFP trapped once):
        its registers were switched then, and are saved now."""
        d = self.design
        steps = [replace(st, where=where) for st in self.batches[("save", "put")][1]]
        if self._host_user_regs:      # kvm_vcpu_put_sysregs_vhe: __sysreg_restore_user_state(host)
            steps.append(Step(where, "vcpu_put: restore host TPIDR_EL0, TPIDRRO_EL0",
                              len(HOST_USER_REGS) * self.ledger.costs["el1_sysreg_restore"], EL1, "restore",
                              len(HOST_USER_REGS)))
        if fp_used and d.fp_lazy:
            steps.append(Step(where, "lazy FP/SIMD: first-use trap, host save + guest restore",
                              self.ledger.costs["exc_entry_el2"] + self.cost[(FP, "save", "host")]
                              + self.cost[(FP, "restore", "guest")], FP, "restore"))
            steps.append(Step(where, "lazy FP/SIMD: save guest", self.cost[(FP, "save", "guest")], FP, "save"))
        r, w, what = self._vgic_deferred("save")
        if r:
            steps.append(self._step(VGIC, "save", r, w, *self._vgic_keys(), f"vcpu_put: save {what}", where))
        if not d.per_exit_timer:
            steps.append(self._step(TIMER, "save", 2, 2, "el2_sysreg_read", "el2_sysreg_write",
                                    "vcpu_put: save timer", where))
        if not d.per_exit_vttbr:
            steps.append(self._step(VM, "save", 0, 1, "vttbr_write", "vttbr_write",
                                    "vcpu_put: deactivate stage 2", where))
        return steps

    def load_steps(self, where: str = LOWVISOR) -> list[Step]:
        """What vcpu_load moves: the mirror of put_steps."""
        d = self.design
        steps = []
        if not d.per_exit_traps:
            steps += [replace(st, where=where) for st in self.fixed["activate_traps"][1]]
        if not d.per_exit_vttbr:
            steps.append(self._step(VM, "restore", 0, 1, "vttbr_write", "vttbr_write",
                                    "vcpu_load: activate stage 2 (VMID)", where))
        if not d.per_exit_timer:
            steps.append(self._step(TIMER, "restore", 0, 4, "el2_sysreg_read", "el2_sysreg_write",
                                    "vcpu_load: restore timer", where))
        r, w, what = self._vgic_deferred("restore")
        if w:
            steps.append(self._step(VGIC, "restore", r, w, *self._vgic_keys(), f"vcpu_load: restore {what}", where))
        if self._host_user_regs:      # kvm_vcpu_load_sysregs_vhe: __sysreg_save_user_state(host)
            steps.append(Step(where, "vcpu_load: save host TPIDR_EL0, TPIDRRO_EL0",
                              len(HOST_USER_REGS) * self.ledger.costs["el1_sysreg_save"], EL1, "save",
                              len(HOST_USER_REGS)))
        steps += [replace(st, where=where) for st in self.batches[("restore", "load")][1]]
        return steps

    def vcpu_put(self, fp_used: bool = False, where: str = LOWVISOR) -> None:
        """The vCPU leaves its pCPU (schedule out, or KVM_RUN returns to user space)."""
        steps = self.put_steps(fp_used, where)
        self.ledger.charge_steps(sum(st.cycles for st in steps), tuple(steps))

    def vcpu_load(self, where: str = LOWVISOR) -> None:
        """The vCPU gets a pCPU (schedule in, or the next KVM_RUN)."""
        steps = self.load_steps(where)
        self.ledger.charge_steps(sum(st.cycles for st in steps), tuple(steps))

    # --- the scripts ---------------------------------------------------------------
    def enter_guest(self, ctx: C.VcpuContext, host: C.HostContext) -> None:
        """__kvm_vcpu_run, up to the ERET: save host, load guest."""
        self.save_host_state(host)              # GP, FP/SIMD, EL1 (those the design switches)
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
