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
  trap paths, no debugger; not a design that has no user exit (type 1).

Where the user exit's vcpu_put charges FP/SIMD lazily (VHE's default), what it charges
depends on whether the guest changed its FP/SIMD registers since the vCPU was last
loaded: the engine compares them with the registers at that load (kept in fm_fp_at_load,
the bytes of the context's fp bank) and learns and charges each case apart (key = WnR,
+2 when they changed).

Served exits still count: per vCPU and reason in the exit statistics, with the time
each takes, folded in when Python next runs; the characters reach the console in
order.  ARMVIRT_FAST_MMIO=off takes every exit in Python; =check takes them in Python
too and verifies that each exit the engine would have served had the learned cost and
left the scheduler where the engine would have (a FastMmioDrift error otherwise).
"""
from __future__ import annotations

import ctypes
import os

from el2.context import fp_bank
from engine.fastpath import ffi, lib
from gic.vgic import HCR_EN
from el2.lowvisor import ARM_EXCEPTION_TRAP, Exit
from host_kernel.handle_exit import exit_name

NEVER = 2**64 - 1
MODES = ("on", "off", "check")
KEYS = (0, 1, 2, 3)          # WnR, +2: the guest changed FP/SIMD since the load (lazy FP/SIMD)
_FP_SCRATCH = fp_bank()      # fm_fp_at_load holds the bytes of this bank's registers (16 each)
FP_BYTES = 16 * len(_FP_SCRATCH)
assert len(_FP_SCRATCH) == lib.FP_REGS, "engine/fastpath.h FP_REGS and el2/context.py fp_bank differ"


def fp_snapshot(regs: bytes) -> bytes:
    """The fp bank's snapshot (RegBank.snapshot) of these register bytes."""
    ctypes.memmove(_FP_SCRATCH._plain, regs, FP_BYTES)
    return _FP_SCRATCH.snapshot()


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
        self.memo: dict[int, tuple[int, int]] = {}     # key -> (trap to access, access to entry)
        self.served = 0
        self.checked = 0
        d = vm.host.design
        self.fp_lazy = bool(d.fp_lazy)
        self._design_ok = (d.puts_on_user_exit and vm.vgic_hw
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
        tag = id(self) << 3 | len(self.memo)          # what this pCPU's struct was last set up for
        if st.fm_tag != tag:
            st.fm_tag = tag
            st.fm_check = self.mode == "check"
            st.fm_base, st.fm_size = self.base, self.size
            for key in KEYS:
                st.fm_c1[key], st.fm_c2[key] = self.memo.get(key, (0, 0))
            st.fm_multi, st.fm_quantum, st.fm_lookahead, st.fm_shared = multi, quantum, lookahead, shared
            st.fm_fp_lazy = self.fp_lazy
        if not self._push_fp_at_load(vcpu):
            st.fm_armed = 0
            return False
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
        self._push_fp_at_load(vcpu)                   # KVM_RUN's vcpu_load may have just moved it

    def _push_fp_at_load(self, vcpu) -> bool:
        """Lazy FP/SIMD: the registers at the vCPU's last load, for the engine to compare
        with (False: not loaded yet, nothing to compare with)."""
        if not self.fp_lazy:
            return True
        if vcpu._fp_at_load is None:
            return False
        ffi.memmove(vcpu.cpu.st.fm_fp_at_load, vcpu._fp_at_load, FP_BYTES)
        return True

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
        counts = [st.fm_n[key] for key in KEYS]
        if any(counts):
            vcpu.fm_moved = True
            self._fold(vcpu, counts)
        learn = vcpu.fm_learn
        if learn is not None and learn[3] is not None:       # the re-entry after a learned access
            vcpu.fm_learn = None
            key, t_trap, _, t_dev, loads = learn
            if vcpu.fm_entry_quiet and vcpu.loads == loads:
                self._learned(key, t_dev - t_trap, entered_at - t_dev)
            elif self.mode == "check" and learn[2] is not None:
                raise FastMmioDrift(f"vcpu{vcpu.index}: an exit the engine would have served was followed by "
                                    f"a different entry (quiet {vcpu.fm_entry_quiet}, loads {loads} -> {vcpu.loads})")
        if st.fm_would:                                      # 1 + key: learn; 5 + key: check
            deadline = st.fm_would_deadline if st.fm_would >= 5 else None
            vcpu.fm_learn = [(st.fm_would - 1) & 3, st.fm_would_trap, deadline, None, vcpu.loads]
            st.fm_would = 0

    def accessed(self, vcpu, acc, now: int) -> None:
        """The VMM did the access of the exit noted in exited(): its time."""
        learn = vcpu.fm_learn
        if learn is not None and learn[3] is None:
            if learn[0] & 1 != int(acc.is_write):
                raise FastMmioDrift(f"vcpu{vcpu.index}: the engine saw WnR={learn[0] & 1}, the VMM {acc!r}")
            if self.fp_lazy and bool(learn[0] & 2) != vcpu.put_fp_used:
                raise FastMmioDrift(f"vcpu{vcpu.index}: the engine saw the FP/SIMD registers "
                                    f"{'changed' if learn[0] & 2 else 'unchanged'} since the load, "
                                    f"vcpu_put saw them {'changed' if vcpu.put_fp_used else 'unchanged'}")
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

    def _learned(self, key: int, c1: int, c2: int) -> None:
        known = self.memo.setdefault(key, (c1, c2))
        if known != (c1, c2):
            raise FastMmioDrift(f"a {'write' if key & 1 else 'read'} exit on {self.device.name}"
                                f"{' (FP/SIMD changed since the load)' if key & 2 else ''} cost {c1}+{c2} "
                                f"cycles in Python, the engine charges {known[0]}+{known[1]}")

    def _fold(self, vcpu, counts: list[int]) -> None:
        """The served exits into the vCPU's statistics and exit records, as if Python had
        taken them: each one's sample (trap to re-entry) is closed by the next exit."""
        st, low = vcpu.cpu.st, vcpu.lowvisor
        last = Exit(ARM_EXCEPTION_TRAP, st.fm_last_esr, st.fm_last_far, st.fm_last_hpfar, st.fm_last_elr,
                    st.fm_last_trap)
        name = exit_name(last)
        vcpu.close_pending_sample()
        for key, n in zip(KEYS, counts):
            n -= key == st.fm_last_key               # the last one's sample stays open
            if n:
                vcpu.stats.add_many(name, sum(self.memo[key]), n)
        vcpu.open_sample(name, st.fm_last_trap)
        low.entered_at = st.fm_last_entry
        e = low.el2
        e.esr, e.far, e.elr, e.spsr, e.hpfar = last.esr, last.far, last.elr, st.fm_last_pstate, last.hpfar
        vcpu.last_exit = last
        self.served += sum(counts)
        for key in KEYS:
            st.fm_n[key] = 0
        if self.fp_lazy:                              # the last served exit's re-entry loaded these
            vcpu._fp_at_load = fp_snapshot(bytes(ffi.buffer(st.fm_fp_at_load, FP_BYTES)))
