"""A validator for the Trace Event Format as Perfetto's JSON importer reads it
(the rules whose breach the UI reports as an import error or a broken track):

- a JSON object with "traceEvents" first (Perfetto stops reading at an unknown
  top-level key) and no "displayTimeUnit" (Perfetto counts it as a warning, and
  reads it as the unit of ts);
- only known phases: B, E, X, i/I, C, M; every event has pid and tid integers
  and a name; every one but M has a numeric ts;
- every pid has a process_name and every (pid, tid) that carries events a
  thread_name (metadata events), and a tid belongs to one pid only;
- per track (pid, tid), timestamps never go back in file order;
- B/E: every E closes the latest open B of its track, names matching when given,
  and no B is left open;
- X (and B/E pairs, and thread instants as zero-length slices): on a track they
  nest; a slice that starts inside another ends inside it;
- C: args hold numbers.

Times are compared as Perfetto keeps them: whole nanoseconds, llround(us * 1000).
"""
from __future__ import annotations

PHASES = {"B", "E", "X", "i", "I", "C", "M"}
META = {"process_name", "process_sort_index", "thread_name", "thread_sort_index", "process_labels"}


def ns(us) -> int:
    return round(us * 1000)           # llround: halves away from zero, as Python's round is not,
                                      # but a ts written from whole ns is never a half


def validate(doc) -> list[str]:
    errors: list[str] = []

    def err(msg: str) -> None:
        if len(errors) < 50:
            errors.append(msg)

    if not isinstance(doc, dict) or not isinstance(doc.get("traceEvents"), list):
        return ["not a JSON object with a traceEvents array"]
    keys = list(doc)
    if keys[0] != "traceEvents":
        err(f"traceEvents must come first (Perfetto stops at an unknown key), keys are {keys}")
    if "displayTimeUnit" in doc:
        err("displayTimeUnit present: Perfetto reports it and takes it as the unit of ts")
    unknown = set(keys) - {"traceEvents", "otherData", "metadata"}
    if unknown:
        err(f"unknown top-level keys {sorted(unknown)}: Perfetto ignores the rest of the file")

    proc_named, thread_named, tid_pid = set(), set(), {}
    used_tracks, used_pids = set(), set()
    last_ts: dict = {}
    stacks: dict = {}            # track -> [(end_ns or None for B, name)]
    for i, e in enumerate(doc["traceEvents"]):
        where = f"event {i} ({e.get('ph')} {e.get('name')!r})" if isinstance(e, dict) else f"event {i}"
        if not isinstance(e, dict):
            err(f"{where}: not an object")
            continue
        ph = e.get("ph")
        if ph not in PHASES:
            err(f"{where}: unknown phase {ph!r}")
            continue
        pid, tid = e.get("pid"), e.get("tid")
        if not isinstance(pid, int) or not isinstance(tid, int):
            err(f"{where}: pid and tid must be integers, got {pid!r}, {tid!r}")
            continue
        if not isinstance(e.get("name"), str):
            err(f"{where}: no name")
        if not str(e.get("name")).startswith("process_") and tid_pid.setdefault(tid, pid) != pid:
            err(f"{where}: tid {tid} used by pid {tid_pid[tid]} and pid {pid}")
        if ph == "M":
            name, args = e.get("name"), e.get("args")
            if name not in META:
                err(f"{where}: unknown metadata event {name!r}")
            if not isinstance(args, dict):
                err(f"{where}: metadata without args")
            elif name in ("process_name", "thread_name") and not isinstance(args.get("name"), str):
                err(f"{where}: {name} without a name")
            elif name.endswith("sort_index") and not isinstance(args.get("sort_index"), int):
                err(f"{where}: {name} without an integer sort_index")
            if name == "process_name":
                proc_named.add(pid)
            if name == "thread_name":
                thread_named.add((pid, tid))
            continue
        ts = e.get("ts")
        if not isinstance(ts, (int, float)):
            err(f"{where}: ts {ts!r} is not a number")
            continue
        t = ns(ts)
        track = (pid, tid)
        used_pids.add(pid)
        used_tracks.add(track)
        if ph == "C":
            key = (pid, e.get("name"))
            if t < last_ts.get(key, t):
                err(f"{where}: counter time goes back ({t} ns after {last_ts[key]} ns)")
            last_ts[key] = t
            args = e.get("args")
            if not isinstance(args, dict) or not args or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in args.values()):
                err(f"{where}: counter args must be numbers, got {args!r}")
            continue
        if t < last_ts.get(track, t):
            err(f"{where}: time goes back on track {track} ({t} ns after {last_ts[track]} ns)")
        last_ts[track] = t
        stack = stacks.setdefault(track, [])
        if ph == "E":
            # the open X slices that ended by now are closed first
            while stack and stack[-1][0] is not None and stack[-1][0] <= t:
                stack.pop()
            if not stack or stack[-1][0] is not None:
                err(f"{where}: E with no open B on track {track}")
                continue
            _, bname = stack.pop()
            if e.get("name") and bname and e["name"] != bname:
                err(f"{where}: E {e['name']!r} closes B {bname!r}")
            if stack and stack[-1][0] is not None and stack[-1][0] < t:
                err(f"{where}: B/E {bname!r} ends at {t} ns, after its parent (ends {stack[-1][0]} ns)")
            continue
        if ph in ("i", "I"):
            if e.get("s", "t") not in ("t", "p", "g"):
                err(f"{where}: instant scope {e.get('s')!r}")
            if e.get("s", "t") != "t":
                continue
            end = t
        elif ph == "X":
            dur = e.get("dur")
            if not isinstance(dur, (int, float)) or dur < 0:
                err(f"{where}: X needs a dur >= 0, got {dur!r}")
                continue
            end = t + ns(dur)
        else:                                   # B
            end = None
        while stack and stack[-1][0] is not None and stack[-1][0] <= t:
            stack.pop()                          # ended before this one starts: siblings
        if stack and stack[-1][0] is not None and end is not None and end > stack[-1][0]:
            err(f"{where}: [{t}, {end}] ns overlaps its parent on track {track}, "
                f"which ends at {stack[-1][0]} ns")
        if end is None or end > t:
            stack.append((end, e.get("name")))
    for track, stack in stacks.items():
        if any(end is None for end, _ in stack):
            err(f"track {track}: B without E: {[n for end, n in stack if end is None]}")
    for pid in sorted(used_pids - proc_named):
        err(f"pid {pid} has events but no process_name")
    for track in sorted(used_tracks - thread_named):
        err(f"track {track} has events but no thread_name")
    return errors


def tracks(doc) -> dict:
    """{(process name, thread name): [events]} of a valid document."""
    pname, tname = {}, {}
    for e in doc["traceEvents"]:
        if e.get("ph") == "M" and e["name"] == "process_name":
            pname[e["pid"]] = e["args"]["name"]
        elif e.get("ph") == "M" and e["name"] == "thread_name":
            tname[(e["pid"], e["tid"])] = e["args"]["name"]
    out: dict = {}
    for e in doc["traceEvents"]:
        if e.get("ph") != "M":
            out.setdefault((pname.get(e["pid"]), tname.get((e["pid"], e["tid"]))), []).append(e)
    return out


def children(events) -> dict:
    """{id(slice): [its direct children]} of one track's events (in file order), nested
    as Perfetto nests them: by time, a slice inside the latest one still open."""
    out: dict = {}
    stack: list = []
    for e in events:
        if e["ph"] not in ("X", "i"):
            continue
        t = ns(e["ts"])
        end = t + ns(e.get("dur", 0))
        while stack and ns(stack[-1]["ts"]) + ns(stack[-1]["dur"]) <= t:
            stack.pop()
        if stack:
            out.setdefault(id(stack[-1]), []).append(e)
        if e["ph"] == "X" and end > t:
            stack.append(e)
    return out
