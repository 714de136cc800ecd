/* armvirt engine fast path: runs inside Unicorn's hooks, in C, because a
 * Python hook per block or per MRS would cost microseconds (unicorn-facts.md).
 *
 * - block_hook counts guest instructions exactly: a whole block is counted on
 *   entry, unless the hook stops the engine there (the block does not run); the
 *   Python side corrects a mid-block exception from the PC.
 * - sysreg_hook virtualizes the generic timer registers the core gets wrong:
 *   it reads CNTVCT/CNTPCT from host time and drops CNTV_* writes.  Virtual
 *   time is cycles = insns * cpi + charged (DESIGN.md section 6).
 */
#include <stdint.h>
#include <string.h>
#include <unicorn/unicorn.h>

#include "fastpath.h"

static inline uint64_t retired_before(const struct av_cpu *c, uint64_t pc)
{
    /* Instructions of the current block from pc on have not retired yet. */
    if (pc >= c->block_start && pc < c->block_end)
        return c->insns - ((c->block_end - pc) >> 2);
    return c->insns;
}

static inline uint64_t ticks_at(const struct av_cpu *c, uint64_t pc)
{
    unsigned __int128 cyc = (unsigned __int128)retired_before(c, pc) * c->cpi + c->charged;
    return (uint64_t)(cyc * c->cnt_mul / c->cnt_div);
}

static inline uint64_t cycles_now(const struct av_cpu *c)
{
    return c->insns * c->cpi + c->charged;
}

/* First cycle at which the counter reaches `ticks` (ticks = floor(cycles * mul / div)). */
static uint64_t cycles_for_ticks(const struct av_cpu *c, uint64_t ticks)
{
    unsigned __int128 num = (unsigned __int128)ticks * c->cnt_div + c->cnt_mul - 1;
    unsigned __int128 cyc = num / c->cnt_mul;
    return cyc > UINT64_MAX ? UINT64_MAX : (uint64_t)cyc;
}

/* ARM ARM D11.2.4: the timer condition is met when CNTVCT >= CVAL; the output
 * asserts when also ENABLE = 1 and IMASK = 0. */
void av_recalc_timer(struct av_cpu *c)
{
    if ((c->cntv_ctl & 3) == 1)
        c->timer_deadline = cycles_for_ticks(c, c->cntv_cval + c->cntvoff);
    else
        c->timer_deadline = UINT64_MAX;
}

/* A debugger is attached (engine/debug.py).  Returns 1 when the block must not run
 * its checks: the core halts before it, or it continues a block already checked. */
static int debug_block(uc_engine *uc, struct av_cpu *c, uint64_t addr, uint32_t size)
{
    if (cycles_now(c) >= c->dbg_halt_at) {
        /* Halt before this block: it has not started, its checks are made when it does. */
        c->block_start = c->block_end = 0;
        c->dbg_halted = 1;
        uc_emu_stop(uc);
        return 1;
    }
    if (c->dbg_resume && addr == c->dbg_resume_pc) {
        /* The rest of the block the core halted in: counted again from here, not checked. */
        c->dbg_resume = 0;
        if (addr + size != c->dbg_resume_end)
            c->dbg_reshaped++;
        c->insns += size >> 2;
        c->block_start = addr;
        c->block_end = addr + size;
        return 1;
    }
    return 0;
}

/* Physical interrupts and the end of the pCPU's turn, at an instruction boundary.
 * Returns 1 when it stopped the engine: the core does not run the block whose hook
 * asked for the stop (it is entered again, and counted then, when the run goes on). */
static inline int check_deadlines(uc_engine *uc, struct av_cpu *c)
{
    uint64_t now = cycles_now(c);
    uint64_t deadline = c->timer_masked ? c->host_deadline
                        : (c->timer_deadline < c->host_deadline ? c->timer_deadline : c->host_deadline);
    if (now >= deadline && !c->irq_pending) {
        /* An IRQ to EL2 (HCR_EL2.IMO) at this instruction boundary. */
        c->irq_pending = 1;
        uc_emu_stop(uc);
        return 1;
    }
    if (now >= c->turn_deadline && !c->turn_over) {
        c->turn_over = 1;
        uc_emu_stop(uc);
        return 1;
    }
    return 0;
}

/* --max-insns: the run stops at the first block boundary at or after N instructions
 * (exception entries that retired none, stalls, count too). */
static inline int check_limit(uc_engine *uc, struct av_cpu *c)
{
    if (c->insns + c->stalls >= c->insn_limit && !c->limit_hit) {
        c->limit_hit = 1;
        uc_emu_stop(uc);
        return 1;
    }
    return 0;
}

/* TTBR0's half (user space) starts every block of EL0 code; the kernel runs in TTBR1's
 * (0xffff...) once its MMU is on, so PSTATE is read only for low addresses. */
static void watch_el0(uc_engine *uc, struct av_cpu *c, uint64_t addr)
{
    uint32_t pstate = 0;
    if (addr >> 48)
        return;
    uc_reg_read(uc, UC_ARM64_REG_PSTATE, &pstate);
    if (((pstate >> 2) & 3) == 0) {
        c->watch_el0 = 0;
        c->el0_seen = 1;
        c->el0_insns = c->insns;
        c->el0_cycles = cycles_now(c);
    }
}

/* A block the hook stops the engine on does not run: nothing of it is counted or
 * charged, and no block is "current" (retired_before, retire_before see none). */
static void stop_before_block(struct av_cpu *c)
{
    c->block_start = c->block_end = 0;
}

void av_block_hook(uc_engine *uc, uint64_t addr, uint32_t size, void *ud)
{
    struct av_cpu *c = ud;
    if (c->dbg_active && debug_block(uc, c, addr, size))
        return;
    if (check_deadlines(uc, c) || check_limit(uc, c)) {
        stop_before_block(c);
        return;
    }
    if (c->watch_el0)
        watch_el0(uc, c, addr);
    if (c->vi_asserted) {
        uint64_t vbar = 0;
        uc_reg_read(uc, UC_ARM64_REG_VBAR_EL1, &vbar);
        if (addr == vbar + 0x280 || addr == vbar + 0x480) {   /* IRQ, current EL SPx / lower EL */
            c->charged += c->virq_entry_cost;
            c->virq_taken++;
        }
    }
    c->insns += size >> 2;
    c->block_start = addr;
    c->block_end = addr + size;
}

/* An exception entry to EL1 with no instruction retired since the previous one (a
 * guest faulting in its own vector).  Such a loop may never reach a block boundary
 * (a fetch that faults translates no block), so the checks of the block hook run
 * here too: the turn ends, interrupts are taken, and the stall counts to the limit. */
void av_exception_stall(uc_engine *uc, struct av_cpu *c)
{
    c->stalls++;
    if (!check_deadlines(uc, c))
        check_limit(uc, c);
}

static int xreg_number(uc_arm64_reg reg)
{
    if (reg >= UC_ARM64_REG_X0 && reg <= UC_ARM64_REG_X28)
        return reg - UC_ARM64_REG_X0;
    if (reg == UC_ARM64_REG_X29) return 29;
    if (reg == UC_ARM64_REG_X30) return 30;
    return 31;                                /* XZR */
}

/* ARM ARM D11.2.1 / D13.11: EL0 access to the counters and the virtual timer
 * is gated by CNTKCTL_EL1.{EL0VCTEN, EL0PCTEN, EL0VTEN}.  When it is not
 * permitted we return 0 and let the core raise its own UNDEF. */
static int el0_permitted(uc_engine *uc, unsigned bit)
{
    uint32_t pstate = 0;
    uc_reg_read(uc, UC_ARM64_REG_PSTATE, &pstate);
    if (((pstate >> 2) & 3) != 0)
        return 1;
    uc_arm64_cp_reg k = {.crn = 14, .crm = 1, .op0 = 3, .op1 = 0, .op2 = 0};
    uc_reg_read(uc, UC_ARM64_REG_CP_REG, &k);
    return (k.val >> bit) & 1;
}

/* Raise an EC 0x18 trap to EL2 for this MSR/MRS and stop right after it.  A stop
 * requested from this hook takes effect only at the next block boundary (measured:
 * a PC write does not help either), unless a code hook is installed - engine.core
 * installs av_code_hook while any vCPU can trap this way (--no-vtimer). */
static uint32_t trap_to_el2(uc_engine *uc, uc_arm64_reg reg, const uc_arm64_cp_reg *cp,
                            struct av_cpu *c, int is_read, uint64_t pc)
{
    c->trap_esr = (0x18u << 26) | (1u << 25) | (cp->op0 << 20) | (cp->op2 << 17) | (cp->op1 << 14)
                  | (cp->crn << 10) | ((uint32_t)xreg_number(reg) << 5) | (cp->crm << 1) | (is_read ? 1 : 0);
    c->trap_pc = pc;
    uc_emu_stop(uc);
    return 1;
}

#define ENC(op1, crn, crm, op2) (((op1) << 12) | ((crn) << 8) | ((crm) << 4) | (op2))

/* ICC_* (IHI 0069 12.2): op0 = 3, CRn = 12 (op1 0, 1 or 2), or ICC_PMR_EL1 (CRn 4, CRm 6). */
static int is_icc(const uc_arm64_cp_reg *cp)
{
    return cp->op0 == 3 && ((cp->crn == 12 && cp->op1 <= 2 && cp->crm >= 8) ||
                            (cp->op1 == 0 && cp->crn == 4 && cp->crm == 6 && cp->op2 == 0));
}

static uint32_t note_icc(uc_engine *uc, uc_arm64_reg reg, const uc_arm64_cp_reg *cp,
                         struct av_cpu *c, int is_read)
{
    uint64_t pc = 0;
    uc_reg_read(uc, UC_ARM64_REG_PC, &pc);
    c->icc_pc = pc;
    c->icc_key = ((uint64_t)cp->op0 << 16) | (cp->op1 << 12) | (cp->crn << 8) | (cp->crm << 4) | cp->op2;
    c->icc_is_read = is_read;
    c->icc_rt = xreg_number(reg);
    c->icc_value = is_read ? 0 : cp->val;
    c->icc_esr = (0x18u << 26) | (1u << 25) | (cp->op0 << 20) | (cp->op2 << 17) | (cp->op1 << 14)
                 | (cp->crn << 10) | ((uint32_t)c->icc_rt << 5) | (cp->crm << 1) | (is_read ? 1 : 0);
    return 0;                  /* the core raises UNDEF at this instruction */
}

static uint32_t timer_access(uc_engine *uc, uc_arm64_reg reg, const uc_arm64_cp_reg *cp,
                             struct av_cpu *c, int is_read)
{
    if (c->gicv3 && is_icc(cp))
        return note_icc(uc, reg, cp, c, is_read);
    if (cp->op0 != 3 || cp->op1 != 3 || cp->crn != 14)
        return 0;
    uint64_t pc = 0, v;
    uc_reg_read(uc, UC_ARM64_REG_PC, &pc);
    if (c->trap_timer && cp->crm == 3 && el0_permitted(uc, 8))
        return trap_to_el2(uc, reg, cp, c, is_read, pc);
    switch (ENC(cp->op1, cp->crn, cp->crm, cp->op2)) {
    case ENC(3, 14, 0, 0): /* CNTFRQ_EL0: RO at EL0/EL1 when EL2 is present */
        if (!is_read) return 0;
        v = c->cntfrq;
        break;
    case ENC(3, 14, 0, 1): /* CNTPCT_EL0 */
        if (!is_read || !el0_permitted(uc, 0)) return 0;
        v = ticks_at(c, pc);
        break;
    case ENC(3, 14, 0, 2): /* CNTVCT_EL0 = physical count - CNTVOFF_EL2 */
        if (!is_read || !el0_permitted(uc, 1)) return 0;
        v = ticks_at(c, pc) - c->cntvoff;
        break;
    case ENC(3, 14, 3, 1): /* CNTV_CTL_EL0: ISTATUS (bit 2) is derived */
        if (!el0_permitted(uc, 8)) return 0;
        if (is_read) {
            v = c->cntv_ctl & 3;
            if ((v & 1) && ticks_at(c, pc) - c->cntvoff >= c->cntv_cval)
                v |= 4;
        } else {
            c->cntv_ctl = cp->val & 3;
            c->timer_writes++;
            av_recalc_timer(c);
            return 1;
        }
        break;
    case ENC(3, 14, 3, 2): /* CNTV_CVAL_EL0 */
        if (!el0_permitted(uc, 8)) return 0;
        if (!is_read) { c->cntv_cval = cp->val; c->timer_writes++; av_recalc_timer(c); return 1; }
        v = c->cntv_cval;
        break;
    case ENC(3, 14, 3, 0): /* CNTV_TVAL_EL0: signed 32-bit view of CVAL - CNTVCT */
        if (!el0_permitted(uc, 8)) return 0;
        if (!is_read) {
            c->cntv_cval = ticks_at(c, pc) - c->cntvoff + (uint64_t)(int64_t)(int32_t)cp->val;
            c->timer_writes++;
            av_recalc_timer(c);
            return 1;
        }
        v = (uint64_t)(uint32_t)(c->cntv_cval - (ticks_at(c, pc) - c->cntvoff));
        break;
    default:
        return 0;
    }
    uc_reg_write(uc, reg, &v);
    return 1;
}

uint32_t av_mrs_hook(uc_engine *uc, uc_arm64_reg reg, const uc_arm64_cp_reg *cp, void *ud)
{
    return timer_access(uc, reg, cp, ud, 1);
}

uint32_t av_msr_hook(uc_engine *uc, uc_arm64_reg reg, const uc_arm64_cp_reg *cp, void *ud)
{
    return timer_access(uc, reg, cp, ud, 0);
}

/* SYS instructions (op0 = 1): note TLB invalidations (CRn 8) and instruction-cache
 * invalidations to PoU for the host to broadcast: IC IALLUIS, IC IALLU (CRn 7 CRm 1/5
 * op1 0) drop all code; IC IVAU (op1 3, CRm 5) names the VA in Xt, whose cache line
 * (at most 2 KB: CTR_EL0.IminLine <= 9) joins [ic_lo, ic_hi).  The core still executes
 * them: returns 0. */
uint32_t av_sys_hook(uc_engine *uc, uc_arm64_reg reg, const uc_arm64_cp_reg *cp, void *ud)
{
    struct av_cpu *c = ud;
    (void)uc; (void)reg;
    if (cp->op0 != 1)
        return 0;
    if (cp->crn == 8)
        c->maint |= 1;
    else if (cp->crn == 7 && cp->op1 == 0 && (cp->crm == 1 || cp->crm == 5) && cp->op2 == 0)
        c->maint |= 4;
    else if (cp->crn == 7 && cp->op1 == 3 && cp->crm == 5 && cp->op2 == 1) {
        uint64_t line = cp->val & ~(uint64_t)2047;
        c->maint |= 2;
        if (line < c->ic_lo)
            c->ic_lo = line;
        if (line + 2048 > c->ic_hi)
            c->ic_hi = line + 2048;
    }
    return 0;
}

/* Installed only when traps are raised from the sysreg hook: its presence makes a stop
 * requested by that hook take effect after the current instruction. */
void av_code_hook(uc_engine *uc, uint64_t addr, uint32_t size, void *ud)
{
}

/* ClearExclusiveLocal for engine/core.py (PhysicalCpu.clear_exclusive): the core runs
 * the host-private stub at stub_pa (CLREX; WFI) at EL2h, whose translation regime is
 * off, with the virtual exception lines (HCR_EL2 bits `lines`) dropped so that the WFI
 * ends the run; PC, PSTATE and HCR_EL2 (a CP_REG write, last: it rebuilds the core's
 * cached EL flags) are put back, and so is this struct (the stub is not the guest's).
 * In C because it runs on every guest entry of an SMP run: the same steps from Python
 * cost ~10 register calls through the binding. */
int av_clear_exclusive(uc_engine *uc, struct av_cpu *c, uint64_t stub_pa, uint32_t stub_pstate,
                       uint64_t lines)
{
    struct av_cpu saved = *c;
    uint64_t pc = 0, hcr_val, intrs;
    uint32_t pstate = 0;
    uc_arm64_cp_reg hcr = {.crn = 1, .crm = 1, .op0 = 3, .op1 = 4, .op2 = 0};   /* HCR_EL2 */
    c->insn_limit = c->timer_deadline = c->host_deadline = c->turn_deadline = UINT64_MAX;
    c->in_stub = 1;
    uc_reg_read(uc, UC_ARM64_REG_PC, &pc);
    uc_reg_read(uc, UC_ARM64_REG_PSTATE, &pstate);
    uc_reg_read(uc, UC_ARM64_REG_CP_REG, &hcr);
    hcr_val = hcr.val;
    uc_reg_write(uc, UC_ARM64_REG_PSTATE, &stub_pstate);
    hcr.val = hcr_val & ~lines;
    uc_reg_write(uc, UC_ARM64_REG_CP_REG, &hcr);
    uc_err err = uc_emu_start(uc, stub_pa, 0, 0, 0);
    uc_reg_write(uc, UC_ARM64_REG_PC, &pc);
    uc_reg_write(uc, UC_ARM64_REG_PSTATE, &pstate);
    hcr.val = hcr_val;
    uc_reg_write(uc, UC_ARM64_REG_CP_REG, &hcr);
    intrs = c->py_intrs;                 /* what the host saw stays seen (an exception: a bug) */
    *c = saved;
    c->py_intrs = intrs;
    return err;
}

/* --- exceptions: the INTR hook ------------------------------------------------------ */

extern void av_py_intr(void *uc, uint32_t intno, void *ud);

static uc_arm64_reg xreg_id(unsigned n)
{
    if (n <= 28) return UC_ARM64_REG_X0 + n;
    return n == 29 ? UC_ARM64_REG_X29 : UC_ARM64_REG_X30;
}

#define UART_DR 0x000
#define UART_FR 0x018
#define NEVER_CYCLES UINT64_MAX

static inline uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* A data abort (EC 0x24, ISV = 1, stage-2 translation fault) on the PL011's page, for
 * UARTFR read or UARTDR write, while the Python path would only do that access:
 * served here (engine/fastmmio.py says when, and what it costs).  Returns 1 if served. */
/* Q0-Q31, FPCR, FPSR in el2/context.py fp_bank's layout: 16 bytes each, a 32-bit control
 * register zero-extended (the bank's RegBank.snapshot compares the same bytes). */
static void read_fp(uc_engine *uc, uint8_t *out)
{
    memset(out, 0, FP_REGS * 16);
    for (int i = 0; i < 32; i++)
        uc_reg_read(uc, UC_ARM64_REG_Q0 + i, out + 16 * i);
    uc_reg_read(uc, UC_ARM64_REG_FPCR, out + 16 * 32);
    uc_reg_read(uc, UC_ARM64_REG_FPSR, out + 16 * 33);
}

static int fast_mmio(uc_engine *uc, struct av_cpu *c, uint32_t esr, uint64_t far)
{
    uint64_t pc = 0, hpfar, ipa, off, t_trap, t_dev, t_entry, retired;
    uint32_t pstate = 0;
    unsigned wnr, size, srt, key;
    uint8_t fp[FP_REGS * 16];
    if (!c->fm_armed || !c->fm_quiet || c->dbg_active || c->el0_seen || c->maint || c->vi_asserted
        || c->timer_masked)
        return 0;
    if ((esr >> 26) != 0x24 || !(esr >> 24 & 1) || (esr >> 7 & 1) || ((esr & 0x3C) != 0x04))
        return 0;                                  /* not EC DABT_LOW, ISV=0, S1PTW, or not translation */
    wnr = esr >> 6 & 1;
    size = 1u << (esr >> 22 & 3);
    srt = esr >> 16 & 31;
    if (size == 8)
        return 0;
    if (c->fm_clear_monitor &&
        *(uint64_t *)((char *)(uintptr_t)c->intr_ctx + c->excl_off) != UINT64_MAX)
        return 0;                                  /* a reservation is open: the entry clears it */
    uc_arm64_cp_reg hp = {.crn = 6, .crm = 0, .op0 = 3, .op1 = 4, .op2 = 4};   /* HPFAR_EL2 */
    uc_reg_read(uc, UC_ARM64_REG_CP_REG, &hp);
    hpfar = hp.val;
    ipa = ((hpfar >> 4) << 12) | (far & 0xFFF);
    if (ipa < c->fm_base || ipa - c->fm_base >= c->fm_size)
        return 0;
    off = ipa - c->fm_base;
    if (wnr ? !(off == UART_DR && c->dr_ok && c->tx_len < sizeof c->tx_buf)
            : !(off == UART_FR && c->fr_ok && (c->fr_listening || c->dev_empty_reads + 1 < c->fr_limit)))
        return 0;
    uc_reg_read(uc, UC_ARM64_REG_PC, &pc);
    retired = retired_before(c, pc);
    t_trap = retired * c->cpi + c->charged;
    key = wnr;
    if (c->fm_fp_lazy) {                           /* did the guest change FP/SIMD since its load? */
        read_fp(uc, fp);
        if (memcmp(fp, c->fm_fp_at_load, sizeof fp))
            key |= 2;
    }
    if (!c->fm_c1[key]) {                          /* not learned yet: Python takes it, and learns */
        c->fm_would = 1 + key;
        c->fm_would_trap = t_trap;
        return 0;
    }
    t_dev = t_trap + c->fm_c1[key];
    t_entry = t_dev + c->fm_c2[key];
    if (t_dev >= c->fm_pick_bound || t_dev >= c->turn_deadline || t_dev >= c->fm_vmm_at ||
        t_entry >= c->timer_deadline || t_entry >= c->host_deadline)
        return 0;                                  /* the scheduler, a timer or the VMM acts in between */
    /* The scheduler's next turn deadline (armvirt/scheduler.py Scheduler.run). */
    uint64_t deadline = c->fm_owner_deadline, turn = c->fm_vmm_at;
    if (c->fm_multi) {
        deadline = min_u64(t_dev, c->fm_others_min) + c->fm_quantum;
        if (c->fm_shared)
            deadline = min_u64(deadline, c->fm_owner_deadline);
        turn = min_u64(deadline, c->fm_vmm_at);
        if (c->fm_others_min != NEVER_CYCLES)      /* the sync point: a lookahead past the slowest */
            turn = min_u64(turn, min_u64(t_dev, c->fm_others_min) + c->fm_lookahead);
    }
    if (c->fm_check) {
        c->fm_would = 5 + key;
        c->fm_would_trap = t_trap;
        c->fm_would_deadline = turn;
        return 0;
    }
    uc_reg_read(uc, UC_ARM64_REG_PSTATE, &pstate);
    /* The device (armvirt/devices/pl011.py Pl011.read/write for these registers). */
    if (wnr) {
        uint64_t v = 0;
        if (srt != 31)
            uc_reg_read(uc, xreg_id(srt), &v);
        c->tx_buf[c->tx_len++] = (uint8_t)v;
        c->dev_tx_written = 1;
        c->dev_last_tx = t_dev;
        c->dev_empty_reads = 0;
    } else {
        /* complete_read_value: SSE sign-extends to 32 or 64 bits (SF) */
        uint64_t v = c->fr_value & ((1ull << (8 * size)) - 1);
        if ((esr >> 21 & 1) && (v >> (8 * size - 1))) {
            v -= 1ull << (8 * size);
            if (!(esr >> 15 & 1))
                v &= 0xFFFFFFFFull;
        }
        c->dev_empty_reads = c->fr_listening ? 0 : c->dev_empty_reads + 1;
        if (srt != 31)
            uc_reg_write(uc, xreg_id(srt), &v);
    }
    /* The access retires; time moves as the Python path moves it. */
    c->insns = retired + 1;
    c->block_start = c->block_end = 0;
    c->charged += c->fm_c1[key] + c->fm_c2[key] - c->cpi;
    c->fm_owner_deadline = deadline;
    c->turn_deadline = turn;
    c->fm_n[key]++;
    c->fm_last_key = key;
    if (c->fm_fp_lazy)                             /* the re-entry's vcpu_load sees these */
        memcpy(c->fm_fp_at_load, fp, sizeof fp);
    c->fm_last_trap = t_trap;
    c->fm_last_entry = t_entry;
    c->fm_last_esr = esr;
    c->fm_last_far = far;
    c->fm_last_hpfar = hpfar;
    c->fm_last_elr = pc;
    c->fm_last_pstate = pstate;
    pc += 4;
    uc_reg_write(uc, UC_ARM64_REG_PC, &pc);
    return 1;
}

/* Unicorn reports a synchronous exception (or an interrupt) with its number only; the
 * syndrome is in the core's exception record (engine/excrecord.py). */
void av_intr_hook(uc_engine *uc, uint32_t intno, void *ud)
{
    struct av_cpu *c = ud;
    uc_context *ctx = (uc_context *)(uintptr_t)c->intr_ctx;
    uc_context_save(uc, ctx);
    const char *rec = (const char *)ctx + c->rec_off;
    uint32_t syndrome = *(const uint32_t *)rec;
    uint64_t vaddress = *(const uint64_t *)(rec + 8);
    uint32_t target_el = *(const uint32_t *)(rec + 16);
    if (intno == 4 && target_el == 2 && fast_mmio(uc, c, syndrome, vaddress))
        return;
    c->rec_syndrome = syndrome;
    c->rec_vaddress = vaddress;
    c->rec_target_el = target_el;
    c->py_intrs++;
    av_py_intr(uc, intno, ud);
}

/* --- the host scheduler's resumes of paused vCPUs ---------------------------------------
 * Most runs of an SMP guest end at a turn end or a sync point with nothing to do: no exit,
 * no event, no line moved (a Linux boot: 69,500 of 73,500).  armvirt/scheduler.py would
 * pick the vCPU furthest behind, set its turn's deadline and resume it; this loop does the
 * same steps (Scheduler._pick, _others, _turn_deadline, _sync_point; FastMmio.arm and
 * enter; Lowvisor.run's resume) while each pCPU carries at most one vCPU, and gives the
 * host back the first run that ended otherwise (s->ran, the rest of its step is the
 * host's), or the step before a pick it may not take (a blocked or a host-only vCPU, the
 * VMM's event).  Returns 1 if a run is the host's to finish, 0 if none, -1 if the first
 * pick was not a paused vCPU (the host asked for one: a bug). */
static int resumed_as_paused(const struct av_cpu *c, uint64_t intrs)
{
    /* Lowvisor.run's EXIT_TURN, and nothing the host's step would look at after it */
    return c->turn_over && !c->trap_esr && !c->irq_pending && !c->limit_hit && !c->maint
           && !c->fm_n[0] && !c->fm_n[1] && !c->fm_n[2] && !c->fm_n[3] && !c->fm_would && !c->el0_seen && c->py_intrs == intrs;
}

int av_sched_loop(struct av_sched *s, struct av_slot *slots)
{
    s->runs = 0;
    s->last = s->ran = UINT64_MAX;
    s->stage = 0;
    s->err = 0;
    for (;;) {
        /* Scheduler._pick: the earliest time, ties to the lower pCPU (the rest of its key
         * orders vCPUs of one pCPU: here there is one). */
        uint64_t best = UINT64_MAX, bt = 0, i;
        for (i = 0; i < s->n; i++) {
            const struct av_slot *o = &slots[i];
            uint64_t t;
            if (o->kind == SLOT_NONE)
                continue;
            t = o->kind == SLOT_BLOCKED ? o->wake : cycles_now(o->c);
            if (best == UINT64_MAX || t < bt) {
                best = i;
                bt = t;
            }
        }
        if (best == UINT64_MAX || slots[best].kind != SLOT_PAUSED || bt == NEVER_CYCLES || s->vmm_at <= bt)
            return s->last == UINT64_MAX ? -1 : 0;
        struct av_slot *sl = &slots[best];
        struct av_cpu *c = sl->c;
        uint64_t now = bt, pick_bound = NEVER_CYCLES, others_min = NEVER_CYCLES;
        if (!(sl->owned && now < sl->owner_deadline))      /* a new turn */
            sl->last_turn = (int64_t)++s->turns;
        for (i = 0; i < s->n; i++) {                       /* Scheduler._others */
            const struct av_slot *o = &slots[i];
            if (i == best || o->kind == SLOT_NONE)
                continue;
            if (o->kind == SLOT_BLOCKED) {
                pick_bound = min_u64(pick_bound, o->wake);
            } else {
                uint64_t t = cycles_now(o->c);
                pick_bound = min_u64(pick_bound, t);
                others_min = min_u64(others_min, t);
            }
        }
        uint64_t base = min_u64(now, others_min);
        uint64_t deadline = base + s->quantum;                             /* _turn_deadline */
        uint64_t turn = min_u64(deadline, s->vmm_at);
        if (others_min != NEVER_CYCLES)                                    /* _sync_point */
            turn = min_u64(turn, base + s->lookahead);
        c->turn_deadline = turn;
        sl->owned = 1;
        sl->owner_deadline = deadline;
        if (sl->fm) {                                                      /* FastMmio.arm */
            c->fm_pick_bound = pick_bound;
            c->fm_vmm_at = s->vmm_at;
            c->fm_others_min = others_min;
            c->fm_owner_deadline = deadline;
            c->fm_armed = 1;
        }
        c->fm_quiet = sl->quiet;                                           /* FastMmio.enter */
        /* Lowvisor.run(resume=True) */
        uint64_t pc = 0, intrs = c->py_intrs;
        uc_reg_read(sl->uc, UC_ARM64_REG_PC, &pc);
        c->turn_over = 0;
        s->last = best;
        if (s->clear_monitor) {
            int err = av_clear_exclusive(sl->uc, c, s->stub_pa, (uint32_t)s->stub_pstate, s->lines);
            if (err || c->py_intrs != intrs) {
                s->ran = best;
                s->stage = 1;
                s->err = err;
                return 1;
            }
        }
        uc_err err = uc_emu_start(sl->uc, pc, 0, 0, 0);
        if (err || !resumed_as_paused(c, intrs)) {
            s->ran = best;
            s->stage = 2;
            s->err = err;
            return 1;
        }
        c->fm_armed = 0;                                                   /* FastMmio.exited */
        s->runs++;
    }
}
