/* armvirt engine fast path: runs inside Unicorn's hooks, in C, because a
 * Python hook per block or per MRS would cost microseconds (unicorn-facts.md).
 *
 * - block_hook counts guest instructions exactly: a whole block is counted on
 *   entry; the Python side corrects a mid-block exception from the PC.
 * - sysreg_hook virtualizes the generic timer registers the core gets wrong:
 *   it reads CNTVCT/CNTPCT from host time and drops CNTV_* writes.  Virtual
 *   time is cycles = insns * cpi + charged (DESIGN.md section 6).
 */
#include <stdint.h>
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

void av_block_hook(uc_engine *uc, uint64_t addr, uint32_t size, void *ud)
{
    struct av_cpu *c = ud;
    c->insns += size >> 2;
    c->block_start = addr;
    c->block_end = addr + size;
    if (c->insns >= c->insn_limit && !c->limit_hit) {
        c->limit_hit = 1;
        uc_emu_stop(uc);
    }
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

#define ENC(op1, crn, crm, op2) (((op1) << 12) | ((crn) << 8) | ((crm) << 4) | (op2))

static uint32_t timer_access(uc_engine *uc, uc_arm64_reg reg, const uc_arm64_cp_reg *cp,
                             struct av_cpu *c, int is_read)
{
    if (cp->op0 != 3 || cp->op1 != 3 || cp->crn != 14)
        return 0;
    uint64_t pc = 0, v;
    uc_reg_read(uc, UC_ARM64_REG_PC, &pc);
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
            return 1;
        }
        break;
    case ENC(3, 14, 3, 2): /* CNTV_CVAL_EL0 */
        if (!el0_permitted(uc, 8)) return 0;
        if (!is_read) { c->cntv_cval = cp->val; c->timer_writes++; return 1; }
        v = c->cntv_cval;
        break;
    case ENC(3, 14, 3, 0): /* CNTV_TVAL_EL0: signed 32-bit view of CVAL - CNTVCT */
        if (!el0_permitted(uc, 8)) return 0;
        if (!is_read) {
            c->cntv_cval = ticks_at(c, pc) - c->cntvoff + (uint64_t)(int64_t)(int32_t)cp->val;
            c->timer_writes++;
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
