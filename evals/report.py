"""The report of an eval run, and `compare` of two runs.

Files written into the run folder (each atomically):
- `per_image.jsonl`: one record per image with its full provenance (sequence ids, writer draft,
  backend record, cost, agent events);
- `summary.json`: per configuration, each metric's mean with its bootstrap 95% interval over ideas
  and its paired difference against the baseline; per idea and configuration, the raw figures;
  which embedder and which fidelity method were used;
- `report.html`: self-contained (images and the plot inline as base64): the configuration table,
  a fidelity-versus-diversity plot, contact sheets (one row per configuration), rut events and
  escapes;
- `config.json` is written by the runner when the run starts.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from zit_agent.errors import UserError
from zit_agent.evals.metrics import COST_KEYS, TIMING_KEYS, group_records, summarize

if TYPE_CHECKING:
    from zit_agent.evals.runner import RunContext
    from zit_agent.evals.suite import Suite

THUMB_PX = 160
SKETCH_NOTE = (
    "Rendered with the sketch stand-in, not an image model: it draws one default composition "
    "whenever a description leaves the rut axes unstated, so plain ideas rut by construction and "
    "a strategy that states varied axes (the agent) shows higher diversity. That contrast is what "
    "the stand-in is built to show; it says nothing about Z-Image itself."
)
HEADLINE = ("mean_distance", "vendi", "near_duplicate_rate", "rut_rate", "fidelity")
LABELS = {
    "mean_distance": "mean pairwise distance",
    "vendi": "Vendi score",
    "near_duplicate_rate": "near-duplicate rate",
    "rut_rate": "rut rate",
    "fidelity": "fidelity",
    "writer_prompt_tokens": "writer prompt tokens",
    "writer_new_tokens": "writer new tokens",
    "sequence_tokens": "sequence tokens",
    "denoise_steps": "steps / image",
    **{k: f"s {k.removeprefix('seconds_')}" for k in TIMING_KEYS},
}


def write_report(
    root: Path,
    suite: Suite,
    journals: list[dict[str, Any]],
    run: RunContext,
    failures: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Compute the metrics of a finished run and write per_image.jsonl, summary.json, report.html."""
    records = [r for journal in journals for r in journal["images"]]
    clip = run.clip
    figures = summarize(records, root, baseline=suite.baseline, embedder=run.embedder, clip=clip)
    summary = {
        "suite": suite.name,
        "suite_digest": suite.digest(),
        "baseline": suite.baseline,
        "backend": suite.backend.model_dump(),
        "note": SKETCH_NOTE if suite.backend.kind == "sketch" else None,
        "embedder": _embedder_info(run.embedder),
        "fidelity": {
            "method": "clip" if clip else "attributes",
            "model": clip.source if clip else None,
            "about": "max(cosine(image, idea text), 0) with CLIP"
            if clip
            else "share of the idea's locked attributes stated in the final description",
        },
        "counts": {
            "ideas": len(suite.ideas),
            "configs": len(suite.configs),
            "seeds": len(suite.seeds),
            "images": len(records),
        },
        "configs": {
            name: {"strategy": suite.configs[name].strategy, "metrics": metrics}
            for name, metrics in figures["configs"].items()
        },
        "per_idea": figures["per_idea"],
        "rut_events": rut_events(records, figures["per_idea"]),
        "failed_jobs": failures or [],
        "cost": {"workers": worker_throughput(journals)},
    }
    from zit_agent.files import write_text_atomic as write_atomic

    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    write_atomic(root / "per_image.jsonl", lines)
    write_atomic(root / "summary.json", json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
    write_atomic(root / "report.html", render_html(summary, suite, records, root))
    return summary


def worker_throughput(journals: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per worker that ran jobs (`local`, or a Ray worker): its jobs, images, busy seconds (its
    strategies' wall time) and busy seconds per image (its throughput's inverse). Timings are
    `seconds_*` keys, like every timing of the summary."""
    workers: dict[str, dict[str, Any]] = {}
    for journal in journals:
        worker = journal.get("worker") or {"name": "unrecorded"}  # journals of older runs
        entry = workers.setdefault(
            worker["name"],
            {"node": worker.get("node"), "device": worker.get("device"), "jobs": 0, "images": 0,
             "seconds_busy": 0.0},
        )  # fmt: skip
        entry["jobs"] += 1
        entry["images"] += len(journal["images"])
        entry["seconds_busy"] += worker.get("seconds", 0.0)
    for entry in workers.values():
        busy = entry["seconds_busy"]
        entry["seconds_per_image"] = round(busy / entry["images"], 4) if entry["images"] else None
        entry["seconds_busy"] = round(busy, 3)
    return dict(sorted(workers.items()))


def _embedder_info(embedder: Any) -> dict[str, Any]:
    from zit_agent.agent.ruts import thresholds_for

    thresholds = thresholds_for(embedder.family)
    return {"name": embedder.name, "family": embedder.family, "thresholds": thresholds.model_dump()}


def rut_events(records: list[dict[str, Any]], per_idea: dict[str, dict[str, Any]]) -> list[dict]:
    """Every (idea, config) whose final images form a rut, and every agent escape step."""
    events = [
        {"idea": idea, "config": config, "kind": "final rut", "detail": _figure_line(figures)}
        for config, ideas in per_idea.items()
        for idea, figures in ideas.items()
        if figures["verdict"] == "rut"
    ]
    seen: set[tuple[str, str]] = set()
    for record in records:
        group = (record["idea"]["id"], record["config"])
        if not record["events"] or group in seen:
            continue
        seen.add(group)  # an agent job's events are the same on each of its images
        for event in record["events"]:
            events.append({"idea": group[0], "config": group[1], **event})
    return events


def _figure_line(figures: dict[str, Any]) -> str:
    if figures["verdict"] is None:
        return "fewer than two images: no diversity figures"
    return (
        f"verdict {figures['verdict']}, distance {figures['mean_distance']:.3f}, "
        f"Vendi {figures['vendi']:.2f}, near-duplicates {figures['near_duplicate_rate']:.2f}"
    )


# -- HTML ----------------------------------------------------------------------------------------
PAGE_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;
font-size:13px;vertical-align:top}th{background:#f2f2f2;cursor:pointer}
td.num{text-align:right;white-space:nowrap}.ci{color:#777;font-size:11px}
.better{color:#080}.worse{color:#b00}.note{background:#fff8e0;padding:.6em 1em;
border-left:4px solid #e0b000}.sheet img{display:block;width:160px}
.sheet td{text-align:center;font-size:11px}.rut{color:#b00;font-weight:bold}
"""
# Sorting the configuration table, and a self-check that every inline image decodes.
PAGE_JS = """
document.querySelectorAll("table.sortable th").forEach(function(th, col){
  th.addEventListener("click", function(){
    var body = th.closest("table").tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var key = function(r){ var v = r.cells[col].dataset.v; return v === undefined ?
      r.cells[col].textContent : parseFloat(v); };
    var up = th.dataset.up !== "1"; th.dataset.up = up ? "1" : "0";
    rows.sort(function(a, b){ var x = key(a), y = key(b); return (x > y ? 1 : x < y ? -1 : 0) *
      (up ? 1 : -1); });
    rows.forEach(function(r){ body.appendChild(r); });
  });
});
window.addEventListener("load", function(){
  var bad = Array.prototype.filter.call(document.images, function(i){
    return !i.complete || i.naturalWidth === 0; });
  if (bad.length) { console.error(bad.length + " images of the report failed to decode"); }
  document.body.dataset.images = String(document.images.length - bad.length);
});
"""


def render_html(
    summary: dict[str, Any], suite: Suite, records: list[dict[str, Any]], root: Path
) -> str:
    esc = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>zit eval: {esc(suite.name)}</title><style>{PAGE_CSS}</style></head><body>",
        f"<h1>Eval: {esc(suite.name)}</h1>",
        f"<p>{esc(suite.description)}</p>" if suite.description else "",
        _about(summary),
        f"<p class='note'>{esc(summary['note'])}</p>" if summary["note"] else "",
        "<h2>Configurations</h2>",
        _config_table(summary, HEADLINE),
        "<h3>Cost per image</h3>",
        _config_table(summary, COST_KEYS),
        _workers_table(summary["cost"]["workers"]),
        "<h2>Fidelity versus diversity</h2>",
        f"<img alt='fidelity versus diversity' src='data:image/png;base64,{plot_png(summary)}'>",
        "<h2>Rut events and escapes</h2>",
        _events(summary["rut_events"]),
        _failures(summary["failed_jobs"]),
        "<h2>Contact sheets</h2>",
        _contact_sheets(summary, suite, records, root),
        f"<script>{PAGE_JS}</script></body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _about(summary: dict[str, Any]) -> str:
    c, emb, fid = summary["counts"], summary["embedder"], summary["fidelity"]
    backend = summary["backend"]
    thresholds = f" (thresholds {json.dumps(emb['thresholds'])})" if emb.get("thresholds") else ""
    return (
        "<ul>"
        f"<li>{c['ideas']} ideas x {c['configs']} configurations x {c['seeds']} seeds: "
        f"{c['images']} images</li>"
        f"<li>backend: {html.escape(backend['kind'])} {html.escape(backend.get('model') or '')}</li>"
        f"<li>diversity embedder: <b>{html.escape(emb['name'])}</b>{html.escape(thresholds)}</li>"
        f"<li>fidelity: <b>{html.escape(fid['method'])}</b>: {html.escape(fid['about'])}</li>"
        f"<li>intervals: bootstrap 95% over ideas; differences paired by idea against "
        f"<b>{html.escape(summary['baseline'])}</b></li></ul>"
    )


def images_per_second(worker: dict[str, Any]) -> float:
    """A worker's throughput: images per busy second (0 when it recorded no time)."""
    per_image = worker.get("seconds_per_image")
    return 1 / per_image if per_image else 0.0


def _workers_table(workers: dict[str, dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(str(w['node'] or ''))}</td>"
        f"<td>{html.escape(str(w['device'] or ''))}</td><td class='num'>{w['jobs']}</td>"
        f"<td class='num'>{w['images']}</td><td class='num'>{w['seconds_busy']:.1f}</td>"
        f"<td class='num'>{images_per_second(w):.2f}</td></tr>"
        for name, w in workers.items()
    )
    return (
        "<h3>Workers</h3><table><thead><tr><th>worker</th><th>node</th><th>device</th>"
        "<th>jobs</th><th>images</th><th>busy s</th><th>images per busy s</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _config_table(summary: dict[str, Any], keys: tuple[str, ...]) -> str:
    head = "".join(f"<th>{html.escape(LABELS[k])}</th>" for k in keys)
    rows = []
    for name, entry in summary["configs"].items():
        cells = "".join(_metric_cell(k, entry["metrics"][k]) for k in keys)
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{html.escape(entry['strategy'])}</td>{cells}</tr>"
        )
    return (
        f"<table class='sortable'><thead><tr><th>config</th><th>strategy</th>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


LOWER_IS_BETTER = {"near_duplicate_rate", "rut_rate", *COST_KEYS}


def _metric_cell(key: str, metric: dict[str, Any]) -> str:
    interval, diff = metric["interval"], metric["vs_baseline"]
    if interval is None:
        return "<td class='num'>n/a</td>"
    digits = 1 if key in COST_KEYS and key not in TIMING_KEYS else 3
    text = f"{interval['mean']:.{digits}f}"
    ci = f"[{interval['low']:.{digits}f}, {interval['high']:.{digits}f}]"
    if diff is not None:
        sign = -1 if key in LOWER_IS_BETTER else 1
        cls = ""
        if diff["low"] > 0 or diff["high"] < 0:  # interval excludes 0
            cls = "better" if sign * diff["mean"] > 0 else "worse"
        ci += f"<br><span class='{cls}'>&Delta; {diff['mean']:+.{digits}f} "
        ci += f"[{diff['low']:+.{digits}f}, {diff['high']:+.{digits}f}]</span>"
    return (
        f"<td class='num' data-v='{interval['mean']}'>{text}<br><span class='ci'>{ci}</span></td>"
    )


def _events(events: list[dict[str, Any]]) -> str:
    if not events:
        return "<p>No ruts in the final images, and no escapes.</p>"
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(e.get(k, '')))}</td>"
            for k in ("idea", "config", "kind", "detail")
        )
        + "</tr>"
        for e in events
    )
    return (
        "<table><thead><tr><th>idea</th><th>config</th><th>event</th><th>detail</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _failures(failed: list[dict[str, Any]]) -> str:
    if not failed:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(f['idea'])}</td><td>{html.escape(f['config'])}</td>"
        f"<td>{html.escape(str(f['seeds']))}</td><td>{html.escape(f['error'])}</td></tr>"
        for f in failed
    )
    return (
        "<h2>Failed jobs</h2><p>Left out of the figures; <code>--resume</code> tries them again.</p>"
        "<table><thead><tr><th>idea</th><th>config</th><th>seeds</th><th>error</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _contact_sheets(
    summary: dict[str, Any], suite: Suite, records: list[dict[str, Any]], root: Path
) -> str:
    groups = group_records(records)
    sheets = []
    for idea in suite.ideas:
        rows = []
        for config in suite.configs:
            members = groups.get((config, idea.id), [])
            figures = summary["per_idea"].get(config, {}).get(idea.id)
            label = html.escape(config)
            if figures:
                cls = " class='rut'" if figures["verdict"] == "rut" else ""
                label += f"<br><span{cls}>{html.escape(_figure_line(figures))}</span>"
            cells = "".join(_thumb_cell(root, r) for r in members)
            rows.append(f"<tr><td style='text-align:left;width:180px'>{label}</td>{cells}</tr>")
        sheets.append(
            f"<h3>{html.escape(idea.id)}</h3><p>{html.escape(idea.text)}</p>"
            f"<table class='sheet'>{''.join(rows)}</table>"
        )
    return "\n".join(sheets)


def _thumb_cell(root: Path, record: dict[str, Any]) -> str:
    title = html.escape(record["description"][:300], quote=True)
    data = thumbnail_b64(root / record["image"])
    return (
        f"<td><img alt='seed {record['seed']}' title='{title}' "
        f"src='data:image/jpeg;base64,{data}'>seed {record['seed']}</td>"
    )


def thumbnail_b64(path: Path, size: int = THUMB_PX) -> str:
    from PIL import Image

    with Image.open(path) as img:
        thumb = img.convert("RGB")
        thumb.thumbnail((size, size))
        buf = io.BytesIO()
        thumb.save(buf, format="JPEG", quality=85)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plot_png(summary: dict[str, Any]) -> str:
    """Fidelity (y) against mean pairwise distance (x) per configuration, with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=100)
    measured = any(e["metrics"]["fidelity"]["interval"] for e in summary["configs"].values())
    try:
        for name, entry in summary["configs"].items():
            div = entry["metrics"]["mean_distance"]["interval"]
            fid = entry["metrics"]["fidelity"]["interval"]
            if div is None:
                continue
            y = fid["mean"] if fid else 0.0  # unmeasured fidelity: drawn on the axis, labelled
            ax.errorbar(
                div["mean"],
                y,
                xerr=[[div["mean"] - div["low"]], [div["high"] - div["mean"]]],
                yerr=[[y - fid["low"]], [fid["high"] - y]] if fid else None,
                fmt="o",
                capsize=4,
                label=name,
            )
            ax.annotate(name, (div["mean"], y), textcoords="offset points", xytext=(6, 6))
        ax.set_xlabel(f"diversity: mean pairwise distance ({summary['embedder']['name']})")
        ax.set_ylabel(
            f"fidelity ({summary['fidelity']['method']})"
            if measured
            else "fidelity not measured (no locked attributes, no CLIP)"
        )
        ax.grid(alpha=0.3)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


# -- compare -------------------------------------------------------------------------------------
def load_summary(run_dir: str | Path) -> dict[str, Any]:
    """A run's summary.json, checked to hold what `compare` reads."""
    path = Path(run_dir) / "summary.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        _SummaryShape.model_validate(data)
        return data
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(the top level)"
        raise UserError(
            f"{path} is not an eval summary: {field}: {first['msg']}",
            hint="give the output folder of a finished `zit eval` run, its summary.json unedited",
        ) from None
    except FileNotFoundError:
        raise UserError(
            f"no summary.json in {run_dir}",
            hint="give the output folder of a finished `zit eval` run ({resume} finishes one)",
        ) from None
    except (OSError, ValueError) as err:  # unreadable, not UTF-8, not JSON
        raise UserError(f"cannot read {path}: {err}") from None
    except RecursionError:  # JSON nested 100,000 deep
        raise UserError(
            f"cannot read {path}: it is nested too deeply to be a summary",
            hint="give the output folder of a finished `zit eval` run, its summary.json unedited",
        ) from None


class _Interval(BaseModel):
    mean: float
    low: float
    high: float


class _Metric(BaseModel):
    interval: _Interval | None = None


class _Figures(BaseModel):
    metrics: dict[str, _Metric]


class _SummaryShape(BaseModel):
    """The part of summary.json that `compare` reads (other keys may hold anything)."""

    configs: dict[str, _Figures]


def compare(run_a: str | Path, run_b: str | Path) -> dict[str, Any]:
    """Differences between two runs, config by config: B minus A for each metric's mean, and
    whether the two 95% intervals are apart (`separated`)."""
    a, b = load_summary(run_a), load_summary(run_b)
    configs = {}
    for name in [n for n in a["configs"] if n in b["configs"]]:
        rows = {}
        for key in (*HEADLINE, *COST_KEYS):
            ia = a["configs"][name]["metrics"].get(key, {}).get("interval")
            ib = b["configs"][name]["metrics"].get(key, {}).get("interval")
            if ia is None or ib is None:
                continue
            apart = ia["high"] < ib["low"] or ib["high"] < ia["low"]
            rows[key] = {"a": ia["mean"], "b": ib["mean"], "b_minus_a": ib["mean"] - ia["mean"],
                         "separated": apart}  # fmt: skip
        configs[name] = rows
    settings = ("suite", "suite_digest", "backend", "embedder", "fidelity", "counts")
    return {
        "a": str(run_a),
        "b": str(run_b),
        "settings_differ": {
            k: {"a": a.get(k), "b": b.get(k)} for k in settings if a.get(k) != b.get(k)
        },  # fmt: skip
        "only_in_a": [n for n in a["configs"] if n not in b["configs"]],
        "only_in_b": [n for n in b["configs"] if n not in a["configs"]],
        "configs": configs,
    }
