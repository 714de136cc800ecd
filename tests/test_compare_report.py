"""armvirt.compare_report: every table format, the breakdown, and the plot, on synthetic data."""
from __future__ import annotations

import csv
import io
import json

import pytest

from armvirt.compare_report import (FORMATS, OPERATIONS, WORLD_SWITCH_GROUPS, format_breakdown,
                                    format_table, plot)

DESIGNS = ["nvhe", "vhe", "type1"]
# Deliberately out of OPERATIONS order, with None cells and a design missing from one row.
ROWS = {
    "mmio_user": {"nvhe": 5326, "vhe": None, "type1": 12034},
    "hypercall": {"nvhe": 2896, "vhe": 378, "type1": 1228},
    "ipi": {"nvhe": 14366, "vhe": 10847},
    "eoi": {"nvhe": 71, "vhe": 71, "type1": 71},
}
EXPECTED_OPS = [op for op in OPERATIONS if op in ROWS]
META = {"profile": "cortex-a57", "designs": DESIGNS, "features": {"vhe": True, "gic": "v3"}}
STEPS = {
    "nvhe": [
        {"where": "EL1 guest", "what": "hvc #0", "cycles": 12},
        {"where": "EL2 lowvisor", "what": "save guest state", "cycles": 1410},
        {"where": "EL1 host", "what": "handle_hvc", "cycles": 230},
        {"where": "EL2 lowvisor", "what": "restore guest state", "cycles": 1244},
    ],
    "vhe": [
        {"where": "EL1 guest", "what": "hvc #0", "cycles": 12},
        {"where": "EL2 host", "what": "handle_hvc", "cycles": 366},
    ],
    "type1": [
        {"where": "EL2 xen", "what": "do_trap_hypercall", "cycles": 1228},
    ],
}
WORLD_SWITCH = {
    d: {g: {"save": 100 * (i + 1) + k, "restore": 90 * (i + 1)}
        for i, g in enumerate(WORLD_SWITCH_GROUPS)}
    for k, d in enumerate(DESIGNS)
}


def _cell(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


# -- format_table ---------------------------------------------------------------------------------

def test_json_round_trips_with_documented_shape():
    out = json.loads(format_table(ROWS, DESIGNS, "json", meta=META))
    assert set(out) == {"rows", "designs", "meta"}, \
        f"expected keys rows/designs/meta, got {set(out)}"
    assert list(out["rows"]) == EXPECTED_OPS, f"expected {EXPECTED_OPS}, got {list(out['rows'])}"
    expected = {op: {d: ROWS[op].get(d) for d in DESIGNS} for op in EXPECTED_OPS}
    assert out["rows"] == expected, f"expected {expected}, got {out['rows']}"
    assert out["designs"] == DESIGNS, f"expected {DESIGNS}, got {out['designs']}"
    assert out["meta"] == META, f"expected {META}, got {out['meta']}"
    cell = out["rows"]["ipi"]["type1"]
    assert cell is None, f"expected null, got {cell!r}"


def test_json_without_meta_has_no_meta_key():
    out = json.loads(format_table(ROWS, DESIGNS, "json"))
    assert "meta" not in out, f"expected no 'meta' key, got keys {sorted(out)}"


def test_csv_parses_back_to_the_same_numbers():
    parsed = list(csv.reader(io.StringIO(format_table(ROWS, DESIGNS, "csv"))))
    header = ["operation", *DESIGNS]
    assert parsed[0] == header, f"expected header {header}, got {parsed[0]}"
    assert [r[0] for r in parsed[1:]] == EXPECTED_OPS, \
        f"expected {EXPECTED_OPS}, got {[r[0] for r in parsed[1:]]}"
    for row in parsed[1:]:
        got = [None if c == "" else int(c) for c in row[1:]]
        want = [ROWS[row[0]].get(d) for d in DESIGNS]
        assert got == want, f"{row[0]}: expected {want}, got {got}"


@pytest.mark.parametrize("fmt", ["simple", "github"])
def test_text_tables_use_thousands_separators_and_dash_for_none(fmt):
    out = format_table(ROWS, DESIGNS, fmt)
    lines = out.splitlines()
    body = [ln for ln in lines if any(op in ln for op in ROWS)]
    assert [next(op for op in EXPECTED_OPS if op in ln) for ln in body] == EXPECTED_OPS, \
        f"expected rows in order {EXPECTED_OPS}, got {body}"
    for op, line in zip(EXPECTED_OPS, body):
        cells = line.replace("|", " ").split()
        want = [op, *(_cell(ROWS[op].get(d)) for d in DESIGNS)]
        assert cells == want, f"{op}: expected {want}, got {cells}"


def test_github_has_header_separator_line():
    lines = format_table(ROWS, DESIGNS, "github").splitlines()
    assert lines[0].startswith("| operation"), f"expected a '| operation' header, got {lines[0]!r}"
    assert set(lines[1]) <= set("|-:"), f"expected a |---| separator line, got {lines[1]!r}"


def test_numbers_are_right_aligned():
    lines = format_table(ROWS, DESIGNS, "simple").splitlines()
    ends = {len(ln.rstrip()) for ln in lines}
    assert len(ends) == 1, f"expected every line to end in the same column, got ends {ends}"


def test_latex_is_a_tabular_with_plain_integers():
    out = format_table(ROWS, DESIGNS, "latex", title="cycles")
    assert "\\begin{tabular}" in out, f"expected \\begin{{tabular}} in output, got {out!r}"
    assert "\\end{tabular}" in out, f"expected \\end{{tabular}} in output, got {out!r}"
    assert "14366" in out and "14,366" not in out, f"expected plain 14366, got {out!r}"
    assert "mmio\\_user" in out, f"expected escaped mmio\\_user, got {out!r}"
    first = out.splitlines()[0]
    assert first == "% cycles", f"expected the title as a LaTeX comment '% cycles', got {first!r}"


def test_title_heads_text_tables():
    first = format_table(ROWS, DESIGNS, "simple", title="Microbenchmarks").splitlines()[0]
    assert first == "Microbenchmarks", f"expected 'Microbenchmarks', got {first!r}"


def test_columns_follow_designs_order():
    order = ["type1", "nvhe"]
    header = next(csv.reader(io.StringIO(format_table(ROWS, order, "csv"))))
    assert header == ["operation", *order], f"expected {['operation', *order]}, got {header}"


@pytest.mark.parametrize("fn", [
    lambda fmt: format_table(ROWS, DESIGNS, fmt),
    lambda fmt: format_breakdown("hypercall", STEPS, DESIGNS, fmt),
])
def test_unknown_format_raises(fn):
    with pytest.raises(ValueError) as err:
        fn("html")
    assert "html" in str(err.value), f"expected the bad format named in the error, got {err.value}"


# -- format_breakdown -----------------------------------------------------------------------------

def test_breakdown_json_totals_equal_sum_of_steps():
    out = json.loads(format_breakdown("hypercall", STEPS, DESIGNS, "json"))
    assert out["operation"] == "hypercall", f"expected 'hypercall', got {out['operation']!r}"
    assert list(out["designs"]) == DESIGNS, f"expected {DESIGNS}, got {list(out['designs'])}"
    for d in DESIGNS:
        got = out["designs"][d]
        want_total = sum(s["cycles"] for s in STEPS[d])
        assert got["total"] == want_total, f"{d}: expected total {want_total}, got {got['total']}"
        assert got["steps"] == STEPS[d], f"{d}: expected steps {STEPS[d]}, got {got['steps']}"


def test_breakdown_csv_has_one_row_per_design_and_step():
    parsed = list(csv.DictReader(io.StringIO(format_breakdown("hypercall", STEPS, DESIGNS, "csv"))))
    want = [(d, i, s["where"], s["what"], s["cycles"])
            for d in DESIGNS for i, s in enumerate(STEPS[d], 1)]
    got = [(r["design"], int(r["step"]), r["where"], r["what"], int(r["cycles"])) for r in parsed]
    assert got == want, f"expected {want}, got {got}"


@pytest.mark.parametrize("fmt", ["simple", "github"])
def test_breakdown_text_headings_and_total_rows(fmt):
    out = format_breakdown("hypercall", STEPS, DESIGNS, fmt)
    for d in DESIGNS:
        total = sum(s["cycles"] for s in STEPS[d])
        heading = f"hypercall under {d}: {total:,} cycles"
        assert heading in out.splitlines(), f"expected heading {heading!r} in {out!r}"
    totals = [ln.replace("|", " ").split()[1:] for ln in out.splitlines()
              if ln.replace("|", " ").split()[:1] == ["total"]]
    want = [f"{sum(s['cycles'] for s in STEPS[d]):,}" for d in DESIGNS]
    assert totals[0] == want, f"side by side: expected totals {want}, got {totals[0]}"
    assert [t[-1] for t in totals[1:]] == want, f"expected per-design total rows {want}, got {totals[1:]}"
    summary = out.splitlines()[-1]
    want_summary = ("hypercall total cycles: vhe 378 (fastest), type1 1,228 (3.25x), "
                    "nvhe 2,896 (7.66x)")
    assert summary == want_summary, f"expected {want_summary!r}, got {summary!r}"


def test_breakdown_latex_has_one_tabular_per_design_after_the_side_by_side_one():
    out = format_breakdown("hypercall", STEPS, DESIGNS, "latex")
    n = out.count("\\begin{tabular}")
    assert n == 1 + len(DESIGNS), f"expected {1 + len(DESIGNS)} tabulars, got {n}"
    prose = [ln for ln in out.splitlines() if "under" in ln or "total cycles" in ln]
    assert all(ln.startswith("% ") for ln in prose), f"expected LaTeX comments, got {prose}"


def test_breakdown_side_by_side_sums_cycles_by_where():
    out = format_breakdown("hypercall", STEPS, DESIGNS, "simple")
    first = out.split("\n\n")[0].splitlines()
    assert first[0] == "hypercall: cycles by where each step runs", f"got {first[0]!r}"
    header = first[1].split()
    assert header == ["where"] + DESIGNS, f"expected columns {['where'] + DESIGNS}, got {header}"
    for where in {s["where"] for d in DESIGNS for s in STEPS[d]}:
        row = next(ln for ln in first if ln.startswith(where + " ") or ln.split()[:len(where.split())] == where.split())
        cells = row[len(where):].split()
        want = [f"{sum(s['cycles'] for s in STEPS[d] if s['where'] == where):,}" or "-" for d in DESIGNS]
        want = [w if w != "0" else "-" for w in want]
        assert cells == want, f"{where}: expected {want}, got {cells}"


def test_breakdown_missing_design_is_not_measured():
    steps = {"nvhe": STEPS["nvhe"]}
    text = format_breakdown("hypercall", steps, ["nvhe", "vhe"], "simple")
    assert "hypercall under vhe: not measured" in text, \
        f"expected a 'not measured' line, got {text!r}"
    out = json.loads(format_breakdown("hypercall", steps, ["nvhe", "vhe"], "json"))
    assert out["designs"]["vhe"] is None, f"expected null for vhe, got {out['designs']['vhe']!r}"


# -- plot -----------------------------------------------------------------------------------------

def test_plot_writes_png(tmp_path):
    path = tmp_path / "compare.png"
    plot(ROWS, WORLD_SWITCH, DESIGNS, path, title="armvirt compare")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG"), f"expected a PNG signature, got {data[:8]!r}"
    assert len(data) > 1000, f"expected a non-trivial PNG, got {len(data)} bytes"


def test_plot_writes_deterministic_svg(tmp_path):
    a, b = tmp_path / "a.svg", tmp_path / "b.svg"
    for p in (a, b):
        plot(ROWS, WORLD_SWITCH, DESIGNS, str(p))
    text = a.read_text()
    assert "<svg" in text, f"expected '<svg' in the file, got {text[:200]!r}"
    assert "<dc:date>" not in text, "expected no <dc:date> in the SVG, got one"
    assert a.read_bytes() == b.read_bytes(), \
        "expected identical SVGs from identical input, got different bytes"


def test_plot_handles_sparse_data(tmp_path):
    path = tmp_path / "sparse.png"
    plot({"hypercall": {"nvhe": None, "vhe": 500}}, {"vhe": WORLD_SWITCH["vhe"]}, DESIGNS, path)
    size = path.stat().st_size
    assert size > 0, f"expected a non-empty PNG, got {size} bytes"


@pytest.mark.parametrize("name", ["compare.pdf", "compare", "compare.png.txt"])
def test_plot_rejects_unknown_extension(tmp_path, name):
    path = tmp_path / name
    with pytest.raises(ValueError) as err:
        plot(ROWS, WORLD_SWITCH, DESIGNS, path)
    msg = str(err.value)
    assert "\n" not in msg, f"expected a one-line message, got {msg!r}"
    assert not path.exists(), f"expected nothing written to {path}, found a file"


def test_formats_constant_matches_the_cli_choices():
    """compare takes the table formats every other table command takes (armvirt/report.py)."""
    from armvirt import report
    want = ("simple", "github", "latex", "csv", "json", "plain", "grid", "pipe")
    assert FORMATS == want == report.FORMATS, f"expected {want} (report: {report.FORMATS}), got {FORMATS}"


@pytest.mark.parametrize("fmt", ["plain", "grid", "pipe"])
def test_table_formats_of_tabulate_render_the_rows(fmt):
    text = format_table(ROWS, DESIGNS, fmt)
    assert all(op in text for op in ROWS), f"expected every operation in the {fmt} table:\n{text}"


# -- definitions ----------------------------------------------------------------------------------

DEFS = {"hypercall": "HVC #0, no work", "eoi": "a write of 1023 to EOIR"}


@pytest.mark.parametrize("fmt", ["simple", "github"])
def test_definitions_follow_a_text_table(fmt):
    out = format_table(ROWS, DESIGNS, fmt, definitions=DEFS)
    for op, text in DEFS.items():
        assert f"{op}: {text}" in out.splitlines(), f"expected the line '{op}: {text}' in {out!r}"


def test_definitions_are_a_json_key_and_stay_out_of_csv():
    out = json.loads(format_table(ROWS, DESIGNS, "json", definitions=DEFS))
    assert out["definitions"] == DEFS, f"expected {DEFS}, got {out.get('definitions')}"
    text = format_table(ROWS, DESIGNS, "csv", definitions=DEFS)
    assert "1023" not in text, f"csv must stay numbers only, got {text!r}"


def test_breakdown_starts_with_the_definition():
    out = format_breakdown("hypercall", STEPS, DESIGNS, "simple", definition=DEFS["hypercall"])
    assert out.splitlines()[0] == "hypercall: HVC #0, no work", f"got {out.splitlines()[0]!r}"
    doc = json.loads(format_breakdown("hypercall", STEPS, DESIGNS, "json", definition=DEFS["hypercall"]))
    assert doc["definition"] == DEFS["hypercall"], f"got {doc.get('definition')!r}"
    latex = format_breakdown("hypercall", STEPS, DESIGNS, "latex", definition=DEFS["hypercall"])
    assert latex.splitlines()[0] == "% hypercall: HVC #0, no work", f"got {latex.splitlines()[0]!r}"
