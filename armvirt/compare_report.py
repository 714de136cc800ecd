"""Presentation for `armvirt compare`: tables, trap-path breakdowns and a plot.

Pure formatting of plain data that the compare runner produces; nothing here runs a guest.

    rows:         {operation: {design: cycles or None}}     (None = not measured)
    world_switch: {design: {group: {"save": int, "restore": int}}}
    steps:        {design: [{"where": str, "what": str, "cycles": int}, ...]}
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path


OPERATIONS = ("hypercall", "gic_trap", "ipi", "ipi_wfi", "eoi", "vm_switch", "io_out", "io_in",
              "mmio_user", "mmio_kernel", "ack_eoi")
WORLD_SWITCH_GROUPS = ("GP registers", "FP/SIMD registers", "EL1 system registers",
                       "VGIC registers", "Timer registers", "EL2 configuration registers",
                       "EL2 virtual memory registers")
FORMATS = ("simple", "github", "latex", "csv", "json", "plain", "grid", "pipe")   # as armvirt/report.py
PLOT_FORMATS = {".png": "png", ".svg": "svg"}
LOG_RATIO = 100  # a bar chart whose largest/smallest value exceeds this uses a log y axis
MISSING = "-"

Rows = Mapping[str, Mapping[str, int | None]]
Steps = Mapping[str, Sequence[Mapping[str, object]]]
WorldSwitch = Mapping[str, Mapping[str, Mapping[str, int]]]


def _check_fmt(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _ordered_ops(rows: Rows) -> list[str]:
    """OPERATIONS order for the known operations, then any others in the order given."""
    return [op for op in OPERATIONS if op in rows] + [op for op in rows if op not in OPERATIONS]


def _tabulate(data: list[list], headers: Sequence[str], fmt: str) -> str:
    from tabulate import tabulate     # imported when a table is made: start-up stays short
    return tabulate(data, headers=list(headers), tablefmt=fmt, numalign="right",
                    missingval=MISSING, intfmt="" if fmt == "latex" else ",")


def _heading(text: str, fmt: str) -> str:
    """A line of prose above or below a table; a comment in LaTeX so the output stays valid."""
    return f"% {text}" if fmt == "latex" else text


def _csv(header: Sequence[str], data: list[list]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([["" if v is None else v for v in row] for row in data])
    return buf.getvalue().rstrip("\n")


def format_table(rows: Rows, designs: Sequence[str], fmt: str, title: str | None = None,
                 meta: Mapping | None = None, definitions: Mapping[str, str] | None = None) -> str:
    """One row per operation, one cycles column per design; None renders as "-", "" or null.
    `definitions`: what each operation measures, printed under a text table (json: a key;
    csv stays numbers only)."""
    _check_fmt(fmt)
    ops = _ordered_ops(rows)
    defs = {op: definitions[op] for op in ops if op in definitions} if definitions else {}
    if fmt == "json":
        out = {"rows": {op: {d: rows[op].get(d) for d in designs} for op in ops},
               "designs": list(designs)}
        if meta:
            out["meta"] = meta
        if defs:
            out["definitions"] = defs
        return json.dumps(out, indent=2)
    header = ["operation", *designs]
    data = [[op, *(rows[op].get(d) for d in designs)] for op in ops]
    if fmt == "csv":
        return _csv(header, data)
    body = _tabulate(data, header, fmt)
    if defs:
        body += "\n\n" + "\n".join(_heading(f"{op}: {text}", fmt) for op, text in defs.items())
    return f"{_heading(title, fmt)}\n{body}" if title else body


def _total(steps: Sequence[Mapping[str, object]]) -> int:
    return sum(int(s["cycles"]) for s in steps)


def _summary(op: str, totals: Mapping[str, int], thousands: str = ",") -> str:
    """One line: the designs from cheapest to dearest, each with its ratio to the cheapest."""
    if not totals:
        return f"{op}: no design measured"
    ranked = sorted(totals.items(), key=lambda kv: kv[1])
    best = ranked[0][1]
    parts = [f"{ranked[0][0]} {best:{thousands}} (fastest)"]
    for design, total in ranked[1:]:
        ratio = f" ({total / best:.2f}x)" if best else ""
        parts.append(f"{design} {total:{thousands}}{ratio}")
    return f"{op} total cycles: " + ", ".join(parts)


def format_breakdown(op: str, steps_by_design: Steps, designs: Sequence[str], fmt: str,
                     definition: str | None = None) -> str:
    """The steps of one trap path per design with their cycles and totals, then a summary line.

    A design in `designs` but not in `steps_by_design` is "not measured" (null in json).
    `definition`: what the operation measures, the first line of a text breakdown.
    """
    _check_fmt(fmt)
    present = [d for d in designs if d in steps_by_design]
    totals = {d: _total(steps_by_design[d]) for d in present}
    if fmt == "json":
        out = {d: ({"steps": [dict(s) for s in steps_by_design[d]], "total": totals[d]}
                   if d in totals else None) for d in designs}
        doc = {"operation": op, "designs": out}
        if definition:
            doc["definition"] = definition
        return json.dumps(doc, indent=2)
    if fmt == "csv":
        data = [[d, i, s["where"], s["what"], s["cycles"]]
                for d in present for i, s in enumerate(steps_by_design[d], 1)]
        return _csv(["design", "step", "where", "what", "cycles"], data)
    thousands = "" if fmt == "latex" else ","
    blocks = [_heading(f"{op}: {definition}", fmt)] if definition else []
    blocks += [_side_by_side(op, steps_by_design, present, fmt)] if present else []
    for d in designs:
        if d not in totals:
            blocks.append(_heading(f"{op} under {d}: not measured", fmt))
            continue
        data = [[i, s["where"], s["what"], s["cycles"]]
                for i, s in enumerate(steps_by_design[d], 1)]
        data.append(["", "", "total", totals[d]])
        heading = _heading(f"{op} under {d}: {totals[d]:{thousands}} cycles", fmt)
        table = _tabulate(data, ["step", "where", "what", "cycles"], fmt)
        blocks.append(f"{heading}\n{table}")
    blocks.append(_heading(_summary(op, totals, thousands), fmt))
    return "\n\n".join(blocks)


def _side_by_side(op: str, steps_by_design: Steps, designs: Sequence[str], fmt: str) -> str:
    """The designs next to each other: cycles by where the steps run (hardware, the
    EL2 switch code, the host or hypervisor software, user space, the back end), rows
    in order of first appearance, then the total."""
    wheres: list[str] = []
    for d in designs:
        for s in steps_by_design[d]:
            if s["where"] not in wheres:
                wheres.append(str(s["where"]))
    data = [[w] + [sum(int(s["cycles"]) for s in steps_by_design[d] if s["where"] == w) or None
                   for d in designs] for w in wheres]
    data.append(["total"] + [_total(steps_by_design[d]) for d in designs])
    data.append(["steps"] + [len(steps_by_design[d]) for d in designs])
    heading = _heading(f"{op}: cycles by where each step runs", fmt)
    return f"{heading}\n{_tabulate(data, ['where'] + list(designs), fmt)}"


def _plot_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in PLOT_FORMATS:
        raise ValueError(f"cannot plot to {str(path)!r}: extension {suffix or '(none)'!r} "
                         f"is not one of {', '.join(PLOT_FORMATS)}")
    return PLOT_FORMATS[suffix]


def plot(rows: Rows, world_switch: WorldSwitch, designs: Sequence[str], path: str | Path,
         title: str | None = None) -> None:
    """Save a two-panel figure to `path` (.png or .svg): cycles per operation, world-switch cost.

    Uses matplotlib's object API (no pyplot, so no global backend or open-figure state) on the
    Agg/SVG canvases, which work headless; the output carries no date, so it is reproducible.
    """
    fmt = _plot_format(path)
    import matplotlib
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 5), layout="constrained")
    ax_ops, ax_ws = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    if title:
        fig.suptitle(title)

    # (a) grouped bars: one group per operation, one bar per design, None cells skipped.
    ops = _ordered_ops(rows)
    width = 0.8 / max(len(designs), 1)
    for i, d in enumerate(designs):
        xs = [x + (i - (len(designs) - 1) / 2) * width
              for x, op in enumerate(ops) if rows[op].get(d) is not None]
        ys = [rows[op][d] for op in ops if rows[op].get(d) is not None]
        ax_ops.bar(xs, ys, width, label=d)
    positive = [v for op in ops for d in designs if (v := rows[op].get(d)) is not None and v > 0]
    log = bool(positive) and max(positive) / min(positive) > LOG_RATIO
    if log:
        ax_ops.set_yscale("log")
    ax_ops.set_ylabel("cycles (log scale)" if log else "cycles")
    ax_ops.set_xticks(range(len(ops)), ops, rotation=30, ha="right")
    ax_ops.set_title("cycles per operation")
    if designs and ops:
        ax_ops.legend(title="design")

    # (b) stacked bars: save + restore per register group, one bar per design.
    ws_designs = [d for d in designs if d in world_switch]
    groups = list(WORLD_SWITCH_GROUPS) + [g for d in ws_designs for g in world_switch[d]
                                          if g not in WORLD_SWITCH_GROUPS]
    groups = list(dict.fromkeys(groups))
    bottom = [0] * len(ws_designs)
    for g in groups:
        parts = [world_switch[d].get(g, {}) for d in ws_designs]
        heights = [p.get("save", 0) + p.get("restore", 0) for p in parts]
        if any(heights):
            ax_ws.bar(range(len(ws_designs)), heights, 0.6, bottom=bottom, label=g)
            bottom = [b + h for b, h in zip(bottom, heights)]
    ax_ws.set_xticks(range(len(ws_designs)), ws_designs)
    ax_ws.set_ylabel("cycles (save + restore)")
    ax_ws.set_title("world switch by register group")
    if any(bottom):
        ax_ws.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))

    with matplotlib.rc_context({"svg.hashsalt": "armvirt"}):
        fig.savefig(path, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
