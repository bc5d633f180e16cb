"""`python -m benchmarks.table RESULTS.json [--update FILE ...]`: one results file as Markdown.

The figures in README.md and docs/performance.md are this tool's output for one run of
`python -m benchmarks --quick`, between markers, so each table is one run's, with the machine, its
load average and each figure's spread beside it:

    <!-- benchmarks:targets -->   ...   <!-- /benchmarks -->    the figures that have a target
    <!-- benchmarks:all -->       ...   <!-- /benchmarks -->    every figure

Without `--update` the tables are printed; with it, the marked parts of each file are rewritten
(atomically). A test checks that the marked parts match the results file they name.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MARKED = re.compile(r"(<!-- benchmarks:(targets|all) -->\n)(.*?)(<!-- /benchmarks -->)", re.S)
COLUMNS = ("benchmark", "figure", "measured", "baseline (same run)", "ratio", "spread", "target",
           "met")  # fmt: skip


def number(value: float | None, unit: str = "") -> str:
    """Four significant digits; seconds under one as milliseconds."""
    if value is None:
        return ""
    if unit == "s" and abs(value) < 1:
        value, unit = value * 1e3, "ms"
    text = f"{value:,.4g}" if abs(value) >= 1e4 else f"{value:.4g}"
    return f"{text} {unit}".strip()


def source_line(results: dict[str, Any], name: str) -> str:
    machine = results["machine"]
    libraries = ", ".join(f"{k} {v}" for k, v in machine["libraries"].items() if v)
    load = results["load_average"]
    kind = "`python -m benchmarks --quick`" if results["quick"] else "`python -m benchmarks`"
    return (
        f"From `{name}`: one {kind} on {machine['cpu']}, {machine['cores']} cores "
        f"(Python {machine['python']}; {libraries}); load average before "
        f"{'/'.join(f'{x:.1f}' for x in load['before'])}, after "
        f"{'/'.join(f'{x:.1f}' for x in load['after'])} (1/5/15 min); "
        f"{results['seconds']['total']:.0f} s of benchmarks. Spread: (max - min) / median over "
        "the repeats (of the pair-by-pair ratios where two ran in turn); blank: measured once."
    )


def table(results: dict[str, Any], name: str, selection: str) -> str:
    rows = [f"| {' | '.join(COLUMNS)} |", f"|{'---|' * len(COLUMNS)}"]
    for bench, figures in results["results"].items():
        for f in figures:
            if selection == "targets" and not f["target"]:
                continue
            baseline = number(f["baseline"], f["unit"])
            if baseline and f["baseline_name"]:
                baseline += f" ({f['baseline_name']})"
            cells = (
                bench,
                f["name"],
                number(f["value"], f["unit"]),
                baseline,
                "" if f["ratio"] is None else f"{f['ratio']:.3f}",
                "" if f["spread"] is None else f"{f['spread']:.0%}",
                f["target"] or "",
                {True: "yes", False: "**no**", None: ""}[f["met"]],
            )
            rows.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return source_line(results, name) + "\n\n" + "\n".join(rows) + "\n"


def update(text: str, results: dict[str, Any], name: str) -> str:
    """`text` with every marked part replaced by this results file's table."""
    return MARKED.sub(lambda m: m[1] + table(results, name, m[2]) + m[4], text)


def marked_source(text: str) -> str | None:
    """The results file a marked part was made from (its first line names it)."""
    found = re.search(r"<!-- benchmarks:\w+ -->\nFrom `([^`]+)`", text)
    return found[1] if found else None


def main(argv: list[str] | None = None) -> int:
    from zit_agent.files import write_text_atomic

    parser = argparse.ArgumentParser(prog="python -m benchmarks.table", description=__doc__)
    parser.add_argument("results", type=Path, help="a results file of python -m benchmarks")
    parser.add_argument("--update", type=Path, nargs="+", metavar="FILE", default=[],
                        help="rewrite the marked parts of these files")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        results = json.loads(args.results.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        parser.error(f"cannot read {args.results}: {err}")
    name = str(args.results.resolve().relative_to(ROOT)) if args.results.resolve().is_relative_to(
        ROOT) else str(args.results)  # fmt: skip
    if not args.update:
        print(table(results, name, "all"))
        return 0
    for path in args.update:
        text = path.read_text(encoding="utf-8")
        if not MARKED.search(text):
            parser.error(f"{path} has no <!-- benchmarks:targets|all --> part to update")
        write_text_atomic(path, update(text, results, name))
        print(f"updated {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
