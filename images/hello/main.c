/* hello: boots, reports the exception level, the PSCI version and what the
 * runtime found in the DTB, then exits 0. */
#include "runtime.h"

int main(void)
{
    print("Hello from armvirt guest at EL%u\n", current_el());
    uint64_t v = psci_call(PSCI_VERSION, 0, 0, 0);
    print("PSCI version %u.%u\n", (unsigned)(v >> 16) & 0xffff, (unsigned)v & 0xffff);

    uint64_t base, size;
    int have_mem = fdt_memory(&base, &size);
    print("hello: x0=0x%lx dtb=0x%lx ram=0x%lx+0x%lx%s cpu_clock_hz=%lu cntfrq=%lu "
          "cycles_per_tick=%lu\n",
          boot_dtb, (uint64_t)(uintptr_t)fdt_blob(), base, size,
          have_mem ? "" : "(default)", fdt_cpu_clock_hz(), read_cntfrq(),
          cycles_per_tick());
    return 0;
}
