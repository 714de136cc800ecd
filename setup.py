from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPy(build_py):
    """armvirt.images is data only: its directory (images/) also holds the images'
    helper scripts (run-unicorn.py), which are not part of the package."""
    def find_package_modules(self, package, package_dir):
        mods = super().find_package_modules(package, package_dir)
        if package == "armvirt.images":
            mods = [m for m in mods if m[1] == "__init__"]
        return mods


# The engine's C fast path (instruction counting, virtual counter) is built by cffi.
setup(cffi_modules=["engine/fastpath_build.py:ffibuilder"], cmdclass={"build_py": BuildPy})
