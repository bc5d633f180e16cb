"""Evals on Ray (`evals.distributed`) against the same eval in one process, on a CPU-bound suite
(the sketch stand-in at 1536 px: drawing and PNG encoding, one core each).

- speedup: 2 Ray workers against 1, in seconds per job;
- per-job overhead: 1 Ray worker against the in-process loop (target <= 1.05x).

Worker start-up (a process, imports, models) is a cost per run, not per job, and it varies by
seconds, so the per-job figures are steady-state: the time between the first and the last job
recorded after every worker was ready, over the jobs recorded in between. The start-up is
reported on its own. Starting Ray costs seconds, so `--quick` skips this benchmark.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.core import Figure, Timing, benchmark

IDEAS = ["a red fox", "a bowl of ramen", "a lighthouse", "an old typewriter", "a barn owl",
         "a blue teapot", "a desert road", "a chess board"]  # fmt: skip
SIZE = 1536


def _suite(seeds: int):
    from zit_agent.evals.suite import Suite

    return Suite.model_validate(
        {
            "name": "bench-ray",
            "seeds": list(range(seeds)),
            "fidelity": "attributes",
            "backend": {"kind": "sketch", "width": SIZE, "height": SIZE},
            "ideas": [{"id": f"i{n}", "text": text} for n, text in enumerate(IDEAS)],
            "configs": {"raw": {"strategy": "raw"}},
        }
    )


def _per_job_seconds(suite, root: Path, executor) -> float:
    """Steady-state seconds per job of one run of the job loop."""
    from zit_agent.evals.runner import Progress, RunContext, RunFolder, manifest, plan, run_locally

    class Clock(Progress):  # the moments jobs are recorded (the loop advances once per job)
        def __init__(self) -> None:
            super().__init__(total=0, done=0, quiet=True)
            self.times: list[float] = []

        def advance(self, images: int) -> None:
            self.times.append(time.perf_counter())

    folder = RunFolder(root)
    jobs = plan(suite)
    folder.write_json("manifest.json", manifest(jobs))
    run = RunContext(suite)
    clock = Clock()
    start = time.perf_counter()
    if executor is None:
        run_locally(jobs, run, folder, clock)
        ready = start + 0.0  # models load before the first job: skip that job below
    else:
        executor(jobs, run, folder, clock)
        ready = start + executor.startup_s
    after = [t for t in clock.times if t > ready][1:]
    return (after[-1] - after[0]) / (len(after) - 1)


@benchmark("ray")
def ray_eval(quick: bool) -> list[Figure]:
    if quick:
        print("ray: skipped under --quick (starts Ray and worker processes)", file=sys.stderr)
        return []
    import ray

    from zit_agent.evals.distributed import RayExecutor, RaySpec

    suite = _suite(seeds=4)  # 32 jobs
    root = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    start = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")  # fmt: skip
    ray_start = time.perf_counter() - start
    runs = {"in-process": None, "ray-1": 1, "ray-2": 2}
    samples: dict[str, list[float]] = {name: [] for name in runs}
    startups: list[float] = []
    try:
        for repeat in range(3):
            for name, workers in runs.items():
                executor = None if workers is None else RayExecutor(RaySpec(workers=workers))
                out = root / f"{name}-{repeat}"
                samples[name].append(_per_job_seconds(suite, out, executor))
                shutil.rmtree(out, ignore_errors=True)
                if executor is not None:
                    startups.append(executor.startup_s)
    finally:
        ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)
    t = {name: Timing.of(values) for name, values in samples.items()}
    details = {"size": f"{SIZE}x{SIZE}", "jobs": len(suite.ideas) * len(suite.seeds),
               "repeats": 3, "cores": 2}  # fmt: skip
    return [
        Figure(
            "2 Ray workers vs 1: seconds per job",
            t["ray-2"].median,
            "s",
            baseline=t["ray-1"].median,
            baseline_name="1 Ray worker",
            spread=max(t["ray-2"].spread, t["ray-1"].spread),
            extra={**details, "speedup": t["ray-1"].median / t["ray-2"].median},
        ),
        Figure(
            "1 Ray worker vs in-process: seconds per job",
            t["ray-1"].median,
            "s",
            baseline=t["in-process"].median,
            baseline_name="the in-process job loop",
            target="ratio <= 1.05",
            met=t["ray-1"].median <= 1.05 * t["in-process"].median,
            spread=max(t["ray-1"].spread, t["in-process"].spread),
            extra=details,
        ),
        Figure(
            "Ray run start-up (workers start and load their models)",
            statistics.median(startups),
            "s",
            spread=Timing.of(startups).spread,
            extra={"local_ray_init_s": round(ray_start, 2)},
        ),
    ]
