"""`python -m benchmarks [--quick] [--only NAME ...]`: run the benchmarks, print a table, and write
`benchmarks/results/<machine>-<date>.json`."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import pkgutil
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

from benchmarks.core import REGISTRY, Figure
from zit_agent.files import write_json_atomic

RESULTS = Path(__file__).parent / "results"
LIBRARIES = (
    "torch",
    "diffusers",
    "transformers",
    "llama_cpp_python",
    "langgraph",
    "numpy",
    "imagehash",
)


def discover() -> None:
    for mod in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if mod.name.startswith("bench_"):
            importlib.import_module(f"benchmarks.{mod.name}")


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "libraries": versions,
    }


def print_table(results: dict[str, list[Figure]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="benchmarks")
    for col in ("benchmark", "figure", "value", "baseline", "ratio", "target", "met"):
        table.add_column(col)
    for bench, figures in results.items():
        for f in figures:
            table.add_row(
                bench,
                f.name,
                f"{f.value:.4g} {f.unit}",
                f"{f.baseline:.4g} ({f.baseline_name})" if f.baseline is not None else "",
                f"{f.ratio:.3f}" if f.ratio is not None else "",
                f.target or "",
                {True: "yes", False: "NO", None: ""}[f.met],
            )
    Console(width=None if sys.stdout.isatty() else 160).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller sizes")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks")
    parser.add_argument("--out", type=Path, help="results file (default: benchmarks/results/...)")
    args = parser.parse_args(argv)

    discover()
    names = args.only or sorted(REGISTRY)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {', '.join(sorted(REGISTRY))}")
    results: dict[str, list[Figure]] = {}
    seconds: dict[str, float] = {}
    load_before = os.getloadavg()  # other work on the machine, for reading the figures
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        results[name] = REGISTRY[name](args.quick)
        seconds[name] = round(time.perf_counter() - start, 1)
        print(f"{name}: {seconds[name]} s", file=sys.stderr, flush=True)
    print_table(results)

    info = machine()
    stamp = dt.datetime.now(dt.UTC)
    slug = "".join(c if c.isalnum() else "-" for c in info["cpu"]).strip("-")[:40] or "machine"
    out = args.out or RESULTS / f"{slug}-{info['cores']}c-{stamp:%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": info,
        "date": stamp.isoformat(),
        "quick": args.quick,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "seconds": {"total": round(sum(seconds.values()), 1), **seconds},
        "results": {k: [f.to_json() for f in v] for k, v in results.items()},
    }
    write_json_atomic(out, payload)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
