"""cffi builder for the engine fast path (out-of-line API mode).

Built at install time (setup.py cffi_modules) and, from a bare source tree,
on first import by engine.fastpath.
"""
import os

import cffi
import unicorn

HERE = os.path.dirname(os.path.abspath(__file__))
UC_DIR = os.path.dirname(unicorn.__file__)

with open(os.path.join(HERE, "fastpath.h")) as f:
    HEADER = f.read()
with open(os.path.join(HERE, "fastpath.c")) as f:
    SOURCE = f.read().replace('#include "fastpath.h"', HEADER)

ffibuilder = cffi.FFI()
ffibuilder.cdef(HEADER + """
void av_block_hook(void *uc, uint64_t addr, uint32_t size, void *ud);
void av_recalc_timer(struct av_cpu *c);
void av_exception_stall(void *uc, struct av_cpu *c);
void av_code_hook(void *uc, uint64_t addr, uint32_t size, void *ud);
uint32_t av_mrs_hook(void *uc, int reg, void *cp, void *ud);
uint32_t av_msr_hook(void *uc, int reg, void *cp, void *ud);
uint32_t av_sys_hook(void *uc, int reg, void *cp, void *ud);
""")
ffibuilder.set_source(
    "engine._fastpath", SOURCE,
    include_dirs=[os.path.join(UC_DIR, "include")],
    # Not linked against libunicorn: engine.fastpath loads the binding's own copy
    # RTLD_GLOBAL first, so the uc_* symbols resolve to the library the binding uses.
    extra_compile_args=["-O2"])

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=os.path.dirname(HERE), verbose=False)
