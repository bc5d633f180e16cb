"""`zit serve`'s own cost, over loopback HTTP.

- `serve`: seconds per image through `POST /v1/images/generations` of a `zit serve` process (HTTP,
  the job queue, the history record, the PNG as base64) against the run API called directly in this
  process for the same image, interleaved: `Runner.render_plain` on a tiny random Z-Image at
  256x256 with Turbo's 8 steps, and `Runner.generate` on the sketch stand-in at 64x64 (where the
  render itself costs about a millisecond, so the figure is mostly the server's fixed cost);
- queue latency under load (a server in this process, to read its jobs' times): 200 requests from
  12 clients at once (sketch, one image each): p50 and p95 of the time each job waited in the
  queue, against the time a job runs. With 12 clients at most 11 jobs are ahead of any, so the wait
  should stay under 12 run times: the queue adds no wait of its own.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.core import Figure, benchmark, interleaved

IDEA = "a portrait of a woman in a cafe"
CLIENTS = 12


class _Process:
    """`zit serve --port 0 ARGS` in its own process, as a user runs it."""

    def __init__(self, home: Path, args: list[str]):
        env = {**os.environ, "ZIT_HOME": str(home)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zit_agent.agent", "serve", "--port", "0", *args],
            stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        for line in self.proc.stderr:
            found = re.search(r"ready at (http://\S+)/ ", line)
            if found:
                self.url = found.group(1)
                return
        raise RuntimeError(f"zit serve did not start (exit {self.proc.wait()})")

    def __enter__(self) -> _Process:
        return self

    def __exit__(self, *exc) -> None:
        self.proc.kill()
        self.proc.wait()


class _Live:
    """uvicorn serving `app` on a free loopback port, in a thread of this process."""

    def __init__(self, app):
        import uvicorn

        from zit_agent.agent.cli.serve import bind

        self.sock = bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    def __enter__(self) -> _Live:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(60)


def cli_options(args: list[str]):
    """The run options of a `zit serve` command line of `--flag value` pairs."""
    from zit_agent.options import run_options

    flags, values = args[0::2], args[1::2]
    return run_options(**{f[2:].replace("-", "_"): v for f, v in zip(flags, values, strict=True)})


def _overhead(settings, args: list[str], direct, label: str, repeats: int) -> Figure:
    import httpx

    from zit_agent.agent.run import Runner

    runner = Runner.load(settings, cli_options(args), ruts=True)
    seeds = iter(range(10**6))
    with _Process(settings.home / "served", args) as served, httpx.Client(
        base_url=served.url, timeout=120
    ) as http:  # fmt: skip

        def through_server():
            body = {"prompt": IDEA, "seed": next(seeds), "ruts": False, "n": 1}
            answer = http.post("/v1/images/generations", json=body)
            assert answer.status_code == 200, answer.text

        t = interleaved(
            {"server": through_server, "direct": lambda: direct(runner, next(seeds))},
            repeats=repeats, warmup=2,
        )  # fmt: skip
    overhead_ms = 1000 * (t["server"].median - t["direct"].median)
    return Figure(
        f"one image through zit serve ({label})", t["server"].median, "s",
        t["direct"].median, "the run API called directly", target="ratio <= 1.05",
        met=t["server"].median <= 1.05 * t["direct"].median, spread=t["server"].spread,
        extra={"overhead_ms": round(overhead_ms, 2), "repeats": repeats,
               "direct_spread": round(t["direct"].spread, 3)},
    )  # fmt: skip


def _queue_latency(settings, options, requests: int) -> list[Figure]:
    import httpx

    from zit_agent.agent.run import Runner
    from zit_agent.agent.serve import create_app

    runner = Runner.load(settings, options, ruts=True)
    app = create_app(settings, options, runner=runner, queue_size=CLIENTS)
    with _Live(app) as live, httpx.Client(
        base_url=live.url, timeout=120, limits=httpx.Limits(max_connections=CLIENTS * 2)
    ) as http:  # fmt: skip

        def ask(seed: int) -> float:
            start = time.perf_counter()
            answer = http.post(
                "/v1/images/generations",
                json={"prompt": f"idea {seed % 9}", "seed": seed, "response_format": "url"},
            )
            assert answer.status_code == 200, answer.text
            return time.perf_counter() - start

        with ThreadPoolExecutor(CLIENTS) as pool:
            latencies = sorted(pool.map(ask, range(requests)))
        jobs = list(app.state.zit.jobs._jobs.values())[-requests:]
    waits = sorted(job.started - job.created for job in jobs)
    service = statistics.median(job.finished - job.started for job in jobs)
    extra = {
        "requests": requests, "clients": CLIENTS,
        "end_to_end_p50_s": round(_percentile(latencies, 50), 4),
        "end_to_end_p95_s": round(_percentile(latencies, 95), 4),
    }  # fmt: skip
    return [
        Figure(
            f"queue wait p{q} ({requests} requests, {CLIENTS} clients, sketch 64x64)",
            _percentile(waits, q),
            "s",
            service,
            "one job's run time (median)",
            target=f"< {CLIENTS} x run time",
            met=_percentile(waits, q) < CLIENTS * service,
            extra=extra,
        )  # fmt: skip
        for q in (50, 95)
    ]


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


@benchmark("serve")
def serve(quick: bool) -> list[Figure]:
    from zit_agent.agent.session import open_checkpointer
    from zit_agent.backends.tiny.zimage import build_tiny_zimage
    from zit_agent.settings import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(home=str(Path(tmp) / "home"))
        model = build_tiny_zimage(Path(tmp) / "zimage")
        zimage = ["--image-model", str(model), "--size", "256x256", "--steps", "8"]
        sketch = ["--backend", "sketch", "--size", "64x64", "--count", "1"]
        out = settings.outputs_dir / "direct"
        repeats = 5 if quick else 15
        with open_checkpointer(settings.sessions_db) as saver:  # one, as the server has

            def plain(runner, seed):
                options = cli_options(zimage).model_copy(update={"seed": seed})
                runner.render_plain(IDEA, options, out_dir=out)

            def looped(runner, seed):
                options = cli_options(sketch).model_copy(update={"seed": seed})
                runner.generate(
                    IDEA, options, out_dir=out, ruts=False, checkpointer=saver,
                    run_id=f"direct-{seed}",
                )  # fmt: skip

            return [
                _overhead(settings, zimage, plain, "tiny Z-Image, 256x256, 8 steps", repeats),
                _overhead(settings, sketch, looped, "sketch stand-in, 64x64", 3 * repeats),
                *_queue_latency(settings, cli_options(sketch), 60 if quick else 200),
            ]
