"""A physical CPU: one Unicorn instance, its exact instruction counter and
virtual counter (C fast path), and architectural exception entry.

The engine is the hardware.  It executes the guest at EL1/EL0, walks stage-1
and stage-2 tables and raises exceptions.  What Unicorn does not do, a real
core would, so it is done here: vectoring an exception into the guest at
VBAR_EL1, and handing an EL2-targeted exception to whoever installed the EL2
vector (the lowvisor) - as a core jumps to VBAR_EL2.
"""
from __future__ import annotations

import ctypes
import mmap
import weakref
from typing import Callable, Optional

import unicorn
from unicorn import arm64_const as A
from unicorn.unicorn_py3 import unicorn as _ucmod

from engine import aarch64
from engine import excrecord
from engine.excrecord import ExceptionRecord
from engine.fastpath import ffi, lib
from engine.regbank import RegBank
from engine.sysreg import SPSR_EL1, SysReg

UC = _ucmod.uclib
NEVER = 2**64 - 1
STUB_PA = 0x80_0200_0000        # host-private code page (beyond every IPA and the host page tables)
CLREX, WFI, B_SELF = 0xD503305F, 0xD503207F, 0x14000000
HCR_VIRTUAL_LINES = 0x1C0           # HCR_EL2.VF | VI | VSE (bits 6-8)
STUB_PSTATE = aarch64.PSR_MODE_EL2h | aarch64.PSR_DAIF
MAINT_TLB, MAINT_IC, MAINT_IC_ALL = 1, 2, 4   # st.maint: broadcast maintenance the guest executed
IC_BY_VA_MAX_PAGES = 16         # IC IVAU over more pages than this: drop all code instead
PAGE = 0x1000
ICC_TRAP = object()             # an icc_handler's answer: this access traps to EL2
EL2Vector = Callable[[int, int, int, int, int], None]   # (intno, syndrome, vaddress, pc, pstate)

# Unicorn exception numbers (QEMU EXCP_*), for traces.
EXCP_NAMES = {1: "UDEF", 2: "SWI", 3: "PREFETCH_ABORT", 4: "DATA_ABORT", 5: "IRQ", 6: "FIQ",
              7: "BKPT", 11: "HVC", 12: "HYP_TRAP", 13: "SMC", 14: "VIRQ", 15: "VFIQ"}


class EngineFault(RuntimeError):
    """The engine stopped on something that is armvirt's bug, not the guest's."""


_INTR = weakref.WeakValueDictionary()   # the av_cpu struct's address -> its PhysicalCpu


@ffi.def_extern()
def av_py_intr(_uc, intno, ud):
    """av_intr_hook's way into Python for the exceptions it does not serve.  A Python
    exception stops the engine and is raised by emu_start, as the binding's own hooks do."""
    cpu = _INTR[int(ffi.cast("uintptr_t", ud))]
    if cpu.running_as is not None:          # the scheduler's C loop runs this pCPU's vCPU
        cpu.running_as[0].running = cpu.running_as[1]
    try:
        cpu._on_intr(intno)
    except BaseException as e:
        if cpu.uc._hook_exception is None:
            cpu.uc._hook_exception = e
        cpu.uc.emu_stop()


class PhysicalCpu:
    def __init__(self, index: int, *, cpi: int, cnt_mul: int, cnt_div: int, cntfrq: int,
                 model: int = A.UC_CPU_ARM64_A57):
        self.index = index
        self.uc = unicorn.Uc(unicorn.UC_ARCH_ARM64, unicorn.UC_MODE_ARM)
        self.uc.ctl_set_cpu_model(model)
        # Exit points on, with none set: emu_start's `until` is then ignored.  Without
        # this, every emu_start ends by invalidating the translated code at `until` - 1
        # (resume_all_vcpus), a translation of that address through the guest's own
        # MMU; runs end only by emu_stop (the hooks) and WFI.
        self.uc.ctl_exits_enabled(True)
        self.uch = self.uc._uch
        st = self.st = ffi.new("struct av_cpu *")
        st.cpi, st.cnt_mul, st.cnt_div, st.cntfrq = cpi, cnt_mul, cnt_div, cntfrq
        st.insn_limit = st.timer_deadline = st.host_deadline = st.turn_deadline = NEVER
        st.ic_lo, st.ic_hi = NEVER, 0
        self.ic_range = (0, 0)                 # the VAs of the IC IVAU last taken (take_maintenance)
        self._pa = ctypes.c_uint64()
        self._pc = ctypes.c_uint64()
        self._hooks = []
        self._add_c_hook(unicorn.UC_HOOK_BLOCK, lib.av_block_hook)
        self._add_c_hook(unicorn.UC_HOOK_INSN, lib.av_mrs_hook, A.UC_ARM64_INS_MRS)
        self._add_c_hook(unicorn.UC_HOOK_INSN, lib.av_msr_hook, A.UC_ARM64_INS_MSR)
        self.notes_maintenance = False         # the SYS hook: see note_maintenance()
        # Every exception reaches the fast path's INTR hook, which serves the hot PL011
        # accesses itself (engine/fastmmio.py) and hands the rest to _on_intr with the
        # core's exception record read into st.rec_*.
        self.exc = ExceptionRecord(self.uc)
        st.intr_ctx = self.exc.address
        st.rec_off, st.excl_off = excrecord.offsets()
        _INTR[int(ffi.cast("uintptr_t", st))] = self
        self._add_c_hook(unicorn.UC_HOOK_INTR, lib.av_intr_hook)
        self.el2_vector: Optional[EL2Vector] = None
        # GICv3 CPU interface: icc_handler(key, is_read, value) -> value read, or ICC_TRAP.
        self.icc_handler: Optional[Callable[[int, bool, int], object]] = None
        self.guest_exception_cost = 0          # cycles charged for an exception taken to EL1
        self.on_guest_exception: Optional[Callable[[int, int, int, int], None]] = None
        self._pcs = RegBank(["pc", "pstate"], [A.UC_ARM64_REG_PC, A.UC_ARM64_REG_PSTATE])
        # Exception entry to EL1; SPSR_EL1 (a CP_REG write) last, because only a
        # CP_REG write rebuilds the core's cached EL flags after PSTATE changes.
        # "sp" is the live stack pointer (X31): the core banks it only on its own
        # exception entry and return, and a PSTATE write does not (unicorn-facts.md).
        self._el1_entry = RegBank(
            ["ELR_EL1", "ESR_EL1", "FAR_EL1", "SP_EL0", "SP_EL1", "sp", "pstate", "pc", "SPSR_EL1"],
            [A.UC_ARM64_REG_ELR_EL1, A.UC_ARM64_REG_ESR_EL1, A.UC_ARM64_REG_FAR_EL1,
             A.UC_ARM64_REG_SP_EL0, A.UC_ARM64_REG_SP_EL1, A.UC_ARM64_REG_SP,
             A.UC_ARM64_REG_PSTATE, A.UC_ARM64_REG_PC, SPSR_EL1])
        self._mem = []
        self.idle_cycles = 0
        self.precise_traps = False
        self._stub: Optional[mmap.mmap] = None
        self.running_as = None                 # (vm, vcpu) while armvirt/engine_resumes.py runs it in C
        self.fault: Optional[EngineFault] = None
        self._insns_at_exception = -1
        self._uc_ptr = ffi.cast("void *", ctypes.cast(self.uch, ctypes.c_void_p).value)
        self.debug = None                      # engine.debug.DebugUnit while a debugger is attached

    # --- hooks ---------------------------------------------------------------
    def _add_c_hook(self, htype: int, fn, insn: Optional[int] = None) -> None:
        h = ctypes.c_size_t()
        args = [self.uch, ctypes.byref(h), htype,
                ctypes.c_void_p(int(ffi.cast("uintptr_t", fn))),
                ctypes.c_void_p(int(ffi.cast("uintptr_t", self.st))),
                ctypes.c_uint64(1), ctypes.c_uint64(0)]
        if insn is not None:
            args.append(ctypes.c_int(insn))
        err = UC.uc_hook_add(*args)
        if err:
            raise EngineFault(f"uc_hook_add({htype}) failed: {err}")
        self._hooks.append(h)

    def _on_intr(self, intno: int) -> None:
        st = self.st
        syndrome, vaddress, target_el = st.rec_syndrome, st.rec_vaddress, st.rec_target_el
        self._pcs.read(self.uch)
        pc, pstate = self._pcs[0], self._pcs[1]
        self.retire_before(pc)
        if st.in_stub:
            self.fault = EngineFault(f"exception {EXCP_NAMES.get(intno, intno)} in the CLREX stub "
                                     f"at pc={pc:#x} (ESR {syndrome:#x})")
            self.uc.emu_stop()
            return
        if intno == 1 and st.icc_key and st.icc_pc == pc and self.icc_handler is not None:
            self._icc_access(pc, pstate)
            return
        if target_el == 2 and self.el2_vector is not None:
            self.el2_vector(intno, syndrome, vaddress, pc, pstate)
        elif target_el == 1:
            self.take_exception_el1(syndrome, vaddress, pc, pstate, intno in (3, 4))
            if self.on_guest_exception is not None:
                self.on_guest_exception(intno, syndrome, vaddress, pc)
        else:
            self.fault = EngineFault(f"exception {EXCP_NAMES.get(intno, intno)} to EL{target_el} "
                                     f"at pc={pc:#x} (ESR {syndrome:#x}) has no handler")
            self.uc.emu_stop()

    def _icc_access(self, pc: int, pstate: int) -> None:
        """An ICC_* access, UNDEFINED in the core: the GIC's CPU interface answers it
        (ICV_* with HCR_EL2.IMO set) or it traps to EL2 (EC 0x18), at this instruction."""
        st = self.st
        st.fm_quiet = 0                              # the vGIC state moves: no exit is served in C
        key, is_read, rt, value, esr = st.icc_key, bool(st.icc_is_read), st.icc_rt, st.icc_value, st.icc_esr
        st.icc_key = 0
        result = self.icc_handler(key, is_read, value)
        if result is ICC_TRAP:
            self.el2_vector(12, esr, 0, pc, pstate)  # EXCP_HYP_TRAP
            return
        if is_read and rt != 31:
            self.uc.reg_write(A.UC_ARM64_REG_X0 + rt if rt < 29 else (A.UC_ARM64_REG_X29, A.UC_ARM64_REG_X30)[rt - 29],
                              result & (2**64 - 1))
        self.st.insns += 1                           # the MRS/MSR completed
        self.uc.reg_write(A.UC_ARM64_REG_PC, pc + 4)

    def retire_before(self, pc: int) -> None:
        """Uncount the instructions of the current block from `pc` on: the block
        hook counted the whole block, but an exception stopped it at `pc`."""
        st = self.st
        if st.block_start <= pc < st.block_end:
            st.insns -= (st.block_end - pc) >> 2
        st.block_start = st.block_end = 0

    # --- architecture --------------------------------------------------------
    def take_exception_el1(self, esr: int, far: int, elr: int, pstate: int, has_far: bool) -> None:
        """ARM ARM D1.10: exception entry to EL1 from EL0 or EL1 (AArch64)."""
        b = self._el1_entry
        b.read(self.uch)
        vbar = self.uc.reg_read(A.UC_ARM64_REG_VBAR_EL1)
        b[0] = elr
        b[1] = esr
        if has_far:
            b[2] = far
        if not aarch64.uses_sp_el1(pstate):
            # From EL0t/EL1t the live SP was SP_EL0: bank it, and the handler runs on
            # SP_EL1 (D1.10: the exception selects SP_ELx; AArch64.TakeException).
            b[3] = b[5]
            b[5] = b[4]
        b[6] = aarch64.el1_entry_pstate(pstate)
        b[7] = vbar + aarch64.vector_offset_el1(pstate)
        b[8] = pstate
        b.write(self.uch)
        self.st.charged += self.guest_exception_cost
        if self.exception_stalled():
            lib.av_exception_stall(self._uc_ptr, self.st)

    def exception_stalled(self) -> bool:
        """Note an exception entry to EL1 (the engine's or one the host injects): True if
        no instruction retired since the previous one - a guest faulting in its own
        vector, which makes no progress.  Such entries count against the instruction
        limit (st.stalls), so --max-insns bounds exception loops too."""
        st = self.st
        stalled = st.insns == self._insns_at_exception
        self._insns_at_exception = st.insns
        return stalled

    # --- time ----------------------------------------------------------------
    @property
    def insns(self) -> int:
        return self.st.insns

    @property
    def cycles(self) -> int:
        return self.st.insns * self.st.cpi + self.st.charged

    def charge(self, cycles: int) -> None:
        self.st.charged += cycles

    def retire(self, n: int = 1) -> None:
        """Count instructions the hypervisor completed on the guest's behalf (an emulated access)."""
        self.st.insns += n

    def ticks(self) -> int:
        return self.cycles * self.st.cnt_mul // self.st.cnt_div

    def enable_precise_traps(self) -> None:
        """Sysreg traps raised by the fast path (--no-vtimer) must stop the guest right
        after the trapped instruction; that needs a code hook (it costs speed, so it is
        only installed when used) and retranslation of code already translated."""
        if not self.precise_traps:
            self._add_c_hook(unicorn.UC_HOOK_CODE, lib.av_code_hook)
            self.uc.ctl_flush_tb()
            self.precise_traps = True

    def recalc_timer(self) -> None:
        """After the timer registers changed from outside the guest (a world switch)."""
        lib.av_recalc_timer(self.st)

    def advance_idle(self, cycles: int) -> None:
        """Time passes with no instruction executed (a blocked vCPU)."""
        self.st.charged += cycles
        self.idle_cycles += cycles

    def set_insn_limit(self, limit: int) -> None:
        self.st.insn_limit = limit
        self.st.limit_hit = 0

    @property
    def limit_hit(self) -> bool:
        return bool(self.st.limit_hit)

    def note_stall(self) -> None:
        """A stalled exception entry made by the host (an injected fault): it counts
        to the instruction limit as the engine's own do."""
        st = self.st
        st.stalls += 1
        if st.insns + st.stalls >= st.insn_limit:
            st.limit_hit = 1

    @property
    def stalls(self) -> int:
        return self.st.stalls

    def watch_first_el0(self, on: bool = True) -> None:
        """Note the first instruction executed at EL0 (the fast path checks PSTATE at the
        start of each block below the kernel's address space while this is on)."""
        self.st.watch_el0 = 1 if on else 0

    def take_first_el0(self) -> Optional[tuple[int, int]]:
        """(instructions retired before it, cycles then) once the first EL0 instruction
        ran, else None; each is returned once."""
        st = self.st
        if not st.el0_seen:
            return None
        st.el0_seen = 0
        return st.el0_insns, st.el0_cycles

    # --- state ---------------------------------------------------------------
    def read_sysreg(self, reg: SysReg) -> int:
        return self.uc.reg_read(A.UC_ARM64_REG_CP_REG, reg.uc)

    def write_sysreg(self, reg: SysReg, value: int) -> None:
        self.uc.reg_write(A.UC_ARM64_REG_CP_REG, reg.uc + (value,))

    def map_memory(self, pa: int, size: int) -> mmap.mmap:
        """Back [pa, pa+size) of the physical address space with host memory."""
        buf = mmap.mmap(-1, size)
        ptr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        self.uc.mem_map_ptr(pa, size, unicorn.UC_PROT_ALL, ptr)
        self._mem.append(buf)
        return buf

    def map_shared(self, pa: int, buf: mmap.mmap) -> None:
        """Map memory another pCPU already backs (guest RAM is shared by all pCPUs)."""
        ptr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        self.uc.mem_map_ptr(pa, len(buf), unicorn.UC_PROT_ALL, ptr)

    def map_device(self, pa: int, size: int, read, write) -> None:
        """A hardware device on the physical bus: the guest reaches it through stage 2
        with no trap (the GICv2 virtual CPU interface).  read(offset, size) -> value,
        write(offset, size, value)."""
        st = self.st

        def on_read(uc, off, sz, ud):
            st.fm_quiet = 0                  # the vGIC state moves: no exit is served in C
            return read(off, sz)

        def on_write(uc, off, sz, val, ud):
            st.fm_quiet = 0
            write(off, sz, val)
        self.uc.mmio_map(pa, size, on_read, None, on_write, None)

    def flush_tlb(self) -> None:
        """uc_ctl_flush_tlb (not wrapped by the Python binding): the TLB and the jump cache.
        Translated code stays (measured: a TB is found again by its physical page after
        the flush, and neither mem_write nor a host write drops it): drop_code does that."""
        err = UC.uc_ctl(self.uch, unicorn.UC_CTL_TLB_FLUSH | (unicorn.UC_CTL_IO_WRITE << 30))
        if err:
            raise EngineFault(f"TLB flush failed: {err}")

    def note_maintenance(self) -> None:
        """Note the guest's TLBI and IC for the host to broadcast (a hook on every SYS
        instruction: only a host with more than one pCPU needs it).  Code translated
        before does not carry the hook: it is dropped."""
        if not self.notes_maintenance:
            self._add_c_hook(unicorn.UC_HOOK_INSN, lib.av_sys_hook, A.UC_ARM64_INS_SYS)
            self.uc.ctl_flush_tb()
            self.notes_maintenance = True

    def take_maintenance(self) -> int:
        """MAINT_* executed since the last call (for the host to broadcast); the VA range
        of the IC IVAUs is in ic_range until the next call."""
        st = self.st
        m, st.maint = st.maint, 0
        if m & MAINT_IC:
            self.ic_range = (st.ic_lo, st.ic_hi)
            st.ic_lo, st.ic_hi = NEVER, 0
        return m

    def apply_maintenance(self, m: int, source: Optional["PhysicalCpu"] = None) -> None:
        """Another pCPU (`source`) broadcast TLBI / IC: the same effect on this core.
        Its TLB is not tagged by VMID and dropping all of it is always allowed.  IC
        IALLU(IS) drops all translated code; IC IVAU only the code of the physical
        pages its VAs name on `source`, when they name the same pages here (else all)."""
        if m & MAINT_TLB:
            self.flush_tlb()
        if m & MAINT_IC_ALL or (m & MAINT_IC and not self._invalidate_code_as(source)):
            self.uc.ctl_flush_tb()

    def translate_exec(self, va: int) -> Optional[int]:
        """The physical address an instruction fetch from `va` reaches now (both stages), or None."""
        if UC.uc_vmem_translate(self.uch, ctypes.c_uint64(va), unicorn.UC_PROT_EXEC, ctypes.byref(self._pa)):
            return None
        return self._pa.value

    def _invalidate_code_as(self, source: Optional["PhysicalCpu"]) -> bool:
        """Drop the translated code of the physical pages `source`'s IC IVAU range
        reaches there (translated code is found by physical page).  Unicorn drops code
        by an address it translates itself, so each page needs an address that reaches
        the same physical page here: the same VA (the same guest regime is loaded), or
        the physical address itself (a regime with translation off, as the host's).
        False if a page has neither, and the caller drops all."""
        if source is None:
            return False
        lo, hi = source.ic_range
        pages = range(lo & ~(PAGE - 1), hi, PAGE)
        if not pages or len(pages) > IC_BY_VA_MAX_PAGES:
            return False
        here = []
        for va in pages:
            pa = source.translate_exec(va)
            if pa is None:
                return False
            at = next((a for a in (va, pa & ~(PAGE - 1)) if self.translate_exec(a) == pa & ~(PAGE - 1)), None)
            if at is None:
                return False
            here.append(at)
        for at in here:
            self.uc.ctl_remove_cache(at, at + PAGE)
        return True

    def drop_code(self) -> None:
        """All translated code (uc_ctl_flush_tb): after the host changed guest memory the
        guest may execute (a device's DMA, a ROM device's array), as there is no
        invalidation by physical address."""
        self.uc.ctl_flush_tb()

    def flush_code(self, start: int, end: int) -> None:
        """Translated code is not invalidated by host writes (unicorn-facts.md)."""
        self.uc.ctl_remove_cache(start, end)

    # --- the local exclusive monitor ------------------------------------------
    def clear_exclusive(self) -> None:
        """ClearExclusiveLocal (ARM ARM B2.9): the monitor is core state no register
        reaches, so the core itself runs one CLREX from a host-private page - at EL2h,
        whose own translation regime is off (SCTLR_EL2.M = 0): neither the guest's
        stage 1 (the EL1&0 regime) nor stage 2 applies to the fetch, and no TLB entry
        of the guest is touched (HCR_EL2.VM/PTW keep their values: nothing is flushed).
        The stub's WFI ends the run; the virtual exception lines (VI/VF/VSE) are
        dropped meanwhile, as a WFI with an interrupt pending does not wait.  Put back
        exactly: PC, PSTATE, HCR_EL2 (a CP_REG write, last: it rebuilds the core's EL
        flags) and the fast path's counters (the stub is not a guest instruction).
        The fast path does all of it (av_clear_exclusive)."""
        if self._stub is None:
            self._stub = self.map_memory(STUB_PA, 0x1000)
            self._stub[0:12] = b"".join(w.to_bytes(4, "little") for w in (CLREX, WFI, B_SELF))
        self.fault = None
        err = lib.av_clear_exclusive(self._uc_ptr, self.st, STUB_PA, STUB_PSTATE, HCR_VIRTUAL_LINES)
        self.check_stub(err)

    def check_stub(self, err: int) -> None:
        """After av_clear_exclusive (here or in the scheduler's C loop)."""
        if err:
            raise EngineFault(f"the CLREX stub did not run: {unicorn.UcError(err)}")
        if self.fault is not None:
            raise self.fault

    # --- execution -----------------------------------------------------------
    def pc(self) -> int:
        """PC, by a raw call (it is read on every resumed turn; the binding's costs ~3 us)."""
        UC.uc_reg_read(self.uch, A.UC_ARM64_REG_PC, ctypes.byref(self._pc))
        return self._pc.value

    def run(self, pc: int) -> None:
        """Execute from `pc` until something stops the engine (an EL2 exception, the limit)."""
        if self.debug is not None:          # a debugger may halt the core in between (engine/debug.py)
            self.debug.run(pc)
        else:
            self.emulate(pc)

    def emulate(self, pc: int) -> None:
        """One run of the engine from `pc`."""
        self.fault = None
        try:
            self.uc.emu_start(pc, 0)
        except unicorn.UcError as e:
            self.engine_stopped(e)
        if self.fault is not None:
            raise self.fault

    def emulated(self, err: int) -> None:
        """After a run the scheduler's C loop started (uc_emu_start's result): what
        emu_start and emulate() raise."""
        if err:
            self.engine_stopped(unicorn.UcError(err))
        e, self.uc._hook_exception = self.uc._hook_exception, None
        if e is not None:
            raise e
        if self.fault is not None:
            raise self.fault

    def engine_stopped(self, e: unicorn.UcError) -> None:
        self._pcs.read(self.uch)
        raise EngineFault(f"engine stopped: {e} at pc={self._pcs[0]:#x}") from None

    def stop(self) -> None:
        self.uc.emu_stop()
