"""Generic timer semantics (ARM ARM D11.2)."""
import pytest

from timers import generic_timer as gt


def test_counter_rounding():
    c = gt.Counter.for_clock(2_400_000_000, 50_000_000)
    assert (c.mul, c.div) == (1, 48)
    assert c.ticks(47) == 0 and c.ticks(48) == 1
    assert c.cycles_for(1) == 48 and c.ticks(c.cycles_for(12345)) == 12345


@pytest.mark.parametrize("ctl,cval,count,istatus,out", [
    (0, 10, 20, False, False),                 # disabled: no status
    (1, 10, 9, False, False),                  # not yet
    (1, 10, 10, True, True),                   # CNTVCT >= CVAL
    (3, 10, 20, True, False),                  # IMASK masks the output, not ISTATUS
])
def test_istatus_and_output(ctl, cval, count, istatus, out):
    assert gt.istatus(ctl, cval, count) == istatus, f"ISTATUS for ctl={ctl} cval={cval} count={count}"
    assert gt.output(ctl, cval, count) == out
    assert bool(gt.read_ctl(ctl, cval, count) & gt.CTL_ISTATUS) == istatus


def test_tval_is_a_signed_view_of_cval():
    assert gt.write_tval(100, 1000) == 1100
    assert gt.write_tval(0xFFFFFFFF, 1000) == 999, "TVAL is sign-extended"
    assert gt.read_tval(1100, 1000) == 100
    assert gt.read_tval(999, 1000) == 0xFFFFFFFF, "a passed deadline reads as a negative TVAL"


def test_deadline_includes_the_offset():
    assert gt.deadline_ticks(1, 500, offset=1000) == 1500, "CNTVCT = CNTPCT - CNTVOFF"
    assert gt.deadline_ticks(3, 500) == gt.NEVER and gt.deadline_ticks(0, 500) == gt.NEVER


def test_engine_virtual_timer_matches(tmp_path):
    """The fast path's CNTV_* view follows the same rules while the guest runs."""
    from tests.harness import Harness, hvc, mrs, msr, movz
    # MSR CNTV_CVAL_EL0, x1 (=0); MSR CNTV_CTL_EL0, x2 (=1); MRS x3, CNTV_CTL_EL0; MRS x4, CNTV_TVAL_EL0; HVC
    h = Harness([movz(1, 0), movz(2, 1), msr(1, 3, 3, 14, 3, 2), msr(2, 3, 3, 14, 3, 1),
                 mrs(3, 3, 3, 14, 3, 1), mrs(4, 3, 3, 14, 3, 0), hvc(0)])
    from el2.lowvisor import ARM_EXCEPTION_IRQ
    ex = h.next_exit()
    assert ex.code == ARM_EXCEPTION_IRQ, "the output asserted as soon as ENABLE was set with CVAL passed"
    h.host.pcpus[0].st.timer_masked = 1          # the host GIC: the physical PPI is now active
    ex = h.next_exit()
    assert ex.ec == 0x16, f"expected the HVC, got {ex}"
    assert h.ctx.x(3) == gt.CTL_ENABLE | gt.CTL_ISTATUS, f"CTL read {h.ctx.x(3):#x}"
    assert h.ctx.x(4) >= 0x8000_0000, f"TVAL after the deadline is negative, read {h.ctx.x(4):#x}"
    assert h.ctx.timer.cntv_ctl == 1 and h.ctx.timer.cntv_cval == 0, "the world switch saved the timer"


def test_no_vtimer_traps_reads_at_the_instruction():
    """--no-vtimer: a CNTV_* read traps (EC 0x18) before the next instruction runs."""
    import struct
    from armvirt import profile
    from engine import layout
    from host_kernel.kvm import Clocking, Host
    from host_kernel.vcpu import BootState
    from tests.harness import ENTRY, hvc, movz, mrs
    p = profile.load("xgene")
    host = Host(p.costs, Clocking(p.cpu_hz, p.cntfrq_hz, p.cpi))
    vm = host.create_vm(vtimer=False)
    slot = vm.add_ram(layout.RAM_BASE, 16 << 20)
    vm.stage2.map_page(layout.RAM_BASE + 0x1000, slot.host_pa + 0x1000)
    v = vm.create_vcpu(0)
    code = [mrs(3, 3, 3, 14, 3, 2), movz(5, 7), hvc(0)]        # MRS X3, CNTV_CVAL_EL0; MOV X5, #7
    slot.buf[0x1000:0x100C] = b"".join(struct.pack("<I", w) for w in code)
    v.reset(BootState(entry=ENTRY))
    ex = v.lowvisor.run(v.ctx)
    assert ex.ec == 0x18 and ex.elr == ENTRY, f"expected a sysreg trap at {ENTRY:#x}, got {ex}"
    assert v.ctx.x(5) == 0, "the instruction after the trapped one must not have run"
    assert v.ctx.pc == ENTRY


def _vm_harness(code, **vm_opts):
    import struct
    from armvirt import profile
    from engine import layout
    from host_kernel.kvm import Clocking, Host
    from host_kernel.vcpu import BootState
    from tests.harness import ENTRY
    p = profile.load("xgene")
    host = Host(p.costs, Clocking(p.cpu_hz, p.cntfrq_hz, p.cpi))
    vm = host.create_vm(**vm_opts)
    slot = vm.add_ram(layout.RAM_BASE, 16 << 20)
    vm.stage2.map_page(layout.RAM_BASE + 0x1000, slot.host_pa + 0x1000)
    v = vm.create_vcpu(0)
    slot.buf[0x1000:0x1000 + 4 * len(code)] = b"".join(struct.pack("<I", w) for w in code)
    v.reset(BootState(entry=ENTRY))
    return host, vm, v


def test_physical_timer_traps_and_is_emulated_on_ppi30():
    """CNTHCTL_EL2.EL1PCEN = 0: CNTP_* accesses trap (EC 0x18) and the host emulates the
    timer with a soft timer; its output is the level of PPI 30."""
    from host_kernel.vcpu import KVM_EXIT_SYSTEM_EVENT
    from tests.harness import hvc, movz, msr
    # CNTP_TVAL = 500 ticks (24,000 cycles: past the trapped CTL write, inside the spin);
    # CNTP_CTL = ENABLE; spin 20000 x 2 instructions; SYSTEM_OFF
    loop = [movz(9, 20000), 0xF1000529, 0x54FFFFE1]        # MOV X9; SUBS X9, X9, #1; B.NE -1
    code = [movz(1, 500), msr(1, 3, 3, 14, 2, 0), movz(2, 1), msr(2, 3, 3, 14, 2, 1), *loop,
            0xD2800100, 0xF2B08000, hvc(0)]                 # X0 = 0x84000008 (SYSTEM_OFF)
    host, vm, v = _vm_harness(code)
    run = v.run()
    assert run.exit_reason == KVM_EXIT_SYSTEM_EVENT, f"got {run.exit_reason} {run.message}"
    names = {r["VM-EXIT"]: r["Samples"] for r in v.stats.rows()}
    assert names.get("SYS64", 0) == 2, f"CNTP_TVAL and CNTP_CTL writes trap: {names}"
    ptimer = v.emulated_timer("ptimer")
    assert ptimer.ctl == 1 and ptimer.level, "the emulated timer fired inside the spin"
    assert vm.vgic.irq_state(30, 0).line_level, "PPI 30 follows the physical timer's output"
    assert names.get("IRQ", 0) == 1, f"the host soft timer fired once while the guest ran: {names}"


def test_vtimer_level_follows_output_while_disabled_in_the_distributor():
    from tests.harness import hvc, movz, msr
    code = [movz(1, 0), msr(1, 3, 3, 14, 3, 2), movz(2, 1), msr(2, 3, 3, 14, 3, 1), hvc(0)]
    host, vm, v = _vm_harness(code)
    from el2.lowvisor import ARM_EXCEPTION_IRQ
    from host_kernel.irq import handle_host_irq
    ex = v.lowvisor.run(v.ctx)
    assert ex.code == ARM_EXCEPTION_IRQ, f"the vtimer output asserted at once: {ex}"
    v._sync()
    handle_host_irq(v)
    irq = vm.vgic.irq_state(27, 0)
    assert irq.line_level and not irq.enabled, f"level high although disabled: {irq}"
    assert not vm.vgic.has_pending(0), "a disabled interrupt does not wake or signal the vCPU"


def test_wfi_wakes_with_irqs_masked_and_skips_time():
    """ARM ARM D1.16.2: a pending interrupt wakes WFI even when PSTATE.I masks it; the
    vCPU sleeps without executing and virtual time jumps to the timer deadline."""
    from tests.harness import hvc, movz, msr, WFI
    # GIC: enable the distributor (GICD_CTLR=3) and PPI 27 (ISENABLER0 bit 27); CPU interface on.
    code = [movz(5, 0x0800, 16), movz(6, 3), 0xB90000A6,            # STR W6, [X5]
            movz(6, 0x0800, 16), 0xB90100A6,                        # ISENABLER0 = 1 << 27
            movz(1, 50000), msr(1, 3, 3, 14, 3, 0), movz(2, 1), msr(2, 3, 3, 14, 3, 1),   # TVAL, CTL
            0xD50342DF,                                             # MSR DAIFSET, #2 (mask IRQs)
            WFI, hvc(0)]
    host, vm, v = _vm_harness(code)
    from host_kernel.handle_exit import handle_exit
    from el2.lowvisor import ARM_EXCEPTION_IRQ
    start_insns = None
    while True:
        ex = v.lowvisor.run(v.ctx)
        v._sync()
        if ex.ec == 0x16:
            break
        if ex.ec == 0x01:
            start = host.pcpus[0].cycles
            start_insns = host.pcpus[0].insns
        if ex.code == ARM_EXCEPTION_IRQ:
            from host_kernel.irq import handle_host_irq
            handle_host_irq(v)
        assert handle_exit(v, ex) == 1, f"exit {ex} did not resume"
        v._flush()
    assert start_insns is not None, "WFI trapped (HCR_EL2.TWI)"
    assert host.pcpus[0].cycles - start >= 50000 * 48 - 10_000, "time jumped to the deadline"
    assert host.pcpus[0].insns - start_insns <= 2, "no instruction executed while blocked"
    assert v.blocked_cycles > 0
