"""Eval runs on Ray: the jobs of `evals.runner` on a pool of Ray actors, the run folder kept here.

    from zit_agent.evals.distributed import RayExecutor, RaySpec
    run_suite(suite, out_dir, context=RunContext(suite, settings),
              execute=RayExecutor(RaySpec(workers=2)))          # a local Ray with two workers

- **Workers are actors** (`EvalWorker`), one per GPU when the cluster has GPUs (`num_gpus=1`; Ray
  sets `CUDA_VISIBLE_DEVICES`, so each sees its own GPU as `cuda`), else a share of the CPUs each.
  Each loads the suite's models once (`RunContext.load`, the run API underneath) and keeps them.
- **This process (the driver) owns the run folder**: it plans, hands jobs to free workers (one
  running and `PREFETCH` queued per worker, so none waits for the driver), and records each
  finished job with `runner.record_job`: images, then the journal record (a line of jobs.jsonl),
  last, exactly as a run in one process does. Workers save a job's images with the runner's own
  `save_outputs` (so PNG encoding scales with the workers) into a scratch folder and send the
  files back as bytes (byte for byte the one-process files); with `shared_storage` (the run
  folder on storage every node mounts) they save them in the run folder and send only records.
- **A worker that dies** (killed, out of memory, its node gone) loses the jobs it held: each goes
  back to the queue (its partial files cleared) and runs on another worker; a replacement worker
  starts. A job that loses `MAX_LOSSES` workers stops the run (`WorkerLost`). Nothing is
  recorded twice: a job enters the folder only from a result, and a lost job has none.
- **Every wait is bounded** (`defaults.RAY`): the driver waits `poll_s` for a result, then checks
  the cluster (`ray.nodes()`, itself bounded by `check_timeout_s`). Its own node dead (a dead
  raylet: its agents fate-share with it), no node alive or a head that no longer answers stop the
  run (`ClusterLost`); a worker holding jobs with no result for `job_timeout_s` is hung: it is
  killed and its jobs go back to the queue as for a dead one; no worker loaded after
  `start_timeout_s` (a cluster without the resources) stops the run. The one line says how many
  jobs are done and that `--resume` finishes the run.
- **Stopping the driver** (Ctrl-C, kill) stops the run: its actors die with it (Ray ends the
  actors of a dead owner), and `--resume` finishes the run like any other.

Ray is an optional dependency (`pip install "zit-agent[ray]"`), imported only here.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zit_agent.defaults import RAY
from zit_agent.errors import ResourceExhausted, UserError
from zit_agent.evals.runner import (
    Job,
    JobOutcome,
    RunContext,
    RunFolder,
    configs_of,
    job_outcome,
    record_job,
    save_outputs,
)

if TYPE_CHECKING:
    from zit_agent.evals.runner import Progress
    from zit_agent.evals.suite import Config, Suite
    from zit_agent.settings import Settings

PREFETCH = 1  # jobs queued on a worker beyond the one it runs
MAX_LOSSES = 3  # a job that loses this many workers stops the run
CONNECT_TIMEOUT_S = RAY.connect_timeout_s
RAY_GCS_PORT = 6379  # Ray's default head port (`ray start --head`)
RAY_CLIENT_PORT = 10001  # and its client server's (`ray://HOST`)
# A worker's scratch copy of the folder layout lives in memory where it can: its files are read
# back at once, so the atomic writes' fsyncs there would only cost time.
SCRATCH_ROOT = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
INSTALL_HINT = 'install it with pip install "zit-agent[ray]"'
RESUME_HINT = (
    "run the same command again with {resume} to finish it, on Ray or in one process: "
    "without {workers} and {ray}"
)
# HTTP/2's client connection preface and an empty SETTINGS frame: a gRPC server (Ray's head, its
# client server) answers with a SETTINGS frame of its own.
HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
HTTP2_SETTINGS = 4
log = logging.getLogger("zit.ray")


class WorkerLost(ResourceExhausted):
    """A job kept losing its worker (killed, out of memory, hung, its node gone): the machines,
    not the input, are the problem."""

    kind = "worker lost"


class ClusterLost(ResourceExhausted):
    """The Ray cluster is gone mid-run: this machine's node died (a dead raylet), no node is left,
    the head stopped answering, or no worker could start. Exit 3 like the other lost machines."""

    kind = "cluster lost"


@dataclass(frozen=True)
class RaySpec:
    """Where to run: a local Ray instance (`address=None`) or a cluster (`HOST:PORT`,
    `ray://HOST:PORT`, or `auto` for `RAY_ADDRESS`), with how many workers (None: one per GPU,
    else one per CPU)."""

    address: str | None = None
    workers: int | None = None
    shared_storage: bool = False
    job_timeout_s: float = RAY.job_timeout_s  # a worker with jobs and no result this long: hung
    start_timeout_s: float = RAY.start_timeout_s  # no worker loaded by then: the run stops


# -- connecting ----------------------------------------------------------------------------------
def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("Ray is not installed", hint=INSTALL_HINT) from None
    return ray


def check(spec: RaySpec) -> None:
    """What can be checked before the run starts: Ray is installed, the cluster answers."""
    import_ray()
    if spec.address is not None:
        check_reachable(resolve_address(spec.address))


def resolve_address(address: str) -> str:
    if address != "auto":
        return address
    found = os.environ.get("RAY_ADDRESS")
    if not found:
        raise UserError(
            "RAY_ADDRESS is not set, so `auto` names no cluster",
            hint="export RAY_ADDRESS=HEAD_HOST:6379, or give the address to {ray}",
        )
    return found


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """A connection to the head and an HTTP/2 handshake (Ray speaks gRPC), within `timeout`:
    `ray.init` itself retries an address that refuses or never answers for minutes."""
    host, port = split_address(address)
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(max(deadline - time.monotonic(), 0.1))
            conn.sendall(HTTP2_HELLO)
            answer = _read(conn, 9, deadline)  # a frame header: length 3, type 1, flags 1, id 4
    except TimeoutError:
        reason = f"nothing answered within {timeout:g} s"
    except OSError as err:
        reason = err.strerror or type(err).__name__
    else:
        if len(answer) == 9 and answer[3] == HTTP2_SETTINGS:
            return
        reason = "what answers there is not a Ray head (no gRPC handshake)"
    raise UserError(
        f"cannot reach the Ray cluster at {address}: {reason}",
        hint="start it there with `ray start --head`, or check the address given to {ray}",
    ) from None


def _read(conn: socket.socket, size: int, deadline: float) -> bytes:
    data = b""
    while len(data) < size:
        conn.settimeout(max(deadline - time.monotonic(), 0.01))
        chunk = conn.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def split_address(address: str) -> tuple[str, int]:
    client = address.startswith("ray://")
    rest = address.removeprefix("ray://").split("/", 1)[0]
    host, sep, port = rest.rpartition(":")
    if not sep:
        return rest, RAY_CLIENT_PORT if client else RAY_GCS_PORT
    if not host or not port.isdigit():
        raise UserError(f"bad Ray address {address!r}", hint="write it as HOST:PORT")
    return host.strip("[]"), int(port)


@contextmanager
def connected(spec: RaySpec) -> Iterator[Any]:
    """Ray, initialized for this run: the caller's instance when there is one (it stays up),
    else a new local instance or a connection to `spec.address` (shut down afterwards)."""
    ray = import_ray()
    with _cluster_messages_logged():
        if ray.is_initialized():
            yield ray
            return
        quiet = {"log_to_driver": False, "logging_level": "ERROR", "configure_logging": True}
        if spec.address is None:
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, **quiet)
        else:
            address = resolve_address(spec.address)
            check_reachable(address)
            ray.init(address=address, **quiet)
        try:
            yield ray
        finally:
            ray.shutdown()


@contextmanager
def _cluster_messages_logged() -> Iterator[None]:
    """Ray's driver prints the cluster's error messages (`The node ... has been marked dead`)
    on stdout from a thread of its own, even with `log_to_driver=False`; during a run they go to
    the `zit.ray` log instead (the run says what happened in its own line). Ray's private
    function: left alone if a Ray version has none."""
    try:
        from ray._private import worker as ray_worker

        original = ray_worker.print_to_stdstream
    except (ImportError, AttributeError):
        yield
        return

    def to_log(data: dict, ignore_prefix: bool = False) -> None:
        for line in data.get("lines", []):
            log.info("ray (%s): %s", data.get("pid", "?"), line)

    ray_worker.print_to_stdstream = to_log
    try:
        yield
    finally:
        ray_worker.print_to_stdstream = original


def worker_shape(resources: dict[str, float], workers: int | None) -> tuple[int, dict[str, float]]:
    """How many workers, and each one's resources: one GPU each when the cluster has GPUs (at most
    one worker per GPU), else an equal share of the CPUs."""
    gpus, cpus = int(resources.get("GPU", 0)), float(resources.get("CPU", 0))
    if gpus:
        count = workers or gpus
        if count > gpus:
            raise UserError(
                f"{count} workers need a GPU each and the cluster has {gpus}",
                hint=f"ask for at most {gpus} {{workers}}",
            )
        return count, {"num_gpus": 1, "num_cpus": _share(cpus, count)}
    count = workers or max(int(cpus), 1)
    return count, {"num_gpus": 0, "num_cpus": _share(cpus, count)}


def _share(cpus: float, count: int) -> float:
    if cpus >= count:
        return float(int(cpus // count))
    return max(int(cpus / count * 100) / 100, 0.01)


# -- the worker ----------------------------------------------------------------------------------
class EvalWorker:
    """A Ray actor: the suite's models, loaded once by `load`, kept for every job it runs."""

    def __init__(self, suite: Suite, settings: Settings, name: str, shared_root: str | None):
        self.suite, self.settings, self.name = suite, settings, name
        self.folder = RunFolder(Path(shared_root)) if shared_root else None
        self.run: RunContext | None = None
        self.info: dict[str, Any] = {"name": name}

    def load(self, configs: dict[str, Config], manifest: bytes | None) -> dict[str, Any]:
        """Load the models; with shared storage, check this node sees the driver's run folder."""
        import ray

        if self.folder is not None:
            _check_shared(self.folder, manifest, ray.util.get_node_ip_address())
        self.run = RunContext(self.suite, self.settings)
        self.run.load(configs)
        self.info = {
            "name": self.name,
            "node": ray.util.get_node_ip_address(),
            "pid": os.getpid(),
            "device": _device(self.run),
        }
        return self.info

    def run_job(self, job: Job) -> JobOutcome:
        """Run the job and save its images (PNG encoding is the worker's work, not the
        driver's): into the run folder on shared storage, else into a scratch copy of its layout
        whose files travel back."""
        assert self.run is not None, "load() first"
        if self.folder is not None:
            outcome = self._saved(job, self.folder)
        else:
            with tempfile.TemporaryDirectory(prefix="zit-eval-", dir=SCRATCH_ROOT) as scratch:
                outcome = self._saved(job, RunFolder(Path(scratch)))
                outcome.files = _files_under(Path(scratch))
        outcome.worker = dict(self.info)
        return outcome

    def _saved(self, job: Job, folder: RunFolder) -> JobOutcome:
        outcome = job_outcome(job, self.run, folder.workdir(job))
        if outcome.failure is None:
            outcome.records = save_outputs(job, self.suite, outcome.outputs, folder)
            outcome.outputs = []
        return outcome


def _check_shared(folder: RunFolder, manifest: bytes | None, node: str) -> None:
    path = folder.root / "manifest.json"
    if not path.is_file() or path.read_bytes() != manifest:
        raise UserError(
            f"the worker on {node} does not see the run folder {folder.root}",
            hint="put the run folder on storage every node mounts at the same path, or leave "
            "out {shared_storage} (images then travel back to the driver)",
        )


def _device(run: RunContext) -> str:
    return str(run.backend.device)


def _files_under(folder: Path) -> dict[str, bytes]:
    if not folder.is_dir():
        return {}
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


# -- the driver ---------------------------------------------------------------------------------
@dataclass(eq=False)
class _Worker:
    name: str
    actor: Any
    info: dict[str, Any] = field(default_factory=dict)
    held: list[Any] = field(default_factory=list)  # refs of the jobs it holds
    dead: bool = False
    since: float = field(default_factory=time.monotonic)  # started, or last gave a result


@dataclass
class RayExecutor:
    """Runs an eval's jobs on Ray workers (an `execute` for `runner.run_suite`).

    `on_outcome(job, outcome)` is called after each job is recorded (tests use it to kill a
    worker mid-run). After a run: `workers` (every worker started, with its node, pid and device),
    `lost` (how many times a job went back to the queue), `hung` (workers killed for holding jobs
    past `spec.job_timeout_s`), `startup_s` (until every first worker had loaded its models) and
    `seconds` (the whole run).
    """

    spec: RaySpec = field(default_factory=RaySpec)
    on_outcome: Callable[[Job, JobOutcome], None] | None = None
    workers: list[dict[str, Any]] = field(default_factory=list)
    lost: int = 0
    hung: int = 0
    startup_s: float | None = None
    seconds: float = 0.0

    def __call__(
        self, todo: list[Job], run: RunContext, folder: RunFolder, progress: Progress
    ) -> None:
        start = time.perf_counter()
        try:
            with connected(self.spec) as ray:
                pool = _Pool(ray, self.spec, run, folder, configs_of(todo))
                try:
                    progress.describe(f"starting {pool.count} Ray workers (loading models)")
                    self._run(ray, pool, todo, run, folder, progress, start)
                except ray.exceptions.RaySystemError as err:  # Ray itself failed here
                    raise ClusterLost(f"Ray failed: {_first_line(err)}") from None
                finally:
                    pool.close()
                    self.workers = [w.info or {"name": w.name} for w in pool.started]
        except (ClusterLost, WorkerLost) as err:
            raise type(err)(f"{err}; {_done(folder, todo)}", hint=RESUME_HINT) from None
        self.seconds = time.perf_counter() - start

    def _run(self, ray, pool: _Pool, todo, run, folder, progress, start: float) -> None:
        queue, losses = deque(todo), Counter()
        running: dict[Any, tuple[Job, _Worker]] = {}

        def lose(job: Job, why: str) -> None:  # the job goes back to the queue
            losses[job.key] += 1
            self.lost += 1
            if losses[job.key] >= MAX_LOSSES:
                raise WorkerLost(
                    f"job {job.idea.id} / {job.config_name} lost its worker {MAX_LOSSES} times "
                    f"(last: {why}); check the workers' memory and logs (`ray logs`)"
                )
            folder.clear_unfinished([job])  # what a worker on shared storage left of it
            queue.appendleft(job)

        while queue or running:
            for worker in pool.ready:
                while queue and len(worker.held) <= PREFETCH:
                    if not worker.held:  # an idle worker's clock starts with its job
                        worker.since = time.monotonic()
                    job = queue.popleft()
                    ref = worker.actor.run_job.remote(job)
                    worker.held.append(ref)
                    running[ref] = (job, worker)
            ready, _ = ray.wait([*pool.starting, *running], num_returns=1, timeout=RAY.poll_s)
            for worker in pool.hung(self.spec.job_timeout_s):  # killed, its jobs go elsewhere
                self.hung += 1
                for held in worker.held:
                    lose(running.pop(held)[0], f"{worker.name} gave no result in "
                         f"{self.spec.job_timeout_s:g} s")  # fmt: skip
                worker.held.clear()
                pool.replace(worker)
            if not ready:  # nothing for a while: is the cluster still there?
                pool.check_cluster()
                pool.check_started()
                continue
            [ref] = ready
            if ref not in pool.starting and ref not in running:  # a hung worker's, given up
                continue
            if ref in pool.starting:
                pool.loaded(ref)
                if self.startup_s is None and len(pool.ready) == pool.count:
                    self.startup_s = time.perf_counter() - start
                continue
            job, worker = running.pop(ref)
            worker.held.remove(ref)
            worker.since = time.monotonic()
            try:
                outcome = ray.get(ref, timeout=RAY.fetch_timeout_s)
            except (
                ray.exceptions.RayActorError,  # the worker died: the job goes elsewhere
                ray.exceptions.ObjectLostError,  # its node died with the result
                ray.exceptions.GetTimeoutError,  # the result did not arrive
            ) as err:
                pool.check_cluster()  # a dead node here ends the run, not just the worker
                lose(job, _first_line(err))
                pool.replace(worker)
                continue
            except ray.exceptions.RayTaskError as err:  # the job itself failed: stop, as locally
                raise err.cause from None
            record_job(job, outcome, run.suite, folder)
            progress.advance(len(job.seeds))
            progress.describe(f"{len(pool.ready)} Ray workers: {job.idea.id} / {job.config_name}")
            if self.on_outcome is not None:
                self.on_outcome(job, outcome)


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def _done(folder: RunFolder, todo: list[Job]) -> str:
    """How far the run got, from its journal: `7 of 15 jobs are done (jobs.jsonl in OUT)`."""
    try:
        total = len(json.loads((folder.root / "manifest.json").read_bytes())["jobs"])
    except (OSError, ValueError, KeyError, TypeError):
        total = len(todo)
    done = total - sum(1 for job in todo if not folder.is_done(job))
    return f"{done} of {total} jobs are done and kept in {folder.root} (jobs.jsonl)"


def _bounded(call: Callable[[], Any], seconds: float, what: str) -> Any:
    """`call()` in a thread of its own, given up after `seconds`: a Ray call that waits on a head
    that is gone must not hold the driver."""
    answer: dict[str, Any] = {}

    def target() -> None:
        try:
            answer["value"] = call()
        except Exception as err:  # handed to the driver below
            answer["error"] = err

    thread = threading.Thread(target=target, name="zit-ray-check", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise ClusterLost(f"the Ray head gave no answer to {what} in {seconds:g} s")
    if "error" in answer:
        raise ClusterLost(f"the Ray head failed {what}: {_first_line(answer['error'])}")
    return answer["value"]


class _Pool:
    """The run's workers: starting (loading models), then ready; a dead one is replaced."""

    def __init__(self, ray, spec: RaySpec, run: RunContext, folder: RunFolder, configs):
        self.ray, self.spec, self.run, self.configs = ray, spec, run, configs
        found = _bounded(ray.cluster_resources, RAY.check_timeout_s, "a resources query")
        self.count, resources = worker_shape(found, spec.workers)
        self.actor_class = ray.remote(EvalWorker).options(max_restarts=0, **resources)
        self.shared_root = str(folder.root.resolve()) if spec.shared_storage else None
        self.manifest = (folder.root / "manifest.json").read_bytes() if self.shared_root else None
        self.node_id = _driver_node(ray)
        self.lost_cluster = False
        self.started: list[_Worker] = []
        self.starting: dict[Any, _Worker] = {}
        self.ready: list[_Worker] = []
        for _ in range(self.count):
            self._start()

    def _start(self) -> None:
        if len(self.started) >= self.count * MAX_LOSSES:
            raise WorkerLost(
                f"{len(self.started)} Ray workers started and {len(self.started) - self.count} "
                "of them died; check the workers' memory and logs (`ray logs`)"
            )
        name = f"ray-{len(self.started)}"
        actor = self.actor_class.remote(self.run.suite, self.run.settings, name, self.shared_root)
        worker = _Worker(name, actor)
        self.started.append(worker)
        self.starting[actor.load.remote(self.configs, self.manifest)] = worker

    def loaded(self, ref: Any) -> None:
        """A worker finished loading its models (a load that fails is the run's error)."""
        worker = self.starting.pop(ref)
        try:
            worker.info = self.ray.get(ref, timeout=RAY.fetch_timeout_s)
        except (self.ray.exceptions.RayActorError, self.ray.exceptions.GetTimeoutError):
            self.check_cluster()  # died while loading: its node too?
            self.replace(worker)
            return
        except self.ray.exceptions.RayTaskError as err:
            raise err.cause from None
        worker.since = time.monotonic()
        self.ready.append(worker)

    def replace(self, worker: _Worker) -> None:
        """Start a worker in place of a dead or hung one (once, however many jobs it held)."""
        if worker.dead:
            return
        worker.dead = True
        if worker in self.ready:
            self.ready.remove(worker)
        self.ray.kill(worker.actor, no_restart=True)
        self._start()

    def check_cluster(self) -> None:
        """Stop the run (`ClusterLost`) when the cluster cannot go on: this machine's node dead
        (its raylet stopped: it fate-shares with its agents), no node alive, or a head that does
        not answer within `check_timeout_s`."""
        try:
            nodes = _bounded(self.ray.nodes, RAY.check_timeout_s, "a node check")
        except ClusterLost:
            self.lost_cluster = True
            raise
        alive = {node.get("NodeID") for node in nodes if node.get("Alive")}
        why = None
        if self.node_id is not None and self.node_id not in alive:
            why = "this machine's Ray node died (its raylet stopped)"
        elif not alive:
            why = "no Ray node is alive"
        if why is not None:
            self.lost_cluster = True
            raise ClusterLost(f"the Ray cluster was lost: {why}")

    def check_started(self) -> None:
        """Stop the run when no worker is ready and none has loaded within `start_timeout_s`
        (the cluster lacks the resources each asks for, or loading hangs)."""
        if self.ready or not self.starting:
            return
        waited = time.monotonic() - min(w.since for w in self.starting.values())
        if waited > self.spec.start_timeout_s:
            raise ClusterLost(
                f"no Ray worker started in {self.spec.start_timeout_s:g} s (the cluster lacks "
                "the resources each asks for, or loading the models hangs)"
            )

    def hung(self, timeout: float) -> list[_Worker]:
        """The workers that hold jobs and gave no result for `timeout` seconds."""
        now = time.monotonic()
        return [w for w in self.ready if w.held and now - w.since > timeout]

    def close(self) -> None:
        if self.lost_cluster:  # its actors are gone with it
            return
        for worker in self.started:
            if not worker.dead:
                self.ray.kill(worker.actor, no_restart=True)


def _driver_node(ray) -> str | None:
    """The id of this machine's Ray node (None for a Ray client, which runs on none)."""
    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # a Ray client connection, or a Ray without it: no node to watch
        return None
