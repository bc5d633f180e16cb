"""The benchmark runner's parts: timing, the registry, and the results file.

A benchmark is a function `bench(quick: bool) -> list[Figure]` registered with `@benchmark(name)` in
a module `benchmarks/bench_<area>.py`. Each figure compares a measured thing against a baseline
measured in the same run (`ratio = value / baseline`), so machine noise mostly cancels; when the
two ran in turn (`interleaved`), the ratio is the median of the pair-by-pair ratios (`paired`), which
a machine's drift over the run does not move.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

REGISTRY: dict[str, Callable[[bool], list[Figure]]] = {}


@dataclass
class Timing:
    median: float
    spread: float  # (max - min) / median over the repeats
    repeats: int
    samples: list[float] = field(default_factory=list, repr=False)

    @classmethod
    def of(cls, samples: list[float]) -> Timing:
        med = statistics.median(samples)
        spread = (max(samples) - min(samples)) / med if med else 0.0
        return cls(median=med, spread=spread, repeats=len(samples), samples=list(samples))


def spread_of(values: list[float]) -> float | None:
    """(max - min) / median, or None for a figure measured once (no spread to tell)."""
    if len(values) < 2:
        return None
    median = statistics.median(values)
    return (max(values) - min(values)) / median if median else None


def paired(a: Timing, b: Timing) -> Timing:
    """The ratios a/b of runs made in turn (`interleaved`), pair by pair."""
    if len(a.samples) != len(b.samples) or not a.samples:
        raise ValueError("paired ratios need the same number of runs on both sides")
    return Timing.of([x / y for x, y in zip(a.samples, b.samples, strict=True)])


@dataclass
class Figure:
    """One measured figure. `unit` is for value and baseline (s, tokens/s, MB...)."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str | None = None
    target: str | None = None  # e.g. "ratio >= 0.95"
    met: bool | None = None
    spread: float | None = None
    extra: dict = field(default_factory=dict)
    paired_ratio: float | None = None  # the median of pair-by-pair ratios, when they ran in turn

    @property
    def ratio(self) -> float | None:
        if self.paired_ratio is not None:
            return self.paired_ratio
        return self.value / self.baseline if self.baseline else None

    def to_json(self) -> dict:
        data = asdict(self)
        data["ratio"] = self.ratio
        return data


def benchmark(name: str):
    def register(fn: Callable[[bool], list[Figure]]):
        REGISTRY[name] = fn
        return fn

    return register


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> Timing:
    """Wall time of `fn()` over `repeats` runs after `warmup` unmeasured ones."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return Timing.of(samples)


def interleaved(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1
) -> dict[str, Timing]:
    """Time several callables in alternation (A B A B ...), so drift hits all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: Timing.of(s) for name, s in samples.items()}
