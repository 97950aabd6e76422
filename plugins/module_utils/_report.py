# -*- coding: utf-8 -*-
# Internal to ceptra.backfill: the run report (checklist, runs, replay progress) as JSON, Markdown, HTML.
# Copyright (c) 2026 ceptra.backfill contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to ceptra.backfill (not a public API): the report a person looks at after a run.

Inputs: a verify checklist (items ``{name, ok, evidence, section, id}``, see
:func:`normalize_checklist`), the records of the audit log written by the
``ceptra.backfill.audit`` callback (task results and the replay progress of every round)
and, optionally, replay results registered by a playbook. :func:`build_model` makes one
JSON-ready model; :func:`render_markdown` and :func:`render_html` present it, with the
charts of ``_report_charts`` when matplotlib is installed, else with tables.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import os
import tempfile

from ansible_collections.ceptra.backfill.plugins.module_utils._audit_record import Redactor
from ansible_collections.ceptra.backfill.plugins.module_utils._errors import CeptraError
from ansible_collections.ceptra.backfill.plugins.module_utils._progress_view import compact_progress

CHECKLIST_KEYS = ("name", "ok", "evidence", "section", "id")
DEFAULT_THRESHOLDS = {"apply_lag_ms": 200.0, "replication_lag_ms": 250.0}


class ReportError(CeptraError):
    """Bad report input; the message names the item and what to fix."""

    context = ""   # the message already says what failed


# ---------------------------------------------------------------------------- inputs
def normalize_checklist(items):
    """Check the checklist items and return clean copies.

    Each item is a dict with ``name`` (non-empty string, required), ``ok`` (true, false, or
    null for "not checked", required), ``evidence`` (optional: text, number, list or dict -
    what the check saw), ``section`` (optional: a heading to group items under) and ``id``
    (optional: a stable identifier).
    """
    if not isinstance(items, list):
        raise ReportError("checklist must be a list of items {name, ok, evidence}, got %s" % type(items).__name__)
    redactor = Redactor()
    out = []
    for index, item in enumerate(items):
        where = "checklist[%d]" % index
        if not isinstance(item, dict):
            raise ReportError("%s must be a dict {name, ok, evidence}, got %s" % (where, type(item).__name__))
        unknown = sorted(set(item) - set(CHECKLIST_KEYS))
        if unknown:
            raise ReportError("%s has unknown key(s) %s; allowed: %s" % (where, ", ".join(unknown), ", ".join(CHECKLIST_KEYS)))
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ReportError("%s needs a non-empty name" % where)
        if "ok" not in item:
            raise ReportError("%s (%s) needs ok: true, false or null (not checked)" % (where, name))
        ok = item["ok"]
        if ok is not None and not isinstance(ok, bool):
            raise ReportError("%s (%s): ok must be true, false or null, got %r" % (where, name, ok))
        evidence = item.get("evidence")
        try:
            evidence = json.loads(redactor.text(json.dumps(evidence, sort_keys=False, default=str)))
        except ValueError:
            evidence = redactor.text(evidence)
        clean = {"name": name.strip(), "ok": ok, "evidence": evidence}
        for key in ("section", "id"):
            if item.get(key) is not None:
                clean[key] = str(item[key])
        out.append(clean)
    return out


def _parse_time(text):
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def _iso(moment):
    return moment.astimezone(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def select_runs(chain, run_ids=None, current_run=None):
    """The run ids to report: ``run_ids`` when given, else the latest run with replay progress,
    else the latest run other than ``current_run``, else the latest run."""
    runs = sorted(chain.get("runs", {}).values(), key=lambda r: r["last_seq"])
    if run_ids:
        known = set(r["run"] for r in runs)
        missing = [r for r in run_ids if r not in known]
        if missing:
            raise ReportError("run(s) %s are not in the audit log %s (runs there: %s)" % (
                ", ".join(missing), chain.get("path"), ", ".join(r["run"] for r in runs[-5:]) or "none"))
        return list(run_ids)
    with_progress = set(r.get("run") for r in chain.get("kept", []) if r.get("progress"))
    for pick in ([r for r in runs if r["run"] in with_progress], [r for r in runs if r["run"] != current_run], runs):
        if pick:
            return [pick[-1]["run"]]
    return []


def progress_points(records, results=()):
    """Replay progress over time: {part_id: [point, ...]} in time order.

    From audit ``retry`` records and task records carrying ``progress``, and from replay
    ``results`` (registered historic_replay results; their ``finished_at`` gives the time).
    A point: {time, elapsed_s, host, status, events_done, events_total, pct, rate_eps,
    eta_s, apply_lag_ms, replication_lag_ms}.
    """
    raw = []
    for record in records:
        if record.get("progress") and record.get("event") in ("retry", "task"):
            raw.append((_parse_time(record.get("time")), record.get("host"), record["progress"]))
    for result in results or ():
        progress = compact_progress(result)
        if progress is None:
            raise ReportError("a progress item is not a replay result (no partitions with events_done)")
        stamp = result.get("finished_at")
        moment = (datetime.datetime.fromtimestamp(float(stamp), datetime.timezone.utc)
                  if isinstance(stamp, (int, float)) else _parse_time(result.get("time")))
        raw.append((moment, result.get("host"), progress))
    raw = [item for item in raw if item[0] is not None]
    raw.sort(key=lambda item: item[0])
    if not raw:
        return {}
    start = raw[0][0]
    series = {}
    for moment, host, progress in raw:
        for part_id, part in progress["partitions"].items():
            total = part.get("events_total")
            done = part.get("events_done") or 0
            series.setdefault(part_id, []).append({
                "time": _iso(moment), "elapsed_s": round((moment - start).total_seconds(), 3), "host": host,
                "status": part.get("status"), "events_done": done, "events_total": total,
                "pct": round(100.0 * done / total, 1) if total else (100.0 if part.get("status") == "done" else 0.0),
                "rate_eps": part.get("rate_eps"), "eta_s": part.get("eta_s"),
                "apply_lag_ms": part.get("apply_lag_ms"), "replication_lag_ms": part.get("replication_lag_ms"),
            })
    return dict(sorted(series.items(), key=lambda kv: (0, int(kv[0]), "") if kv[0].isdigit() else (1, 0, kv[0])))


def partition_summary(series):
    """Per partition: points, last state and done/total, peak rate and lags."""
    out = []
    for part_id, points in series.items():
        last = points[-1]

        def peak(key):
            values = [p[key] for p in points if p.get(key) is not None]
            return max(values) if values else None
        out.append({"part_id": part_id, "points": len(points), "status": last["status"],
                    "events_done": last["events_done"], "events_total": last["events_total"], "pct": last["pct"],
                    "peak_rate_eps": peak("rate_eps"), "peak_apply_lag_ms": peak("apply_lag_ms"),
                    "peak_replication_lag_ms": peak("replication_lag_ms")})
    return out


def run_summaries(records, run_ids):
    """Per selected run: operator, AWX job, times, task outcome counts and failed tasks."""
    runs = {}
    for record in records:
        run = record.get("run")
        if run not in run_ids:
            continue
        entry = runs.setdefault(run, {"run": run, "operator": record.get("operator"), "awx_job": None,
                                      "playbook": None, "check_mode": None, "started": record.get("time"),
                                      "ended": None, "tasks": {"ok": 0, "changed": 0, "failed": 0, "skipped": 0,
                                                               "ignored": 0}, "failed_tasks": []})
        event = record.get("event")
        if event == "run_start":
            entry.update(awx_job=record.get("awx_job"), playbook=record.get("playbook"),
                         check_mode=record.get("check_mode"), started=record.get("time"))
        elif event == "run_end":
            entry["ended"] = record.get("time")
        elif event == "task":
            tasks = entry["tasks"]
            if record.get("skipped"):
                tasks["skipped"] += 1
            elif record.get("failed"):
                tasks["ignored" if record.get("ignored") else "failed"] += 1
                entry["failed_tasks"].append({"task": record.get("task"), "host": record.get("host"),
                                              "ignored": bool(record.get("ignored")), "msg": record.get("msg")})
            elif record.get("changed"):
                tasks["changed"] += 1
            else:
                tasks["ok"] += 1
    return [runs[r] for r in run_ids if r in runs]


def build_model(title, checklist, chain=None, run_ids=(), results=(), thresholds=None):
    """The report as one JSON-ready dict (also the content of the JSON file)."""
    records = [r for r in (chain or {}).get("kept", []) if r.get("run") in run_ids]
    series = progress_points(records, results)
    items = normalize_checklist(checklist)
    passed = sum(1 for i in items if i["ok"] is True)
    failed = sum(1 for i in items if i["ok"] is False)
    unchecked = sum(1 for i in items if i["ok"] is None)
    audit = None
    if chain is not None:
        audit = {"path": chain.get("path"), "exists": chain.get("exists"), "ok": chain.get("ok"),
                 "problems": list(chain.get("problems", [])), "head": chain.get("head"),
                 "records": chain.get("records"), "runs": list(run_ids)}
    times = [r.get("time") for r in records if r.get("time")] + [p["time"] for pts in series.values() for p in pts]
    checklist_ok = bool(items) and failed == 0 and unchecked == 0
    return {
        "title": title,
        "time": max(times) if times else None,
        "summary": {"ok": checklist_ok and (audit is None or bool(audit["ok"])), "checklist_ok": checklist_ok,
                    "items": len(items), "passed": passed, "failed": failed, "unchecked": unchecked,
                    "audit_chain_ok": None if audit is None else bool(audit["ok"])},
        "checklist": items,
        "audit": audit,
        "runs": run_summaries(records, list(run_ids)),
        "thresholds": dict(DEFAULT_THRESHOLDS, **(thresholds or {})),
        "partitions": partition_summary(series),
        "progress": series,
    }


# ---------------------------------------------------------------------------- rendering
def _evidence_text(evidence):
    if evidence is None:
        return ""
    if isinstance(evidence, str):
        return evidence
    return json.dumps(evidence, indent=2, sort_keys=True, default=str)


def _mark(ok):
    return {True: "PASS", False: "FAIL", None: "NOT CHECKED"}[ok]


def _num(value, fmt="%.0f"):
    return "-" if value is None else fmt % value


def _verdict(model):
    summary = model["summary"]
    text = "%d of %d checks passed" % (summary["passed"], summary["items"])
    if summary["failed"]:
        text += ", %d failed" % summary["failed"]
    if summary["unchecked"]:
        text += ", %d not checked" % summary["unchecked"]
    audit = model.get("audit")
    if audit is not None:
        head = audit.get("head") or {}
        text += "; audit chain %s (%s records, head seq %s)" % (
            "intact" if audit["ok"] else "BROKEN", audit.get("records"), head.get("seq", "-"))
    return ("PASS" if summary["ok"] else "FAIL"), text


def _md_evidence(evidence):
    """Evidence on one table row: text as is, anything else as compact JSON in code quotes."""
    if evidence is None or isinstance(evidence, str):
        return evidence or ""
    return "`%s`" % json.dumps(evidence, sort_keys=True, separators=(", ", ": "), default=str)


def _md_cell(text):
    return str(text).replace("|", "\\|").replace("\n", "<br>")


def render_markdown(model, chart_files=None):
    """The report as Markdown; ``chart_files`` = [(title, relative file name)] or None (tables)."""
    verdict, text = _verdict(model)
    out = ["# %s" % model["title"], "", "**%s** - %s" % (verdict, text), ""]
    if model.get("time"):
        out += ["Data up to %s." % model["time"], ""]
    out += ["## Checklist", "", "| result | check | evidence |", "| --- | --- | --- |"]
    for item in model["checklist"]:
        name = item["name"] if not item.get("section") else "%s: %s" % (item["section"], item["name"])
        out.append("| %s | %s | %s |" % (_mark(item["ok"]), _md_cell(name), _md_cell(_md_evidence(item["evidence"]))))
    out += ["", "## Replay progress", ""]
    if not model["partitions"]:
        out += ["No replay progress was recorded for the selected runs.", ""]
    else:
        if chart_files:
            for title, name in chart_files:
                out += ["![%s](%s)" % (title, name), ""]
        out += _md_partition_table(model)
        if not chart_files:
            out += _md_series_tables(model)
    out += _md_runs(model)
    audit = model.get("audit")
    if audit is not None:
        out += ["## Audit log", "", "`%s`: %s records, %s." % (
            audit["path"], audit.get("records"), "chain intact" if audit["ok"] else "chain BROKEN"), ""]
        out += ["- %s" % p for p in audit["problems"]] + ([""] if audit["problems"] else [])
    return "\n".join(out).rstrip() + "\n"


def _md_partition_table(model):
    out = ["| partition | state | events done / total | peak rate (ev/s) | peak apply lag (ms) | peak replication lag (ms) |",
           "| --- | --- | --- | --- | --- | --- |"]
    for p in model["partitions"]:
        out.append("| %s | %s | %s / %s (%.1f%%) | %s | %s | %s |" % (
            p["part_id"], p["status"], p["events_done"], p["events_total"], p["pct"], _num(p["peak_rate_eps"]),
            _num(p["peak_apply_lag_ms"]), _num(p["peak_replication_lag_ms"])))
    return out + [""]


def _md_series_tables(model):
    out = ["Charts need matplotlib on the controller; the figures over time:", ""]
    for part_id, points in model["progress"].items():
        out += ["### Partition %s" % part_id, "", "| time | elapsed (s) | done | rate (ev/s) | apply lag (ms) | replication lag (ms) | state |",
                "| --- | --- | --- | --- | --- | --- | --- |"]
        for p in points:
            out.append("| %s | %.1f | %s/%s | %s | %s | %s | %s |" % (
                p["time"], p["elapsed_s"], p["events_done"], p["events_total"], _num(p["rate_eps"]),
                _num(p["apply_lag_ms"]), _num(p["replication_lag_ms"]), p["status"]))
        out.append("")
    return out


def _md_runs(model):
    if not model["runs"]:
        return []
    out = ["## Runs", "", "| run | operator | AWX job | started | ended | ok | changed | failed | ignored | skipped |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run in model["runs"]:
        t = run["tasks"]
        out.append("| %s | %s | %s | %s | %s | %d | %d | %d | %d | %d |" % (
            _md_cell(run["run"]), _md_cell(run["operator"] or "-"), _md_cell(_job_text(run["awx_job"])),
            run["started"] or "-", run["ended"] or "-", t["ok"], t["changed"], t["failed"], t["ignored"], t["skipped"]))
    out.append("")
    for run in model["runs"]:
        for task in run["failed_tasks"]:
            out.append("- %s %s on %s: %s" % ("ignored failure:" if task["ignored"] else "FAILED:", task["task"],
                                              task["host"], task["msg"] or "(no message)"))
    return out + [""]


def _job_text(job):
    if not job:
        return "-"
    text = "#%s" % job.get("job_id", "?")
    if job.get("job_template_name"):
        text += " %s" % job["job_template_name"]
    return text


_CSS = """
body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 24px; color: #1f2328; background: #fff; }
h1 { margin: 0 0 8px 0; font-size: 26px; } h2 { margin-top: 28px; font-size: 20px; border-bottom: 1px solid #d0d7de; }
.verdict { display: inline-block; padding: 4px 12px; border-radius: 6px; color: #fff; font-weight: bold; margin-right: 8px; }
.PASS { background: #1a7f37; } .FAIL { background: #cf222e; } .NOTCHECKED { background: #9a6700; }
table { border-collapse: collapse; margin: 8px 0; font-size: 14px; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { margin: 0; font-size: 12px; white-space: pre-wrap; max-width: 720px; }
.mark { font-weight: bold; white-space: nowrap; }
.mark.PASS { color: #1a7f37; background: none; } .mark.FAIL { color: #cf222e; background: none; }
.mark.NOTCHECKED { color: #9a6700; background: none; }
.note { color: #57606a; } img.chart { display: block; margin: 8px 0; max-width: 100%; }
"""


def render_html(model, charts=None, note=None):
    """The report as one self-contained HTML page; ``charts`` = [{"title", "png"}] (embedded), else tables."""
    esc = html.escape
    verdict, text = _verdict(model)
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           "<title>%s</title>" % esc(model["title"]), "<style>%s</style></head><body>" % _CSS,
           "<h1>%s</h1>" % esc(model["title"]),
           '<p><span class="verdict %s">%s</span>%s</p>' % (verdict, verdict, esc(text))]
    if model.get("time"):
        out.append('<p class="note">Data up to %s.</p>' % esc(model["time"]))
    out += ["<h2>Checklist</h2>", "<table><tr><th>result</th><th>check</th><th>evidence</th></tr>"]
    for item in model["checklist"]:
        mark = _mark(item["ok"])
        name = esc(item["name"]) if not item.get("section") else "<b>%s</b>: %s" % (esc(item["section"]), esc(item["name"]))
        out.append('<tr><td class="mark %s">%s</td><td>%s</td><td><pre>%s</pre></td></tr>' % (
            mark.replace(" ", ""), esc(mark), name, esc(_evidence_text(item["evidence"]))))
    out += ["</table>", "<h2>Replay progress</h2>"]
    if not model["partitions"]:
        out.append('<p class="note">No replay progress was recorded for the selected runs.</p>')
    else:
        for chart in charts or []:
            out.append('<img class="chart" alt="%s" src="data:image/png;base64,%s">' % (
                esc(chart["title"]), base64.b64encode(chart["png"]).decode("ascii")))
        if not charts and note:
            out.append('<p class="note">%s</p>' % esc(note))
        out += _html_table(["partition", "state", "done / total", "%", "peak rate (ev/s)", "peak apply lag (ms)",
                            "peak replication lag (ms)"],
                           [[p["part_id"], p["status"], "%s / %s" % (p["events_done"], p["events_total"]),
                             "%.1f" % p["pct"], _num(p["peak_rate_eps"]), _num(p["peak_apply_lag_ms"]),
                             _num(p["peak_replication_lag_ms"])] for p in model["partitions"]])
        if not charts:
            for part_id, points in model["progress"].items():
                out.append("<h3>Partition %s</h3>" % esc(part_id))
                out += _html_table(["time", "elapsed (s)", "done", "rate (ev/s)", "apply lag (ms)", "replication lag (ms)",
                                    "state"],
                                   [[p["time"], "%.1f" % p["elapsed_s"], "%s/%s" % (p["events_done"], p["events_total"]),
                                     _num(p["rate_eps"]), _num(p["apply_lag_ms"]), _num(p["replication_lag_ms"]),
                                     p["status"]] for p in points])
    if model["runs"]:
        out.append("<h2>Runs</h2>")
        out += _html_table(["run", "operator", "AWX job", "started", "ended", "ok", "changed", "failed", "ignored", "skipped"],
                           [[r["run"], r["operator"] or "-", _job_text(r["awx_job"]), r["started"] or "-", r["ended"] or "-",
                             r["tasks"]["ok"], r["tasks"]["changed"], r["tasks"]["failed"], r["tasks"]["ignored"],
                             r["tasks"]["skipped"]] for r in model["runs"]])
        failures = [t for r in model["runs"] for t in r["failed_tasks"]]
        if failures:
            out += _html_table(["failed task", "host", "ignored", "message"],
                               [[t["task"], t["host"], "yes" if t["ignored"] else "no", t["msg"] or "-"] for t in failures])
    audit = model.get("audit")
    if audit is not None:
        out.append("<h2>Audit log</h2>")
        out.append("<p><code>%s</code>: %s records, %s.</p>" % (
            esc(str(audit["path"])), esc(str(audit.get("records"))), "chain intact" if audit["ok"] else "<b>chain BROKEN</b>"))
        if audit["problems"]:
            out.append("<ul>%s</ul>" % "".join("<li>%s</li>" % esc(p) for p in audit["problems"]))
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _html_table(header, rows):
    esc = html.escape
    out = ["<table><tr>%s</tr>" % "".join("<th>%s</th>" % esc(h) for h in header)]
    for row in rows:
        cells = []
        for value in row:
            text = str(value)
            numeric = isinstance(value, (int, float)) or text.replace(".", "", 1).replace("-", "", 1).isdigit()
            cells.append('<td class="num">%s</td>' % esc(text) if numeric else "<td>%s</td>" % esc(text))
        out.append("<tr>%s</tr>" % "".join(cells))
    out.append("</table>")
    return out


# ---------------------------------------------------------------------------- files
def plan_files(dest, name, model, charts, note):
    """{path: bytes} of every file of the report (charts: [{"name", "title", "png"}] or None)."""
    chart_files = [(c["title"], "%s-%s.png" % (name, c["name"])) for c in charts or []]
    files = {
        os.path.join(dest, "%s.json" % name): (json.dumps(model, indent=2, sort_keys=True) + "\n").encode("utf-8"),
        os.path.join(dest, "%s.md" % name): render_markdown(model, chart_files or None).encode("utf-8"),
        os.path.join(dest, "%s.html" % name): render_html(model, charts, note).encode("utf-8"),
    }
    for chart, (dummy, file_name) in zip(charts or [], chart_files):
        files[os.path.join(dest, file_name)] = chart["png"]
    return files


def stale_files(dest, name, keep, chart_names):
    """Chart files of an earlier report with ``name`` that this one does not write."""
    out = []
    for chart in chart_names:
        path = os.path.join(dest, "%s-%s.png" % (name, chart))
        if path not in keep and os.path.exists(path):
            out.append(path)
    return out


def write_files(files, remove=(), check_mode=False):
    """Write the files whose content differs (atomically); returns the changed paths."""
    changed = []
    for path, data in sorted(files.items()):
        try:
            with open(path, "rb") as handle:
                if handle.read() == data:
                    continue
        except OSError:
            pass
        changed.append(path)
        if check_mode:
            continue
        directory = os.path.dirname(path)
        fd, tmp = tempfile.mkstemp(prefix=".report-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    for path in remove:
        changed.append(path)
        if not check_mode:
            os.unlink(path)
    return changed
