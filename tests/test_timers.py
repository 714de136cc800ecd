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
    from armvirt import layout, profile
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
