/*
 * memtouch: write an address-derived 64-bit pattern over 16 MiB of RAM (each
 * page is a first touch for stage 2), read it back and verify.  The region
 * starts at the first 2 MiB boundary after the image (_end, which includes the
 * .bss stack) and must fit in RAM as reported by the DTB /memory node.
 */
#include "runtime.h"

#ifndef TOUCH_BYTES
#define TOUCH_BYTES (16UL << 20)
#endif
#define PAGE_SIZE 4096UL
#define ALIGN_2M  (2UL << 20)

static inline uint64_t pattern(uint64_t addr)
{
    return (addr * 0x9E3779B97F4A7C15ULL) ^ (addr << 32) ^ 0x5A5A5A5A5A5A5A5AULL;
}

int main(void)
{
    uint64_t ram_base, ram_size;
    int from_dtb = fdt_memory(&ram_base, &ram_size);
    uint64_t start = ((uint64_t)(uintptr_t)_end + ALIGN_2M - 1) & ~(ALIGN_2M - 1);
    uint64_t end = start + TOUCH_BYTES;

    print("memtouch: ram=0x%lx+0x%lx (%s) region=0x%lx-0x%lx\n", ram_base, ram_size,
          from_dtb ? "dtb" : "default", start, end);
    if (start < ram_base || end > ram_base + ram_size) {
        print("memtouch: ERROR: region does not fit in RAM\n");
        return 1;
    }

    for (uint64_t a = start; a < end; a += 8)
        *(volatile uint64_t *)(uintptr_t)a = pattern(a);

    for (uint64_t a = start; a < end; a += 8) {
        uint64_t got = *(volatile uint64_t *)(uintptr_t)a;
        if (got != pattern(a)) {
            print("memtouch: MISMATCH at 0x%lx: got 0x%lx expected 0x%lx\n", a, got,
                  pattern(a));
            print("memtouch: touched_pages=%lu bytes=%lu verify=FAIL\n",
                  TOUCH_BYTES / PAGE_SIZE, TOUCH_BYTES);
            return 1;
        }
    }
    print("memtouch: touched_pages=%lu bytes=%lu verify=ok\n", TOUCH_BYTES / PAGE_SIZE,
          TOUCH_BYTES);
    return 0;
}
