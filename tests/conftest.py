"""Shared machinery: runs made once and read by every test that only reads them, and
the split of the suite over pytest-xdist workers (pyproject's addopts: -n auto
--dist loadgroup).  The tests of one module-scoped fixture, and the tests marked
@pytest.mark.share_run with one key, go to one worker, where the run is made once
(boot's results are shared by every worker, through files)."""
import hashlib
import itertools
import subprocess

import pytest

from armvirt import compare, paths, profile
from engine.trace import NULL
from tests.runs import BootRuns, Comparisons, PathRuns


def pytest_addoption(parser, pluginmanager):
    """Without pytest-xdist (not installed, or -p no:xdist) pyproject's -n/--dist still
    parse: the suite runs in one process, and pytest_configure says so."""
    if pluginmanager.has_plugin("xdist"):
        return
    group = parser.getgroup("xdist", "pytest-xdist is not loaded: these options are accepted and ignored")
    group._addoption("-n", "--numprocesses", dest="numprocesses", metavar="numprocesses", default=None)
    group.addoption("--dist", dest="dist", metavar="distmode", default="no")


def pytest_configure(config):
    config.addinivalue_line("markers", "share_run(key): the tests with the same key(**params) read one "
                                       "run; they go to one xdist worker (loadgroup)")
    if not config.pluginmanager.has_plugin("xdist"):
        config.addinivalue_line("markers", "xdist_group(name): pytest-xdist's loadgroup marker")
        if config.getoption("numprocesses") not in (None, "0", 0):
            why = ("disabled (-p no:xdist)" if config.pluginmanager.is_blocked("xdist")
                   else "not loaded (pip install -e '.[test]' installs it)")
            config.issue_config_time_warning(pytest.PytestConfigWarning(
                f"pytest-xdist is {why}: -n {config.getoption('numprocesses')} ignored, "
                f"the tests run in one process"), stacklevel=2)


def _group_node_id(item, group: str) -> None:
    """xdist's loadgroup schedules by the '@group' its worker hook appends to the node
    id, as item._nodeid; pytest 9.2 keeps the id in item._id and that append is lost
    (pytest-xdist issue 1386, fix in PR 1388): append it here then."""
    if hasattr(item, "_id") and not hasattr(item, "_nodeid"):
        from _pytest.nodeid import NodeId
        item._id = NodeId.parse(f"{item.nodeid}@{group}")


# Session fixtures too dear to make on every worker: their users form one group.
SHARED_SESSION_FIXTURES = {"xgene_table"}


def _shared(item) -> list[str]:
    """What an item reads that is made once per worker: its share_run key, and each
    module-scoped fixture of its test module (with the fixture's parameter)."""
    out = []
    mark = item.get_closest_marker("share_run")
    params = item.callspec.params if hasattr(item, "callspec") else {}
    if mark is not None:
        out.append(str(mark.args[0](**params) if params else mark.args[0]()))
    info = getattr(item, "_fixtureinfo", None)       # a test function's (not a doctest's)
    for name in SHARED_SESSION_FIXTURES & set(info.names_closure if info else ()):
        out.append(name)
    for name, defs in (info.name2fixturedefs.items() if info else ()):
        fd = defs[-1]
        if fd.scope in ("module", "class") and (fd.baseid.endswith(".py") or ".py::" in fd.baseid):
            tag = f"{fd.baseid.rsplit('/', 1)[-1][:-3]}.{name}"
            out.append(tag if name not in params else
                       f"{tag}-{hashlib.sha1(repr(params[name]).encode()).hexdigest()[:8]}")
    return out


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Tests that share something made once per worker form one xdist group (loadgroup:
    one worker runs them all), joined when a test shares two things; this hook runs
    first because xdist's worker reads the groups in its own.  Within each stretch of a
    test function's cases, the cases of one group are put next to each other, so in
    one process too a run is read while it is kept (tests/runs.py keeps a few)."""
    parent: dict[str, str] = {}

    def find(t: str) -> str:
        while parent.setdefault(t, t) != t:
            t = parent[t]
        return t
    shared = {item: _shared(item) for item in items}
    for tokens in shared.values():
        for t in tokens[1:]:
            a, b = sorted((find(tokens[0]), find(t)))
            parent[b] = a                     # the smaller name is the root: the same on every worker
    groups = {item: find(tokens[0]) for item, tokens in shared.items() if tokens}
    for item, group in groups.items():
        item.add_marker(pytest.mark.xdist_group(name=group))
        if getattr(config.option, "loadgroup", False):      # set on xdist's workers
            _group_node_id(item, group)
    out = []
    for _, block in itertools.groupby(items, key=lambda it: (it.parent.nodeid, it.originalname)):
        block = list(block)
        at = {}
        for i, item in enumerate(block):
            at.setdefault(groups.get(item, i), i)
        out += [it for _, it in sorted(enumerate(block), key=lambda e: at[groups.get(e[1], e[0])])]
    # Longest first (LPT): the few multi-second boots start at once, so no worker is left
    # running one alone at the end while the other idles.  Stable, and the same on every
    # worker (xdist requires one collection order).
    items[:] = sorted(out, key=lambda it: -SLOW_MODULES.get(it.module.__name__.rsplit(".", 1)[-1], 0)
                      if it.module is not None else 0)


# Modules whose tests boot a guest for seconds (Linux, U-Boot, the wheel): their rank.
SLOW_MODULES = {"test_uboot": 4, "test_linux_vblk": 3, "test_linux": 2, "test_packaging": 1}


@pytest.fixture(scope="session")
def xgene():
    return profile.load("xgene")


@pytest.fixture(scope="session")
def shared_tmp(request, tmp_path_factory):
    """A directory of this session that every xdist worker sees (each has its own basetemp in it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if hasattr(request.config, "workerinput") else base


@pytest.fixture(scope="session")
def boot(xgene, shared_tmp):
    """Boot a bundled image once per session and share the result: boot(name, stdin=None,
    **MachineConfig fields); `stdin`: the bytes of a piped stdin for the PL011."""
    return BootRuns(xgene, shared_tmp)


@pytest.fixture(scope="session")
def path_run(xgene):
    """paths.run_path(path, xgene, overrides) for tests that only read the run: one
    recording per tests.runs.path_key.  Determinism tests call paths.run_path: they
    need two runs."""
    return PathRuns(xgene)


@pytest.fixture(scope="session")
def compare_run():
    """compare.run_compare(designs, profile, features) for tests that only read the
    table: one run per designs, profile and machine config (tests.runs.Comparisons)."""
    return Comparisons()


@pytest.fixture(scope="session")
def xgene_table(xgene, compare_run):
    """`armvirt compare`'s default table (nvhe, vhe, type1 on xgene, GICv2)."""
    return compare_run(["nvhe", "vhe", "type1"], xgene, {})


@pytest.fixture
def shared_compare(monkeypatch, compare_run):
    """The CLI in process reads compare_run's tables instead of running them again."""
    monkeypatch.setattr(compare, "run_compare", compare_run)
    return compare_run


@pytest.fixture
def shared_paths(monkeypatch, path_run):
    """The CLI in process reads path_run's recordings (xgene, no trace) instead of
    running the path again."""
    real = paths.run_path

    def run_path(name, profile, cfg_overrides=None, trace=NULL):
        if trace is NULL and profile == path_run.profile:
            return path_run(name, cfg_overrides)
        return real(name, profile, cfg_overrides, trace)
    monkeypatch.setattr(paths, "run_path", run_path)
    return path_run


@pytest.fixture
def cli_run(capsys):
    """`python -m armvirt ARGS` in this process, for checks of what the command line
    refuses or prints without a run worth a new interpreter: a CompletedProcess."""
    from armvirt import cli

    def _cli_run(*args) -> subprocess.CompletedProcess:
        rc = cli.main([str(a) for a in args])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["armvirt", *args], rc, out, err)
    return _cli_run
