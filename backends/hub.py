"""Finding model files: a local path, or a Hugging Face repo id resolved through the hub cache.

Offline first: a repo id is looked up in the local hub cache only, unless downloads are allowed
(`download=True`, setting `download = true` or `ZIT_DOWNLOAD=1`). What is missing is named in a
`ModelNotFoundError` together with the command that fetches it.
"""

from __future__ import annotations

import re
from pathlib import Path

from zit_agent.errors import ModelNotFoundError, UserError

_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def looks_like_repo_id(spec: str) -> bool:
    return bool(_REPO_ID.match(spec)) and not spec.startswith((".", "/"))


def download_command(repo_id: str, include: list[str] | None = None) -> str:
    parts = [f"hf download {repo_id}"]
    parts += [f"--include '{pattern}'" for pattern in include or []]
    return " ".join(parts)


def resolve_dir(
    spec: str | Path,
    *,
    what: str,
    allow_patterns: list[str] | None = None,
    download: bool = False,
) -> Path:
    """A local directory for `spec`: the directory itself, or the repo's snapshot in the hub cache.

    `allow_patterns` limits what is fetched (and what must be cached) for a repo id.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelNotFoundError(f"{what}: {path} is a file, expected a directory")
    spec = str(spec)
    if not looks_like_repo_id(spec):
        raise ModelNotFoundError(
            f"{what}: no directory {spec!r}",
            hint="give an existing directory or a Hugging Face repo id like Org/Name",
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(
            snapshot_download(spec, allow_patterns=allow_patterns, local_files_only=not download)
        )
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as err:
        how = "not in the local Hugging Face cache" if not download else f"download failed: {err}"
        raise ModelNotFoundError(
            f"{what}: {spec} is {how}" if not download else f"{what}: {spec}: {how}",
            hint=f"fetch it with `{download_command(spec, allow_patterns)}` "
            "or allow downloads with ZIT_DOWNLOAD=1",
        ) from None


def resolve_file(spec: str, *, what: str, download: bool = False) -> Path:
    """A local file: a path, or `Org/Repo/path/in/repo.ext` resolved through the hub cache."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    parts = spec.split("/")
    if path.is_absolute() or spec.startswith(".") or len(parts) < 3:
        raise ModelNotFoundError(
            f"{what}: no file {spec!r}",
            hint="give an existing file path or Org/Repo/file in the Hugging Face cache",
        )
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, filename, local_files_only=not download))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError):
        raise ModelNotFoundError(
            f"{what}: {filename} of {repo_id} is not on this machine",
            hint=f"fetch it with `hf download {repo_id} {filename}` "
            "or allow downloads with ZIT_DOWNLOAD=1",
        ) from None


def check_device(device: str) -> str:
    """`device` if torch can use it here; a one-line error for a name torch does not know or an
    accelerator this machine or torch build lacks."""
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise UserError(f"unknown device {device!r}", hint="use cpu, cuda, cuda:N or mps") from None
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None
        and torch.backends.mps.is_available(),
    }
    if not available.get(kind, True):
        raise UserError(
            f"device {device!r} is not available here (this torch {torch.__version__} build or "
            "machine has no such accelerator)",
            hint="use cpu, or install a torch build for your accelerator",
        )
    return device
