"""Tables with tabulate (--format simple|github|latex|csv|...|json)."""
from __future__ import annotations

import csv
import io
import json


FORMATS = ("simple", "github", "latex", "csv", "json", "plain", "grid", "pipe")


def table(rows: list[dict], fmt: str, title: str = "", floatfmt: str = ".2f") -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        if rows:
            w = csv.DictWriter(buf, fieldnames=list(rows[0].keys()), lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        return buf.getvalue().rstrip("\n")
    from tabulate import tabulate     # imported when a table is made: start-up stays short
    body = tabulate(rows, headers="keys", tablefmt=fmt, floatfmt=floatfmt, intfmt=",")
    return f"{title}\n{body}" if title and fmt in ("simple", "plain", "grid") else body
