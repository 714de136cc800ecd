/*
 * armvirt guest runtime: secondary CPUs (PSCI CPU_ON / AFFINITY_INFO).
 *
 * CPU n is the n-th cpu@ node under /cpus (its reg is the MPIDR affinity to
 * pass to PSCI); cpu 0 is the boot CPU.  smp_cpu_on(n) starts CPU n at
 * secondary_entry (start.S) with context id n: it takes secondary_stacks[n],
 * installs the vectors and calls secondary_main(n); PSCI CPU_OFF when that
 * returns.  Without a DTB (QEMU gives none to a bare ELF) the CPUs are found
 * by asking PSCI AFFINITY_INFO about MPIDR 1, 2, ... until it answers
 * INVALID_PARAMETERS.
 *
 * Nothing else in the runtime refers to this file, so --gc-sections drops it
 * (and secondary_entry with its stacks) from images that do not start CPUs.
 */
#include "runtime.h"

void (*volatile secondary_main)(unsigned cpu);

static unsigned ncpus;
static const char *ncpus_source;

unsigned smp_cpu_count(void)
{
    if (ncpus)
        return ncpus;
    unsigned n = fdt_cpu_count();
    const char *src = "dtb";
    if (n > MAX_CPUS)
        n = MAX_CPUS;
    if (!n) {
        /* Aff0 = i for CPU i: probe MPIDR 0x1, 0x2, ... (the boot CPU must
         * answer ON, else PSCI AFFINITY_INFO is not there: one CPU) */
        src = "default";
        n = 1;
        if ((int64_t)psci_call(PSCI_AFFINITY_INFO, read_mpidr() & MPIDR_AFF_MASK, 0, 0) ==
            PSCI_AFF_ON) {
            src = "psci";
            while (n < MAX_CPUS) {
                int64_t r = (int64_t)psci_call(PSCI_AFFINITY_INFO, n, 0, 0);
                if (r != PSCI_AFF_ON && r != PSCI_AFF_OFF && r != PSCI_AFF_ON_PENDING)
                    break;
                n++;
            }
        }
    }
    ncpus_source = src;
    ncpus = n;
    return n;
}

const char *smp_cpu_source(void)
{
    smp_cpu_count();
    return ncpus_source;
}

uint64_t smp_cpu_mpidr(unsigned cpu)
{
    uint64_t m;
    if (fdt_cpu_mpidr(cpu, &m))
        return m;
    return cpu;
}

int64_t smp_cpu_on(unsigned cpu)
{
    smp_mb();                   /* secondary_main and the caller's data first */
    return (int64_t)psci_call(PSCI_CPU_ON, smp_cpu_mpidr(cpu),
                              (uint64_t)(uintptr_t)secondary_entry, cpu);
}

int64_t smp_affinity_info(unsigned cpu)
{
    return (int64_t)psci_call(PSCI_AFFINITY_INFO, smp_cpu_mpidr(cpu), 0, 0);
}

const char *psci_ret_name(int64_t r)
{
    switch (r) {
    case 0:  return "SUCCESS";
    case -1: return "NOT_SUPPORTED";
    case -2: return "INVALID_PARAMETERS";
    case -3: return "DENIED";
    case -4: return "ALREADY_ON";
    case -5: return "ON_PENDING";
    case -6: return "INTERNAL_FAILURE";
    case -7: return "NOT_PRESENT";
    case -8: return "DISABLED";
    case -9: return "INVALID_ADDRESS";
    default: return "?";
    }
}
