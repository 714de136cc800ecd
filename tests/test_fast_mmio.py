"""PL011 exits served in the engine (host_kernel/fast_mmio.py): a run gives the same
instructions, cycles, exit statistics, counters and console output whether the engine
serves the polled UART registers (on), Python takes every exit (off), or Python takes
them and checks each one the engine would have served against what it charged (check)."""
from __future__ import annotations

import pytest

from armvirt import paths
from armvirt.console import Console
from armvirt.machine import Machine, MachineConfig
from armvirt.serial import ScriptInput
from host_kernel.fast_mmio import FastMmio, FastMmioDrift

SERIAL_IN = paths.image_path("serial-in/input.txt")

CASES = {
    "hello": (dict(kernel="hello.elf"), False),
    "smp-hello x4": (dict(kernel="smp-hello.elf", smp=4), False),
    "smp-hello x4 on 2 pCPUs": (dict(kernel="smp-hello.elf", smp=4, pcpus=2), False),
    "smp-hello x2 gicv3": (dict(kernel="smp-hello.elf", smp=2, gic_version=3), False),
    "eoi: interrupts between the lines": (dict(kernel="eoi.elf"), False),
    "irq-latency gicv3": (dict(kernel="irq-latency.elf", gic_version=3), False),
    "el0 vhe eager": (dict(kernel="el0.elf", hyp_mode="vhe", lazy=False), False),
    "fp-serial vhe lazy FP/SIMD": (dict(kernel="fp-serial.elf", hyp_mode="vhe"), False),
    "smp-hello x4 vhe": (dict(kernel="smp-hello.elf", smp=4, hyp_mode="vhe"), False),
    "serial-in polled and by interrupt": (dict(kernel="serial-in.elf", initrd="serial-in/env.txt"), True),
}


def run(xgene, cfg: dict, serial: bool, mode: str):
    kw = dict(cfg, kernel=paths.image_path(cfg["kernel"]))
    if "initrd" in kw:
        kw["initrd"] = paths.image_path(kw["initrd"])
    rx = ScriptInput(open(SERIAL_IN, "rb").read()) if serial else None
    m = Machine(MachineConfig(**kw), xgene, console=Console(echo=False), serial_input=rx)
    m.fast_mmio.mode = mode
    res = m.run()
    seen = (res.status, res.reason, res.insns, res.cycles, res.stats, res.counters, res.console.lines,
            [s.by_reason for s in res.vcpu_stats])
    return seen, m.fast_mmio


@pytest.mark.parametrize("case", list(CASES))
def test_same_run_served_or_not(xgene, case):
    cfg, serial = CASES[case]
    off, fm_off = run(xgene, cfg, serial, "off")
    on, fm_on = run(xgene, cfg, serial, "on")
    check, fm_check = run(xgene, cfg, serial, "check")
    assert off[0] == 0, f"{case}: expected exit status 0, got {off[:2]}"
    assert fm_off.served == 0, f"{case}: expected no exit served with ARMVIRT_FAST_MMIO=off, got {fm_off.served}"
    for what, i in (("status/reason", slice(0, 2)), ("instructions", 2), ("cycles", 3), ("exit statistics", 4),
                    ("counters", 5), ("console", 6), ("per-vCPU exit samples", 7)):
        assert on[i] == off[i], f"{case}: {what} with exits served: expected {off[i]!r}, got {on[i]!r}"
        assert check[i] == off[i], f"{case}: {what} in check mode: expected {off[i]!r}, got {check[i]!r}"
    assert fm_on.served > 0, f"{case}: expected the engine to serve UART exits, it served {fm_on.served}"
    assert fm_check.checked > 0, f"{case}: expected exits checked in check mode, got {fm_check.checked}"


def test_type1_is_never_served(xgene):
    """Type 1 has no user-space exit (dom0 does the I/O): Python takes those exits."""
    _, fm = run(xgene, dict(kernel="hello.elf", hyp_mode="type1"), False, "on")
    assert fm.served == 0, f"type1: expected no exit served, got {fm.served}"


def test_lazy_fp_learns_and_charges_the_changed_and_unchanged_cases_apart(xgene):
    """Under VHE's lazy FP/SIMD, vcpu_put at the user exit charges the first-use trap and
    the FP/SIMD switch only if the guest changed those registers since its last load:
    fp-serial changes them before two lines in three, so both cases are learned (key WnR,
    +2 when changed), the changed one dearer by exactly what put_steps adds for it."""
    _, fm = run(xgene, dict(kernel="fp-serial.elf", hyp_mode="vhe"), False, "on")
    assert {1, 3} <= set(fm.memo), f"expected UARTDR writes learned with FP/SIMD unchanged (1) and changed (3), got {fm.memo}"
    ws = fm.vm.vcpus[0].lowvisor.ws
    extra = sum(st.cycles for st in ws.put_steps(True)) - sum(st.cycles for st in ws.put_steps(False))
    (u1, u2), (c1, c2) = fm.memo[1], fm.memo[3]
    assert (c1 - u1, c2 - u2) == (extra, 0), \
        f"expected the changed case to cost {extra} more before the access and the same after, got {c1 - u1}, {c2 - u2}"
    assert fm.served > 0, f"expected served exits, got {fm.served}"


def test_a_changed_charge_is_a_drift_error(xgene):
    """What Python charges for an exit the engine serves is checked on every one it learns
    from: a different cost is an error naming both, never a silent new figure."""
    m = Machine(MachineConfig(kernel=paths.image_path("hello.elf")), xgene, console=Console(echo=False))
    fm: FastMmio = m.fast_mmio
    fm.memo[1] = (1, 2)
    with pytest.raises(FastMmioDrift, match=r"in Python, the engine charges 1\+2"):
        fm._learned(1, 8723, 2904)


def test_mode_from_the_environment(monkeypatch):
    from host_kernel import fast_mmio
    monkeypatch.setenv("ARMVIRT_FAST_MMIO", "sometimes")
    with pytest.raises(SystemExit, match="ARMVIRT_FAST_MMIO='sometimes': must be one of on, off, check"):
        fast_mmio.mode_from_env()
    monkeypatch.setenv("ARMVIRT_FAST_MMIO", "check")
    assert fast_mmio.mode_from_env() == "check", "expected mode check from the environment"
