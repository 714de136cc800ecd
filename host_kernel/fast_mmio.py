"""KVM_EXIT_MMIO for a user-space device's hot registers, served in the engine.

A Linux console polls its PL011: every character is a UARTFR read and a UARTDR write,
each a stage-2 data abort that the Python path takes through the lowvisor, the
highvisor's io_mem_abort, KVM_EXIT_MMIO to the VMM, the device and back (~26 K of the
~27 K exits of a boot to init).  When that path would do nothing but the access, the
engine's INTR hook (engine/fastpath.c fast_mmio) does the access itself and moves time
by what the Python path charges for it.  One source of truth: the two charges (trap to
device access, device access to re-entry, per read/write) are learned from the Python
path's own exits under the same conditions, never written down twice.

"Nothing but the access" - all checked before the hook serves an exit:
- the host scheduler would go on with this vCPU: the access comes before any other
  vCPU's time and the VMM's next event, within the turn (armed by the scheduler before
  each vcpu.run, disarmed by any exit Python takes); the hook moves the turn's deadline
  as the scheduler would;
- the vGIC and the timers have nothing to do on the way out and in: no list register
  in use, no maintenance request, no interrupt line high, no deadline reached by the
  re-entry (fm_quiet, set at each entry; a GICV or ICC access clears it);
- no local exclusive reservation is open (the entry would clear it), no broadcast
  maintenance is pending, the first user-space instruction has not been seen;
- the device allows it (Pl011.fast_flags): the interrupt level stays as it is;
- no one watches exits one by one: no -d exits/mmio/int, no trace, no recording of
  trap paths, no debugger; a design whose user exit moves state the guest may have
  changed meanwhile (lazy FP/SIMD at vcpu_put) or that has no user exit (type 1).

Served exits still count: per vCPU and reason in the exit statistics, with the time
each takes, folded in when Python next runs; the characters reach the console in
order.  ARMVIRT_FAST_MMIO=off takes every exit in Python; =check takes them in Python
too and verifies that each exit the engine would have served had the learned cost and
left the scheduler where the engine would have (a FastMmioDrift error otherwise).
"""
from __future__ import annotations

import os

from engine.fastpath import ffi
from gic.vgic import HCR_EN
from el2.lowvisor import ARM_EXCEPTION_TRAP, Exit
from host_kernel.handle_exit import exit_name

NEVER = 2**64 - 1
MODES = ("on", "off", "check")


class FastMmioDrift(RuntimeError):
    """The Python path charged an exit otherwise than the engine would have: a bug."""


def mode_from_env() -> str:
    mode = os.environ.get("ARMVIRT_FAST_MMIO", "on")
    if mode not in MODES:
        raise SystemExit(f"armvirt: error: ARMVIRT_FAST_MMIO={mode!r}: must be one of {', '.join(MODES)}")
    return mode


class FastMmio:
    def __init__(self, vm, base: int, size: int, device, mode: str | None = None):
        self.vm, self.base, self.size, self.device = vm, base, size, device
        self.mode = mode_from_env() if mode is None else mode
        self.memo: dict[int, tuple[int, int]] = {}     # WnR -> (trap to access, access to entry)
        self.served = 0
        self.checked = 0
        d = vm.host.design
        self._design_ok = (d.puts_on_user_exit and not d.fp_lazy and vm.vgic_hw
                           and not any(vm.trace.on(c) for c in ("exits", "mmio", "int", "in_asm", "exec")))

    # --- the host scheduler: before and after vcpu.run -----------------------------------
    def arm(self, vcpu, *, pick_bound: int, vmm_at: int, multi: bool, others_min: int, quantum: int,
            lookahead: int, shared: bool, owner_deadline: int, direct: bool) -> None:
        """The scheduler's window for this run of `vcpu` (see Scheduler.run); `direct`:
        the scheduler went straight back to this vCPU after its last exit, nothing between."""
        st = vcpu.cpu.st
        if vcpu.fm_learn is not None:
            self._verify_scheduled(vcpu, direct)
        if not self.arm_fixed(vcpu, multi=multi, quantum=quantum, lookahead=lookahead, shared=shared):
            return
        st.fm_pick_bound, st.fm_vmm_at, st.fm_others_min, st.fm_owner_deadline = (
            pick_bound, vmm_at, others_min, owner_deadline)
        st.fm_armed = 1

    def arm_fixed(self, vcpu, *, multi: bool, quantum: int, lookahead: int, shared: bool) -> bool:
        """What arm() sets that no step of the scheduler moves (armvirt/engine_resumes.py's
        C loop sets the window for each run itself): False if no exit may be served."""
        st = vcpu.cpu.st
        if self.mode == "off" or not self._usable(vcpu):
            st.fm_armed = 0
            return False
        tag = id(self) << 2 | len(self.memo)          # what this pCPU's struct was last set up for
        if st.fm_tag != tag:
            st.fm_tag = tag
            st.fm_check = self.mode == "check"
            st.fm_base, st.fm_size = self.base, self.size
            for wnr in (0, 1):
                st.fm_c1[wnr], st.fm_c2[wnr] = self.memo.get(wnr, (0, 0))
            st.fm_multi, st.fm_quantum, st.fm_lookahead, st.fm_shared = multi, quantum, lookahead, shared
        st.fr_ok, st.fr_value, st.fr_listening, st.fr_limit, st.dr_ok = self.device.fast_flags()
        st.dev_empty_reads = self.device.empty_reads
        vcpu.fm_pushed = True
        return True

    def pull(self, vcpu) -> int | None:
        """After vcpu.run: what the served accesses did to the device, before anyone looks;
        returns the end of the vCPU's turn as the scheduler would have moved it, if it moved."""
        st = vcpu.cpu.st
        st.fm_armed = 0
        if not vcpu.fm_pushed:
            return None
        vcpu.fm_pushed = False
        if st.tx_len or st.dev_tx_written or st.dev_empty_reads != self.device.empty_reads:
            self.device.fast_fold(st.dev_empty_reads, st.dev_last_tx, bool(st.dev_tx_written),
                                  bytes(ffi.buffer(st.tx_buf, st.tx_len)))
            st.tx_len = st.dev_tx_written = 0
        if not vcpu.fm_moved:
            return None
        vcpu.fm_moved = False
        return st.fm_owner_deadline

    def _usable(self, vcpu) -> bool:
        led = vcpu.ledger
        return (self._design_ok and led.trace is None and led.segments is None and vcpu.cpu.debug is None
                and vcpu.emul_cpuif is None)

    # --- the vCPU: around each __kvm_vcpu_run ---------------------------------------------
    def enter(self, vcpu) -> None:
        """Just before the guest runs: may an exit be served?  (The vGIC was flushed.)"""
        quiet = self.entry_quiet(vcpu, vcpu.paused)
        vcpu.cpu.st.fm_quiet = int(quiet)
        vcpu.fm_entry_quiet = quiet

    def entry_quiet(self, vcpu, paused: bool) -> bool:
        """fm_quiet for an entry; `paused`: vcpu.paused then (Vcpu.run clears it before a
        resumed turn enters, so the ap_list term does not apply to resumes today)."""
        v = vcpu.ctx.vgic
        # (the virtual IRQ line and the timer PPI's mask are checked live by the hook)
        quiet = (v.used_lrs == 0 and v.hcr & ~HCR_EN == 0 and not vcpu.arch_timer.level
                 and not any(t.level for t in vcpu.soft_timers))
        if quiet and paused:              # a resumed turn: others ran meanwhile, no flush
            quiet = not self.vm.vgic.ap_list[vcpu.index]
        return quiet

    def exited(self, vcpu, ex) -> None:
        """The guest stopped: fold the exits served meanwhile, note what to learn from."""
        st = vcpu.cpu.st
        st.fm_armed = 0
        entered_at = vcpu.lowvisor.entered_at          # this run's entry (a fold moves it on)
        n0, n1 = st.fm_n[0], st.fm_n[1]
        if n0 or n1:
            vcpu.fm_moved = True
            self._fold(vcpu, n0, n1)
        learn = vcpu.fm_learn
        if learn is not None and learn[3] is not None:       # the re-entry after a learned access
            vcpu.fm_learn = None
            wnr, t_trap, _, t_dev, loads = learn
            if vcpu.fm_entry_quiet and vcpu.loads == loads:
                self._learned(wnr, t_dev - t_trap, entered_at - t_dev)
            elif self.mode == "check" and learn[2] is not None:
                raise FastMmioDrift(f"vcpu{vcpu.index}: an exit the engine would have served was followed by "
                                    f"a different entry (quiet {vcpu.fm_entry_quiet}, loads {loads} -> {vcpu.loads})")
        if st.fm_would:                                      # 1 + WnR: learn; 3 + WnR: check
            deadline = st.fm_would_deadline if st.fm_would >= 3 else None
            vcpu.fm_learn = [(st.fm_would - 1) & 1, st.fm_would_trap, deadline, None, vcpu.loads]
            st.fm_would = 0

    def accessed(self, vcpu, acc, now: int) -> None:
        """The VMM did the access of the exit noted in exited(): its time."""
        learn = vcpu.fm_learn
        if learn is not None and learn[3] is None:
            if learn[0] != int(acc.is_write):
                raise FastMmioDrift(f"vcpu{vcpu.index}: the engine saw WnR={learn[0]}, the VMM {acc!r}")
            learn[3] = now

    def _verify_scheduled(self, vcpu, direct: bool) -> None:
        """check: after an exit the engine would have served, the scheduler came straight
        back to this vCPU and set the turn's deadline the engine would have set."""
        learn = vcpu.fm_learn
        if learn is None or learn[2] is None or learn[3] is None:
            return
        got = vcpu.cpu.st.turn_deadline
        if not direct or got != learn[2]:
            raise FastMmioDrift(f"vcpu{vcpu.index}: after an exit the engine would have served, the scheduler "
                                f"{'set the turn deadline ' + str(got) + ' instead of ' + str(learn[2]) if direct else 'ran something else first'}")
        self.checked += 1

    def _learned(self, wnr: int, c1: int, c2: int) -> None:
        known = self.memo.setdefault(wnr, (c1, c2))
        if known != (c1, c2):
            raise FastMmioDrift(f"a {'write' if wnr else 'read'} exit on {self.device.name} cost {c1}+{c2} cycles "
                                f"in Python, the engine charges {known[0]}+{known[1]}")

    def _fold(self, vcpu, n0: int, n1: int) -> None:
        """The served exits into the vCPU's statistics and exit records, as if Python had
        taken them: each one's sample (trap to re-entry) is closed by the next exit."""
        st, low = vcpu.cpu.st, vcpu.lowvisor
        last = Exit(ARM_EXCEPTION_TRAP, st.fm_last_esr, st.fm_last_far, st.fm_last_hpfar, st.fm_last_elr,
                    st.fm_last_trap)
        name = exit_name(last)
        vcpu.close_pending_sample()
        for wnr, n in ((0, n0), (1, n1)):
            n -= wnr == st.fm_last_wnr               # the last one's sample stays open
            if n:
                vcpu.stats.add_many(name, sum(self.memo[wnr]), n)
        vcpu.open_sample(name, st.fm_last_trap)
        low.entered_at = st.fm_last_entry
        e = low.el2
        e.esr, e.far, e.elr, e.spsr, e.hpfar = last.esr, last.far, last.elr, st.fm_last_pstate, last.hpfar
        vcpu.last_exit = last
        self.served += n0 + n1
        st.fm_n[0] = st.fm_n[1] = 0
