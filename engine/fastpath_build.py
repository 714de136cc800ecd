"""cffi builder for the engine fast path (out-of-line API mode).

Built at install time (setup.py cffi_modules) and, from a bare source tree,
on first import by engine.fastpath.
"""
import importlib.util
import os

import cffi
import unicorn

HERE = os.path.dirname(os.path.abspath(__file__))
# setup.py executes this file outside the package: load its neighbour by path.
_spec = importlib.util.spec_from_file_location("_fastpath_source", os.path.join(HERE, "fastpath_source.py"))
fastpath_source = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fastpath_source)

UC_DIR = os.path.dirname(unicorn.__file__)

HEADER = fastpath_source.read("fastpath.h")
# The source id, kept in the binary (`used`: never dropped) for engine.fastpath to check.
SOURCE = (fastpath_source.read("fastpath.c").replace('#include "fastpath.h"', HEADER)
          + '\n__attribute__((used)) static const char av_source_id[] = "%s%s";\n'
          % (fastpath_source.MARKER.decode(), fastpath_source.source_id()))

ffibuilder = cffi.FFI()
ffibuilder.cdef(HEADER + """
void av_block_hook(void *uc, uint64_t addr, uint32_t size, void *ud);
void av_recalc_timer(struct av_cpu *c);
void av_exception_stall(void *uc, struct av_cpu *c);
void av_code_hook(void *uc, uint64_t addr, uint32_t size, void *ud);
uint32_t av_mrs_hook(void *uc, int reg, void *cp, void *ud);
uint32_t av_msr_hook(void *uc, int reg, void *cp, void *ud);
uint32_t av_sys_hook(void *uc, int reg, void *cp, void *ud);
int av_clear_exclusive(void *uc, struct av_cpu *c, uint64_t stub_pa, uint32_t stub_pstate, uint64_t lines);
void av_intr_hook(void *uc, uint32_t intno, void *ud);
int av_sched_loop(struct av_sched *s, struct av_slot *slots);
extern "Python+C" void av_py_intr(void *uc, uint32_t intno, void *ud);
""")
ffibuilder.set_source(
    "engine._fastpath", SOURCE,
    include_dirs=[os.path.join(UC_DIR, "include")],
    # Not linked against libunicorn: engine.fastpath loads the binding's own copy
    # RTLD_GLOBAL first, so the uc_* symbols resolve to the library the binding uses.
    extra_compile_args=["-O2"])

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=os.path.dirname(HERE), verbose=False)
