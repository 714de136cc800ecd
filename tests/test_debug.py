"""The guest's self-hosted debug registers (host_kernel/debug.py): the engine honours
breakpoints but takes no Watchpoint or Software Step exception; a guest that enables
either gets one -d unimp line per vCPU and feature, never silence."""
from __future__ import annotations

from el2 import syndrome as syn
from engine import layout
from host_kernel.handle_exit import handle_exit
from tests.harness import Harness, hvc, movz, msr

MDSCR = (2, 0, 0, 2, 2)
DBGWCR0, DBGWVR0 = (2, 0, 0, 0, 7), (2, 0, 0, 0, 6)
MDE, KDE, SS = 1 << 15, 1 << 13, 1
DAIFCLR_D = 0xD50348FF              # MSR DAIFClr, #8: debug exceptions unmasked
WCR_RW_EL1_E = 0x1FF7               # BAS all bytes, LSC load+store, PAC EL1, E


def run_to_hvc(code):
    h = Harness(code + [hvc(0)])
    ex = h.next_exit()
    assert ex.ec == syn.EC_HVC64, f"expected the HVC exit (EC 0x16), got EC {ex.ec:#x} at {ex.elr:#x}"
    handle_exit(h.vcpu, ex)
    return h, [e for e in h.vm.guest_errors if "not modeled" in e]


def test_enabled_watchpoint_is_logged_once():
    h, logged = run_to_hvc([movz(1, MDE | KDE), msr(1, *MDSCR), movz(2, WCR_RW_EL1_E), msr(2, *DBGWCR0)])
    assert len(logged) == 1 and "DBGWCR0_EL1" in logged[0] and "watchpoints" in logged[0], \
        f"expected one -d unimp line naming DBGWCR0_EL1, got {logged}"
    assert h.vm.counters["unimp"] == 1, f"expected unimp counter 1, got {h.vm.counters['unimp']}"
    handle_exit(h.vcpu, h.next_exit())          # the same state at the next exit: not logged again
    assert h.vm.counters["unimp"] == 1, f"expected still 1 unimp line, got {h.vm.counters['unimp']}"


def test_software_step_is_logged():
    _, logged = run_to_hvc([movz(1, KDE | SS), msr(1, *MDSCR)])
    assert len(logged) == 1 and "software step" in logged[0], f"expected one software-step line, got {logged}"


def test_no_log_without_an_enabled_watchpoint():
    # MDE alone (breakpoints, which the core does take) and a programmed but disabled WCR
    _, logged = run_to_hvc([movz(1, MDE | KDE), msr(1, *MDSCR), movz(2, WCR_RW_EL1_E & ~1), msr(2, *DBGWCR0)])
    assert logged == [], f"expected no unimp line, got {logged}"


def test_engine_fact_watchpoint_not_taken():
    """The measured fact behind the log: with a watchpoint on the stored address, MDE/KDE
    set and PSTATE.D clear, the core completes the store and runs on to the HVC.  If a
    newer engine takes the Watchpoint exception (EC 0x35 to EL1), drop the log for it."""
    target = layout.RAM_BASE + 0x8000
    code = [movz(1, MDE | KDE), msr(1, *MDSCR),
            movz(3, target & 0xFFFF), 0xF2A00003 | ((target >> 16) & 0xFFFF) << 5,   # MOVK x3, #hi, LSL 16
            msr(3, *DBGWVR0), movz(2, WCR_RW_EL1_E), msr(2, *DBGWCR0), 0xD5033FDF,  # ISB
            DAIFCLR_D, movz(4, 0x55), 0xF9000064]                                     # STR x4, [x3]
    h = Harness(code + [hvc(0)])
    ex = h.next_exit()
    assert ex.ec == syn.EC_HVC64, f"expected the store to complete and the HVC to exit, got EC {ex.ec:#x} at {ex.elr:#x}"
    off = target - layout.RAM_BASE
    assert h.slot.buf[off] == 0x55, f"expected 0x55 stored at {target:#x}, found {h.slot.buf[off]:#x}"
