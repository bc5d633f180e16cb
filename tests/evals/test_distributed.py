"""Evals on Ray (`evals.distributed`): a local Ray with 2 CPU workers gives the results of a run in
one process (names, bytes, records, summary); a worker killed mid-run is replaced and every image
is there once; a hung worker is given up and replaced; workers that cannot start stop the run; a
killed driver's run resumes; a lost node (its agent killed) ends the driver with one line, exit 3,
and the run resumes; bad or silent addresses and a missing Ray are one line, exit 2.

One local Ray instance serves the module (starting one costs seconds): in-process runs use it, and
`zit eval --ray ADDRESS` subprocesses connect to it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.cli_helpers import run_zit
from tests.evals.helpers import (
    REPO,
    jobs_done,
    sketch_suite,
    without_timings,
    write_suite,
    zit,
)
from zit_agent.evals.runner import RunContext, run_suite
from zit_agent.evals.suite import Suite

pytestmark = pytest.mark.slow  # starts Ray and worker processes

IDEAS = [
    {"id": f"idea{n}", "text": text, "locked": [text.split()[-1]]}
    for n, text in enumerate(
        ["a red fox", "a bowl of ramen", "a lighthouse", "an old typewriter", "a barn owl"]
    )
]
SUITE = sketch_suite(
    ideas=IDEAS,
    configs={"raw": {"strategy": "raw"}, "agent": {"strategy": "agent", "max_attempts": 2}},
    backend={"kind": "sketch", "width": 96, "height": 96},
)  # 5 ideas x (raw per seed + agent per idea) = 15 jobs, 20 images


@pytest.fixture(scope="module")
def ray_address() -> str:
    try:
        import ray
    except ImportError:
        pytest.fail('Ray is not installed: install the test extra (pip install -e ".[test]")')
    context = ray.init(
        address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
        logging_level="ERROR",
    )  # fmt: skip
    yield context.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, qwen_tokenizer) -> Path:
    """SUITE in this process: what every Ray run must equal."""
    suite = Suite.model_validate(SUITE)
    out = tmp_path_factory.mktemp("local") / "run"
    run_suite(suite, out, quiet=True, context=RunContext(suite, tokenizer=qwen_tokenizer))
    return out


def ray_run(out: Path, data: dict = SUITE, *, shared_storage=False, on_outcome=None) -> tuple:
    """`data` on the module's Ray with 2 workers: (the run's result, the executor)."""
    from zit_agent.evals.distributed import RayExecutor, RaySpec

    suite = Suite.model_validate(data)
    spec = RaySpec(workers=2, shared_storage=shared_storage)
    executor = RayExecutor(spec, on_outcome=on_outcome)
    result = run_suite(suite, out, quiet=True, context=RunContext(suite), execute=executor)
    return result, executor


def image_names(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "images").iterdir())


def records(out: Path) -> dict[str, dict]:
    lines = (out / "per_image.jsonl").read_text().splitlines()
    return {r["image"]: _without_backend_timings(r) for r in map(json.loads, lines)}


def _without_backend_timings(record: dict) -> dict:
    record = without_timings(record)
    record["cost"].pop("seconds")
    record["backend"].pop("timings", None)
    return record


def summary_of(out: Path) -> dict:
    """summary.json without wall-clock figures and the cost section (who ran what)."""
    summary = json.loads((out / "summary.json").read_text())
    summary.pop("cost")
    return without_timings(summary)


def assert_same_results(out: Path, expected: Path, *, same_files: bool = True) -> None:
    names = image_names(out)
    assert names == image_names(expected)
    assert len([n for n in names if n.endswith(".png")]) == len(records(expected))
    if same_files:  # PNGs and provenance byte for byte (no timings in the sketch's records)
        for name in names:
            assert (out / "images" / name).read_bytes() == (expected / "images" / name).read_bytes()
    assert records(out) == records(expected)
    assert summary_of(out) == summary_of(expected)
    work = sorted(str(p.relative_to(out)) for p in (out / "work").rglob("*"))
    assert work == sorted(str(p.relative_to(expected)) for p in (expected / "work").rglob("*"))


@pytest.mark.parametrize("shared_storage", [False, True], ids=["images-return", "shared-storage"])
def test_two_workers_give_the_single_process_results(
    tmp_path, ray_address, local_run, shared_storage
):
    result, executor = ray_run(tmp_path / "run", shared_storage=shared_storage)
    assert_same_results(tmp_path / "run", local_run)
    workers = result.summary["cost"]["workers"]
    # jobs go to whichever worker is free (one that loads late may get few or none)
    assert workers and set(workers) <= {"ray-0", "ray-1"} and executor.lost == 0
    assert sum(w["images"] for w in workers.values()) == len(records(local_run))
    assert all(w["jobs"] and w["seconds_per_image"] > 0 for w in workers.values())
    # a worker still loading when the jobs ran out has reported no pid yet (a busy machine)
    loaded = [w for w in executor.workers if "pid" in w]
    assert loaded and {w["pid"] for w in loaded}.isdisjoint({os.getpid()})


def test_a_worker_killed_mid_run_is_replaced_and_each_image_is_there_once(
    tmp_path, ray_address, local_run
):
    killed: list[int] = []

    def kill_until_a_job_is_lost(job, outcome) -> None:
        # The worker that just finished holds its next job (one runs, one waits per worker);
        # that job may still finish before the signal lands, so kill again until one is lost.
        pid = outcome.worker["pid"]
        if not executor.lost and pid not in killed and len(killed) < 3:
            killed.append(pid)
            os.kill(pid, signal.SIGKILL)

    from zit_agent.evals.distributed import RayExecutor, RaySpec

    suite = Suite.model_validate(SUITE)
    executor = RayExecutor(RaySpec(workers=2), on_outcome=kill_until_a_job_is_lost)
    result = run_suite(suite, tmp_path / "run", quiet=True, context=RunContext(suite),
                       execute=executor)  # fmt: skip
    assert executor.lost >= 1
    started = [w["name"] for w in executor.workers]
    assert started == [f"ray-{n}" for n in range(2 + len(killed))]  # one replacement per kill
    done_by = result.summary["cost"]["workers"]
    assert sum(w["jobs"] for w in done_by.values()) == 15  # the lost jobs ran elsewhere, once
    assert_same_results(tmp_path / "run", local_run)


def test_a_killed_driver_resumes_on_the_cluster(tmp_path, ray_address, local_run):
    suite = write_suite(tmp_path / "suite.yaml", SUITE)
    out = tmp_path / "run"
    args = ["eval", str(suite), "--out", str(out), "--ray", ray_address, "--quiet"]
    driver = subprocess.Popen(
        [sys.executable, "-m", "zit_agent.agent", *args], cwd=REPO, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while jobs_done(out) < 3 and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    assert 3 <= jobs_done(out) < 15, "the driver was not killed mid-run"
    finished = zit(*args, "--resume")
    assert finished.returncode == 0, finished.stderr
    assert_same_results(out, local_run)


def test_a_hung_worker_is_given_up_and_its_jobs_run_elsewhere(tmp_path, ray_address, local_run):
    stopped: list[int] = []

    def stop_one_worker(job, outcome) -> None:
        # SIGSTOP: the worker neither dies nor answers, and holds its next job (as a hung one)
        if not stopped:
            stopped.append(outcome.worker["pid"])
            os.kill(stopped[0], signal.SIGSTOP)

    from zit_agent.evals.distributed import RayExecutor, RaySpec

    suite = Suite.model_validate(SUITE)
    executor = RayExecutor(RaySpec(workers=2, job_timeout_s=5), on_outcome=stop_one_worker)
    try:
        result = run_suite(suite, tmp_path / "run", quiet=True, context=RunContext(suite),
                           execute=executor)  # fmt: skip
    finally:
        for pid in stopped:  # Ray killed it; a stopped process must not outlive a failed test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert executor.hung >= 1 and executor.lost >= 1
    assert sum(w["jobs"] for w in result.summary["cost"]["workers"].values()) == 15
    assert_same_results(tmp_path / "run", local_run)


def test_workers_that_cannot_start_stop_the_run_after_the_start_timeout(tmp_path, ray_address):
    """A cluster without the resources the workers ask for (as when a lost node never comes
    back): the run stops with one line instead of waiting for ever."""
    import ray

    from zit_agent.errors import ResourceExhausted
    from zit_agent.evals.distributed import ClusterLost, RayExecutor, RaySpec

    blocker = ray.remote(num_cpus=2)(type("Blocker", (), {"ping": lambda self: 1})).remote()
    ray.get(blocker.ping.remote(), timeout=60)  # holds both CPUs: no worker can be placed
    suite = Suite.model_validate(SUITE)
    executor = RayExecutor(RaySpec(workers=2, start_timeout_s=2))
    try:
        with pytest.raises(ClusterLost) as err:
            run_suite(suite, tmp_path / "run", quiet=True, context=RunContext(suite),
                      execute=executor)  # fmt: skip
    finally:
        ray.kill(blocker)
    assert isinstance(err.value, ResourceExhausted) and err.value.exit_code == 3
    assert str(err.value).startswith("no Ray worker started in 2 s")
    assert str(err.value).endswith(
        f"0 of 15 jobs are done and kept in {tmp_path / 'run'} (jobs.jsonl)"
    )
    assert "{resume}" in err.value.hint


LOST_NODE_BOUND_S = 30  # docs/scaling.md: a lost local node ends the driver within 30 s


def ray_agent_of(driver: subprocess.Popen, deadline: float) -> psutil.Process:
    """The `ray::DashboardAgent` of the local Ray that `driver` started (its raylet's child)."""
    while time.monotonic() < deadline and driver.poll() is None:
        for process in psutil.Process(driver.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if process.cmdline()[:1] == ["ray::DashboardAgent"]:
                    return process
        time.sleep(0.1)
    raise AssertionError("the driver's Ray has no ray::DashboardAgent process")


def test_a_lost_node_ends_the_driver_in_one_line_and_the_run_resumes(tmp_path, local_run):
    """`zit eval --workers 2` (a local Ray of its own): its node's agent killed mid-run, the
    raylet goes down with it (they fate-share), as when the machine of a node dies."""
    suite = write_suite(tmp_path / "suite.yaml", SUITE)
    out = tmp_path / "run"
    args = ["eval", str(suite), "--out", str(out), "--quiet"]
    driver = subprocess.Popen(
        [sys.executable, "-m", "zit_agent.agent", *args, "--workers", "2"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        agent = ray_agent_of(driver, deadline)
        while jobs_done(out) < 2 and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        agent.kill()
        stdout, stderr = driver.communicate(timeout=LOST_NODE_BOUND_S)
    finally:
        if driver.poll() is None:  # hung: end it and the Ray it started, not to outlive the test
            for process in [*psutil.Process(driver.pid).children(recursive=True), driver]:
                with contextlib.suppress(psutil.Error, ProcessLookupError):
                    process.kill()
            driver.communicate()
    done = jobs_done(out)
    assert 2 <= done < 15, "the node was not lost mid-run"
    assert driver.returncode == 3, stderr
    assert stdout == ""
    [line] = stderr.strip().splitlines()
    assert line.startswith("zit: error: the Ray cluster was lost: this machine's Ray node died")
    assert f"{done} of 15 jobs are done and kept in {out}" in line
    assert "run the same command again with --resume" in line
    finished = zit(*args, "--resume")  # in one process, from the journal
    assert finished.returncode == 0, finished.stderr
    assert_same_results(out, local_run)


def test_tiny_zimage_on_two_workers_gives_the_same_pixels(tmp_path, ray_address, tiny_zimage_dir):
    import torch
    from PIL import Image

    data = sketch_suite(
        backend={"kind": "zimage", "model": str(tiny_zimage_dir), "width": 64, "height": 64,
                 "steps": 2},
        ideas=[{"id": "fox", "text": "a red fox in the snow", "locked": ["red fox"]}],
        configs={"raw": {"strategy": "raw"}, "layer-3": {"strategy": "raw", "layer": -3}},
    )  # fmt: skip
    suite = Suite.model_validate(data)
    result, _ = ray_run(tmp_path / "ray", data)
    # Like with like: the single process renders with the torch threads a worker had (its share
    # of the cores; records say it), since pixels may move by a level with another thread count.
    [threads] = {r["backend"]["torch_threads"] for r in records(tmp_path / "ray").values()}
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        run_suite(suite, tmp_path / "local", quiet=True, context=RunContext(suite))
    finally:
        torch.set_num_threads(before)
    # PNG files differ by their recorded timings; the pixels and everything else are the same
    assert_same_results(tmp_path / "ray", tmp_path / "local", same_files=False)
    for name in [n for n in image_names(tmp_path / "local") if n.endswith(".png")]:
        pixels = [
            Image.open(d / "images" / name).tobytes()
            for d in (tmp_path / "local", tmp_path / "ray")
        ]
        assert pixels[0] == pixels[1]
    # the workers that ran jobs (one may still be loading when the other has done all four)
    assert {w["device"] for w in result.summary["cost"]["workers"].values()} == {"cpu"}


def test_an_unreachable_cluster_is_one_line_and_exit_2():
    result = zit("eval", "smoke", "--ray", "127.0.0.1:1")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in result.stderr


def test_a_head_that_never_answers_is_one_line_and_exit_2():
    """Something listens at the address but never answers (Ray's own client would retry it for
    minutes): refused within the connect timeout."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        result = zit("eval", "smoke", "--ray", f"127.0.0.1:{port}")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"zit: error: cannot reach the Ray cluster at 127.0.0.1:{port}: nothing answered within "
        "5 s (start it there with `ray start --head`, or check the address given to --ray)"
    ]


def test_a_ray_call_that_never_returns_is_a_lost_cluster():
    from zit_agent.errors import ResourceExhausted
    from zit_agent.evals.distributed import ClusterLost, _bounded

    assert _bounded(lambda: 7, 1, "a node check") == 7
    hung = threading.Event()
    with pytest.raises(ClusterLost, match="gave no answer to a node check in 0.2 s") as err:
        _bounded(hung.wait, 0.2, "a node check")
    hung.set()
    assert isinstance(err.value, ResourceExhausted) and err.value.exit_code == 3
    with pytest.raises(ClusterLost, match="failed a node check: GCS gone"):
        _bounded(lambda: (_ for _ in ()).throw(ConnectionError("GCS gone")), 1, "a node check")


def test_without_ray_the_flags_say_how_to_install_it(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    for flags in (["--workers", "2"], ["--ray", "auto"]):
        code, _, err = run_zit(capsys, "eval", "smoke", *flags)
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert 'Ray is not installed (install it with pip install "zit-agent[ray]")' in err


def test_the_smoke_suite_with_workers_2_equals_the_single_process_run(tmp_path, smoke_run):
    out = tmp_path / "run"
    env = {"ZIT_HOME": str(tmp_path / "home"), "ZIT_CONFIG": os.devnull}
    result = zit("eval", "smoke", "--out", str(out), "--workers", "2", "--quiet", env=env)
    assert result.returncode == 0, result.stderr
    assert_same_results(out, smoke_run)


def test_workers_take_a_gpu_each_or_a_share_of_the_cpus():
    from zit_agent.errors import UserError
    from zit_agent.evals.distributed import worker_shape

    assert worker_shape({"CPU": 16.0, "GPU": 4.0}, None) == (4, {"num_gpus": 1, "num_cpus": 4.0})
    assert worker_shape({"CPU": 16.0, "GPU": 4.0}, 2) == (2, {"num_gpus": 1, "num_cpus": 8.0})
    assert worker_shape({"CPU": 2.0}, None) == (2, {"num_gpus": 0, "num_cpus": 1.0})
    assert worker_shape({"CPU": 2.0}, 4) == (4, {"num_gpus": 0, "num_cpus": 0.5})
    with pytest.raises(UserError, match="8 workers need a GPU each and the cluster has 4"):
        worker_shape({"CPU": 16.0, "GPU": 4.0}, 8)


@pytest.mark.parametrize(
    ("address", "expected"),
    [("10.0.0.5:6379", ("10.0.0.5", 6379)), ("head", ("head", 6379)),
     ("ray://head:10001", ("head", 10001)), ("ray://head", ("head", 10001)),
     ("[::1]:6380", ("::1", 6380))],
)  # fmt: skip
def test_ray_addresses_name_a_host_and_a_port(address, expected):
    from zit_agent.evals.distributed import split_address

    assert split_address(address) == expected


def test_a_worker_that_does_not_see_the_shared_folder_says_so(tmp_path, qwen_tokenizer):
    from zit_agent.errors import UserError
    from zit_agent.evals.distributed import EvalWorker
    from zit_agent.options import flag_of
    from zit_agent.settings import load_settings

    suite = Suite.model_validate(SUITE)
    (tmp_path / "manifest.json").write_text('{"jobs": []}\n')
    worker = EvalWorker(suite, load_settings(), "ray-0", shared_root=str(tmp_path))
    with pytest.raises(UserError, match="does not see the run folder") as err:
        worker.load(suite.configs, manifest=b"the driver's manifest")
    assert "--shared-storage" in err.value.one_line(flag_of)
