/* Shared between fastpath.c and the cffi cdef in fastpath_build.py. */
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
};
