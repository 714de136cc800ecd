"""The wheel works anywhere: built with `python -m build` (sdist, then the wheel from
the sdist), installed non-editable into a fresh venv, run from an empty directory.
One slow test: the build and the install are shared by every check in it.

Made cheap where that proves the same: the build runs in this environment when it has
what [build-system] requires (the test extra installs it), and the fresh venv takes
the dependencies from this environment's site-packages (a .pth line: the venv's own
site-packages, holding the wheel, comes first) with `pip check` proving the wheel's
requirements are met, instead of downloading and installing them again."""
import glob
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile

from packaging.requirements import Requirement

from tools import need

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP_LEVEL = {"armvirt", "el2", "host_kernel", "gic", "timers", "engine"}


def _run(cmd, cwd, timeout=900, env=None):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} (in {cwd}): exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _has(req: str) -> bool:
    r = Requirement(req)
    try:
        return importlib.metadata.version(r.name) in r.specifier
    except importlib.metadata.PackageNotFoundError:
        return False


def build_isolation() -> list[str]:
    """--no-isolation when this environment has every [build-system] requirement (build
    checks them again); else build's isolated environment (slower, the same wheel)."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        requires = tomllib.load(f)["build-system"]["requires"]
    return ["--no-isolation"] if all(_has(r) for r in requires) else []


def test_wheel_installs_and_runs_anywhere(tmp_path):
    need(importlib.util.find_spec("build") is not None,
          "the `build` package is missing (pip install -e '.[test]' installs it)")
    need(importlib.util.find_spec("ensurepip") is not None, "python3 venv/ensurepip is missing (apt-get install python3-venv)")
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", *build_isolation(), "--outdir", str(dist), ROOT], cwd=ROOT)
    wheels, sdists = glob.glob(str(dist / "*.whl")), glob.glob(str(dist / "*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, f"expected one wheel and one sdist, got {os.listdir(dist)}"

    # The wheel: the six packages and their metadata, nothing else at the top of site-packages.
    names = zipfile.ZipFile(wheels[0]).namelist()
    tops = {n.split("/")[0] for n in names}
    meta = {t for t in tops if t.endswith(".dist-info")}
    assert tops - meta == TOP_LEVEL and len(meta) == 1, f"wheel top level: expected {sorted(TOP_LEVEL)} + dist-info, got {sorted(tops)}"
    built = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "images", "*.elf")))
    shipped = sorted(n.split("/")[-1] for n in names if n.startswith("armvirt/images/") and n.endswith(".elf"))
    assert shipped == built, f"bundled images: expected {built}, got {shipped}"
    extra = [n for n in names if n.startswith("armvirt/images/") and not n.endswith((".elf", "__init__.py"))]
    assert not extra, f"armvirt/images holds only the built ELFs, also got {extra}"
    for item in ("armvirt/profiles/xgene.toml", "armvirt/profiles/gicv3-server.toml"):
        assert item in names, f"{item} missing from the wheel"
    assert any(n.startswith("engine/_fastpath") and n.endswith(".so") for n in names), "the C fast path is not in the wheel"

    # The sdist rebuilds everything: sources, the C fast path, the images and their sources.
    members = {m.split("/", 1)[1] for m in tarfile.open(sdists[0]).getnames() if "/" in m}
    for item in ("engine/fastpath.c", "engine/fastpath.h", "engine/fastpath_build.py", "setup.py", "pyproject.toml",
                 "images/Makefile", "images/runtime/start.S", "images/hello/main.c", "images/hello.elf",
                 "armvirt/profiles/xgene.toml", "tests/test_packaging.py"):
        assert item in members, f"{item} missing from the sdist"
    fetched = sorted(m for m in members if m.startswith("images/linux/out"))
    assert not fetched, f"the sdist must not ship what images/linux/fetch.sh fetches (Debian's), got {fetched}"

    # A fresh venv, the wheel (not editable) with this environment's packages for its
    # dependencies (not its .pth files: the editable armvirt stays out), then armvirt from elsewhere.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    py, armvirt = str(venv / "bin" / "python"), str(venv / "bin" / "armvirt")
    site = _run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path).stdout.strip()
    deps = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    with open(os.path.join(site, "armvirt-test-deps.pth"), "w") as f:
        f.write("".join(d + "\n" for d in deps))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    pip = [sys.executable, "-m", "pip", "--python", py]
    _run([*pip, "install", "-q", "--no-deps", wheels[0]], cwd=tmp_path, env=env)
    _run([*pip, "check"], cwd=tmp_path, env=env)        # the wheel's Requires-Dist, all met
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run([py, "-c", "import armvirt.images, el2, engine, gic, host_kernel, timers; "
                            "print(*(m.__file__ for m in (armvirt, armvirt.images, el2, engine, gic, "
                            "host_kernel, timers)))"], cwd=work, env=env).stdout.split()
    assert len(where) == 7 and all(p.startswith(site) for p in where), \
        f"every package must come from the installed wheel in {site}, got {where}"

    demo = _run([armvirt, "demo"], cwd=work, env=env).stdout
    assert "Analyze events for all VMs, all VCPUs:" in demo and "HVC64" in demo and "VGIC registers" in demo, demo
    hello = _run([armvirt, "run", "hello"], cwd=work, env=env).stdout
    assert "Hello from armvirt guest at EL1" in hello, hello
    assert "Hello from armvirt guest at EL1" in _run([armvirt, "run", "hello.elf", "--quiet"], cwd=work, env=env).stdout
    # one design: microbench.elf and its peer VM from the package, as for all three
    cmp = _run([armvirt, "compare", "--designs", "vhe"], cwd=work, env=env).stdout
    assert all(op in cmp for op in ("hypercall", "vm_switch", "mmio_user")) and "vhe" in cmp, cmp
    assert os.listdir(work) == [], f"running armvirt must leave the directory alone, found {os.listdir(work)}"
