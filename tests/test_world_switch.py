"""The world switch really moves state and charges what it moved."""
from armvirt import profile
from el2 import world_switch as ws
from tests.harness import Harness, hvc, movz

CALIBRATION = {   # shared/reference/calibration.md, ISCA'16 (save, restore)
    ws.GP: (152, 184), ws.FP: (282, 310), ws.EL1: (230, 511), ws.VGIC: (3250, 181),
    ws.TIMER: (104, 106), ws.TRAPS: (92, 107), ws.VM: (92, 107),
}


def _one_hypercall_segment():
    h = Harness([movz(0, 0x4B00, 16), hvc(0), movz(0, 0x4B00, 16), hvc(0)])
    led = h.vcpu.ledger
    segs = led.start_recording()
    from host_kernel.handle_exit import handle_exit
    for _ in range(2):
        ex = h.next_exit()
        handle_exit(h.vcpu, ex)
    h.lowvisor.run(h.ctx)     # re-entry closes the first path
    led.stop_recording()
    return h, segs


def test_groups_within_calibration():
    from armvirt.paths import world_switch_rows
    _, segs = _one_hypercall_segment()
    rows = {r["group"]: r for r in world_switch_rows(segs[0])}
    for group, (save, restore) in CALIBRATION.items():
        r = rows[group]
        for got, want, what in ((r["save"], save, "save"), (r["restore"], restore, "restore")):
            assert abs(got - want) <= 0.15 * want, f"{group} {what}: calibration {want}, model {got}"


def test_gp_registers_survive_a_round_trip():
    h = Harness([hvc(0)])
    for i in range(1, 31):
        h.ctx.set_x(i, 0x1111_0000 + i)
    ex = h.next_exit()
    values = [h.ctx.x(i) for i in range(1, 31)]
    assert values == [0x1111_0000 + i for i in range(1, 31)], f"got {values}"
    assert ex.elr == h.ctx.pc


def test_guest_exit_restores_engine_registers_it_saved():
    h = Harness([hvc(0), hvc(1)])
    h.next_exit()
    h.ctx.set_x(7, 0xDEADBEEF)            # the highvisor edits the saved context
    h.next_exit()
    assert h.ctx.x(7) == 0xDEADBEEF, "the context edit reached the engine and came back"


def test_timer_group_moves_the_virtual_timer():
    h = Harness([hvc(0)])
    h.ctx.timer.cntv_cval, h.ctx.timer.cntv_ctl = 12345, 1
    h.next_exit()
    st = h.host.pcpus[0].st
    assert (h.ctx.timer.cntv_cval, h.ctx.timer.cntv_ctl) == (12345, 1), "saved back from the engine"
    assert st.cntv_ctl == 0, "the guest timer is disabled while the host runs"


def test_costs_scale_with_profile():
    p = profile.load("xgene")
    assert p.costs["gich_mmio_read"] > 10 * p.costs["el2_sysreg_read"], "GICv2 MMIO is the slow path"
