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
};
