"""`zit eval`: scripted eval runs of a suite, and `zit eval compare` of two runs.

`zit eval SUITE ...` is short for `zit eval run SUITE ...`: the group runs `run` whenever its first
argument is not one of its commands, so both forms parse.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from zit_agent.agent.cli import app
from zit_agent.agent.cli.common import AsJson


class _RunByDefault(TyperGroup):
    """A group whose first argument, unless it is a command name or --help, starts `run`."""

    default_command = "run"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


eval_app = typer.Typer(
    cls=_RunByDefault,
    no_args_is_help=True,
    help="Run an eval suite (ideas x configurations x seeds) and compare runs. "
    "`zit eval SUITE` is short for `zit eval run SUITE`.",
)
app.add_typer(eval_app, name="eval")


@eval_app.command("run")
def run(
    suite: Annotated[
        str, typer.Argument(help="Suite YAML file, or a shipped suite: smoke, standard.")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output folder (default: ZIT_HOME/outputs/evals/SUITE_NAME)."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Finish a run in --out: do only what is missing.")
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Run only this configuration (repeatable)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Only the first N ideas.")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar; print only the report path.")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Run the jobs on N Ray workers: a local Ray instance, or the --ray cluster "
            "(default there: one per GPU, else one per CPU). Needs zit-agent[ray].",
            rich_help_panel="Scaling (Ray)",
        ),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="Run on an existing Ray cluster: HOST:PORT, ray://HOST:PORT, or auto "
            "(RAY_ADDRESS). Needs zit-agent[ray].",
            rich_help_panel="Scaling (Ray)",
        ),
    ] = None,
    shared_storage: Annotated[
        bool,
        typer.Option(
            "--shared-storage",
            help="The output folder is on storage every Ray node mounts at the same path: "
            "workers save images there instead of sending them back.",
            rich_help_panel="Scaling (Ray)",
        ),
    ] = False,
) -> None:
    """Run SUITE: every idea under every configuration with every seed, then write report.html,
    summary.json, per_image.jsonl and config.json into the output folder. With --workers or
    --ray the jobs run on Ray workers (same results; see docs/scaling.md)."""
    from zit_agent.evals.runner import RunContext, default_out_dir, run_suite
    from zit_agent.evals.suite import load_suite
    from zit_agent.settings import load_settings

    settings = load_settings()
    chosen = load_suite(suite).select(only=_split(only), limit=limit)
    out_dir = out or default_out_dir(chosen, settings)
    result = run_suite(
        chosen,
        out_dir,
        resume=resume,
        quiet=quiet,
        context=RunContext(chosen, settings),
        source=suite,
        execute=_ray_executor(workers, ray, shared_storage),
    )
    if quiet:
        typer.echo(str(result.out_dir / "report.html"))
        return
    _print_summary(result)


def _ray_executor(workers: int | None, address: str | None, shared_storage: bool):
    """None (this process) without Ray flags; else a Ray executor, checked before the run starts
    (Ray installed, the cluster reachable)."""
    if workers is None and address is None:
        if shared_storage:
            from zit_agent.errors import UserError

            raise UserError("{shared_storage} is for Ray runs", hint="add {workers} or {ray}")
        return None
    from zit_agent.evals.distributed import RayExecutor, RaySpec, check

    spec = RaySpec(address=address, workers=workers, shared_storage=shared_storage)
    check(spec)
    return RayExecutor(spec)


def _split(values: list[str] | None) -> list[str] | None:
    """`--only a --only b` and `--only a,b` both work."""
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _print_summary(result) -> None:
    from rich.table import Table

    from zit_agent.agent.cli.output import new_console, plain
    from zit_agent.evals.report import HEADLINE, LABELS

    summary = result.summary
    console = new_console()
    table = Table(title=f"{plain(summary['suite'])}: {summary['counts']['images']} images")
    table.add_column("config")
    for key in HEADLINE:
        table.add_column(LABELS[key], justify="right")
    for name, entry in summary["configs"].items():
        table.add_row(plain(name), *(_cell(entry["metrics"][k]) for k in HEADLINE))
    console.print(table)
    console.print(
        f"embedder {plain(summary['embedder']['name'])}, "
        f"fidelity by {plain(summary['fidelity']['method'])}; "
        f"ran {result.ran} jobs, {result.skipped} already done"
    )
    workers = summary["cost"]["workers"]
    if set(workers) != {"local"}:
        from zit_agent.evals.report import images_per_second

        console.print(
            "workers: "
            + "; ".join(
                f"{plain(name)} ({plain(w['device'])} on {plain(w['node'])}) {w['images']} images, "
                f"{images_per_second(w):.2f}/s busy"
                for name, w in workers.items()
            )
        )
    if summary["note"]:
        console.print(f"[yellow]note[/]: {plain(summary['note'])}")
    console.print(f"report: {plain(result.out_dir / 'report.html')}")


def _cell(metric: dict) -> str:
    interval, diff = metric["interval"], metric["vs_baseline"]
    if interval is None:
        return "n/a"
    text = f"{interval['mean']:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]"
    if diff is not None:
        text += f"\nΔ {diff['mean']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}]"
    return text


@eval_app.command("compare")
def compare_runs(
    run_a: Annotated[Path, typer.Argument(help="Output folder of the first run (A).")],
    run_b: Annotated[Path, typer.Argument(help="Output folder of the second run (B).")],
    as_json: AsJson = False,
) -> None:
    """Print the differences between two eval runs: B minus A, configuration by configuration."""
    from zit_agent.evals.report import LABELS, compare

    diff = compare(run_a, run_b)
    if as_json:
        from zit_agent.agent.cli.common import print_json

        print_json(diff)
        return
    from rich.table import Table

    from zit_agent.agent.cli.output import new_console, plain

    console = new_console()
    for key, values in diff["settings_differ"].items():
        a, b = plain(repr(values["a"])), plain(repr(values["b"]))
        console.print(f"[yellow]{plain(key)} differs[/]: A {a}, B {b}")
    for side in ("a", "b"):
        if diff[f"only_in_{side}"]:
            names = plain(", ".join(diff[f"only_in_{side}"]))
            console.print(f"only in {side.upper()}: {names}")
    table = Table(title=f"B ({plain(run_b)}) minus A ({plain(run_a)})")
    for column in ("config", "metric", "A", "B", "B - A", "intervals"):
        table.add_column(column, justify="left" if column in ("config", "metric") else "right")
    for config, rows in diff["configs"].items():
        for key, row in rows.items():
            table.add_row(
                plain(config),
                LABELS[key],
                f"{row['a']:.3f}",
                f"{row['b']:.3f}",
                f"{row['b_minus_a']:+.3f}",
                "apart" if row["separated"] else "overlap",
            )
    console.print(table)
