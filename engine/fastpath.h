/* Shared between fastpath.c and the cffi cdef in fastpath_build.py. */
#define FP_REGS 34         /* Q0-Q31, FPCR, FPSR */

struct av_cpu {
    uint64_t insns;        /* guest instructions, whole blocks counted on entry */
    uint64_t block_start;  /* the block entered last */
    uint64_t block_end;
    uint64_t charged;      /* cycles charged by modeled operations */
    uint64_t cpi;          /* cycles per guest instruction */
    uint64_t cnt_mul;      /* counter ticks = cycles * cnt_mul / cnt_div */
    uint64_t cnt_div;
    uint64_t cntfrq;
    uint64_t cntvoff;      /* CNTVOFF_EL2, ticks */
    uint64_t cntv_ctl;     /* EL1 virtual timer, kept here: the core drops writes */
    uint64_t cntv_cval;
    uint64_t timer_writes;
    uint64_t insn_limit;
    uint64_t limit_hit;
    uint64_t stalls;       /* exception entries that retired no instruction: count to the limit */
    /* Physical interrupts while the guest runs: the block hook stops the engine at
     * the first block boundary at or after the earliest deadline (cycles). */
    uint64_t timer_deadline;   /* virtual timer output asserts (ENABLE, !IMASK, CVAL reached) */
    uint64_t timer_masked;     /* its physical PPI is active at the GIC: no new assertion */
    uint64_t host_deadline;    /* host events: soft timers, IPIs */
    uint64_t irq_pending;      /* set when a deadline stopped the engine */
    /* SMP: pCPUs run in turns of virtual time.  The end of a turn pauses the engine
     * (no architectural event, nothing charged); the next turn resumes it. */
    uint64_t turn_deadline;
    uint64_t turn_over;
    /* System-register accesses that must trap to EL2 but that the core cannot trap
     * (no FEAT_ECV): raised from the hook as an EC 0x18 exit. */
    /* Virtual IRQs are vectored by the core itself (HCR_EL2.VI) with no hook: the
     * block hook recognises the IRQ vector entry while VI is asserted and charges
     * the exception entry to EL1 there, before the handler's first instruction. */
    uint64_t vi_asserted;
    uint64_t virq_entry_cost;
    uint64_t virq_taken;
    /* GICv3 CPU interface registers (ICC_*) do not exist in the core: an access is
     * UNDEFINED there, precisely at the instruction.  The hook notes which register
     * it was, declines, and the INTR hook emulates the ICV register or traps to EL2. */
    uint64_t gicv3;
    uint64_t icc_pc;
    uint64_t icc_key;          /* op0 << 16 | op1 << 12 | crn << 8 | crm << 4 | op2 */
    uint64_t icc_is_read;
    uint64_t icc_rt;
    uint64_t icc_value;        /* for writes: Xt */
    uint64_t icc_esr;          /* the EC 0x18 syndrome, should the access trap to EL2 */
    /* Broadcast maintenance (HCR_EL2.FB makes every EL1 TLBI and IC broadcast): the
     * core acts on its own TLB and code only; the host repeats it on the other pCPUs. */
    uint64_t maint;            /* MAINT_TLB | MAINT_IC | MAINT_IC_ALL, since the host last looked */
    uint64_t ic_lo, ic_hi;     /* the VAs IC IVAU named meanwhile: [ic_lo, ic_hi) */
    /* A Linux boot's first user-space instruction: while watch_el0, a block below the
     * kernel's half of the address space has PSTATE read; the first one at EL0 notes
     * the instructions retired before it and the cycles then (el0_seen = 1). */
    uint64_t watch_el0;
    uint64_t el0_seen;
    uint64_t el0_insns;
    uint64_t el0_cycles;
    uint64_t trap_timer;       /* --no-vtimer: CNTV_* accesses trap */
    uint64_t trap_esr;
    uint64_t trap_pc;
    /* External debug (engine/debug.py): a debugger halts the core at an instruction
     * boundary that neither the guest nor the model can see. */
    uint64_t dbg_active;       /* set only while engine/debug.py runs the guest */
    uint64_t dbg_halt_at;      /* halt before the first block that starts at or after these cycles */
    uint64_t dbg_halted;       /* the block hook halted the core: nothing of that block ran or counted */
    uint64_t dbg_resume;       /* the core halted inside a block already entered and counted: */
    uint64_t dbg_resume_pc;    /*   its re-entry at dbg_resume_pc is that block going on */
    uint64_t dbg_resume_end;   /*   (it ended at dbg_resume_end) */
    uint64_t dbg_reshaped;     /* re-entries whose block ended elsewhere: boundaries moved */
    /* Every exception reaches av_intr_hook first.  It reads the core's exception record
     * (engine/excrecord.py: a uc_context at intr_ctx, the record at rec_off, the local
     * exclusive monitor's address at excl_off) and either serves a hot PL011 access
     * itself (engine/fastmmio.py) or hands the exception to Python with rec_*. */
    uint64_t intr_ctx;
    uint64_t rec_off;
    uint64_t excl_off;
    uint64_t rec_syndrome;
    uint64_t rec_vaddress;
    uint64_t rec_target_el;
    /* A data abort on the PL011's IPA page served here: the whole exit (EL2 entry, world
     * switch, highvisor, KVM_EXIT_MMIO to the VMM, device, KVM_RUN, entry) is charged
     * fm_c1[key] cycles from the trap to the device access and fm_c2[key] from there to
     * the guest's re-entry: what the Python path charged for that exit (learned from it,
     * engine/fastmmio.py), served only while that path would do nothing else.  key: WnR,
     * plus 2 when the design switches FP/SIMD lazily and the guest changed its FP/SIMD
     * registers since the vCPU was last loaded (vcpu_put then charges the lazy switch). */
    uint64_t fm_tag;           /* which device and learned charges the fields below were set for */
    uint64_t fm_armed;         /* the host scheduler's window below holds (cleared by any slow exit) */
    uint64_t fm_quiet;         /* the vCPU's vGIC and timers have nothing to do on an exit */
    uint64_t fm_check;         /* verify instead of serve: flag fm_would and decline */
    uint64_t fm_clear_monitor; /* guest entry clears the local monitor: serve only if it is clear */
    uint64_t fm_base, fm_size; /* the device's IPA range */
    uint64_t fm_c1[4], fm_c2[4];   /* per key; 0: not learned yet */
    uint64_t fm_fp_lazy;       /* the design's vcpu_put charges FP/SIMD only if the guest changed it */
    uint8_t fm_fp_at_load[FP_REGS * 16];   /* Q0-Q31, FPCR, FPSR at the last vcpu_load, 16 bytes */
                                           /* each (el2/context.py fp_bank's layout) */
    uint64_t fm_pick_bound;    /* the scheduler keeps this vCPU only if the access is before this */
    uint64_t fm_vmm_at;        /* the VMM's next timed event */
    uint64_t fm_multi;         /* more than one vCPU: the turn deadline follows the access time */
    uint64_t fm_others_min;    /* the earliest other pCPU's running vCPU (NEVER: none) */
    uint64_t fm_quantum;
    uint64_t fm_lookahead;     /* the host's lookahead (armvirt/scheduler.py _sync_point) */
    uint64_t fm_shared;        /* the pCPU carries several vCPUs: the turn's end is kept */
    uint64_t fm_owner_deadline;
    uint64_t fr_ok, fr_value, fr_listening;   /* UARTFR reads: served, their value, RX interrupts unmasked, */
    uint64_t fr_limit;                        /*   the empty-read count they must stay below */
    uint64_t dr_ok;                           /* UARTDR writes: served (the interrupt level stays) */
    uint64_t dev_empty_reads, dev_last_tx, dev_tx_written;   /* the device state the served accesses move */
    uint64_t fm_n[4];          /* exits served, per key */
    uint64_t fm_last_key, fm_last_trap, fm_last_entry;
    uint64_t fm_last_esr, fm_last_far, fm_last_hpfar, fm_last_elr, fm_last_pstate;
    uint64_t fm_would;         /* an exit Python takes for the fast path to learn (1 + key) or */
                               /* check (fm_check: 5 + key, fm_would_deadline set) */
    uint64_t fm_would_trap, fm_would_deadline;
    uint64_t tx_len;
    uint8_t tx_buf[4096];      /* characters written, for the -serial backend in order */
    uint64_t py_intrs;         /* exceptions handed to Python (av_py_intr): the host looked */
    uint64_t in_stub;          /* av_clear_exclusive's stub is running (an exception there is a bug) */
};

#define SLOT_NONE 0        /* no live vCPU on this pCPU */
#define SLOT_PAUSED 1      /* paused mid-guest at a turn end or a sync point: C may resume it */
#define SLOT_BLOCKED 2     /* blocked in WFI until `wake` */
#define SLOT_HOST 3        /* runnable, but only the host's own path may run it */

/* The host scheduler's resumes of paused vCPUs, in C (av_sched_loop; armvirt/engine_turns.py).
 * One slot per pCPU, in pCPU order; each pCPU carries at most one vCPU. */
struct av_slot {
    struct av_cpu *c;
    void *uc;
    uint64_t kind;             /* SLOT_*: what the pCPU's vCPU is doing */
    uint64_t wake;             /* SLOT_BLOCKED: when it wakes */
    uint64_t owned, owner_deadline;   /* Scheduler.owner[p]: this vCPU's turn and its end */
    int64_t last_turn;         /* Scheduler.last_turn (-1: none yet) */
    uint64_t fm;               /* host_kernel/fast_mmio.py serves its exits: arm the window */
    uint64_t quiet;            /* FastMmio.enter's fm_quiet for this vCPU */
};

struct av_sched {
    uint64_t n;                /* slots */
    uint64_t turns;            /* Scheduler.turns */
    uint64_t quantum, lookahead, vmm_at;
    uint64_t clear_monitor, stub_pa, stub_pstate, lines;   /* av_clear_exclusive's arguments */
    uint64_t runs;             /* resumes that ended paused again, as they began */
    uint64_t last;             /* the slot that ran last (UINT64_MAX: none) */
    uint64_t ran;              /* the slot whose run ended otherwise: the host takes it on */
    uint64_t stage;            /* 1: in the monitor clear, 2: in the guest's run */
    int64_t err;               /* uc_err of that stage */
};
