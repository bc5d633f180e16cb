"""Bad homes and output folders, and what a user sees before an error: one line, exit 2, nothing
written (the cases of docs/reliability.md)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.cli_helpers import run_zit as zit


@pytest.fixture(scope="module")
def model_dir(tiny_zimage_dir):
    return tiny_zimage_dir


def generate_args(model_dir, *args) -> list[str]:
    base = ["generate", "a cat", "--writer", "none", "--no-ruts", "--image-model", str(model_dir)]
    return [*base, "--size", "64x64", "--steps", "2", "--seed", "1", *args]


def only_error_line(err: str, message: str) -> bool:
    return err.count("\n") == 1 and err.startswith("zit: error:") and message in err


@pytest.mark.parametrize("where", ["home", "parent"])
def test_zit_home_that_is_a_file_is_one_line(capsys, tmp_path, monkeypatch, model_dir, where):
    blocker = tmp_path / "home-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("ZIT_HOME", str(blocker if where == "home" else blocker / "zit"))
    code, out, err = zit(capsys, *generate_args(model_dir))
    assert code == 2 and out == ""
    assert only_error_line(err, f"{blocker} is a file")
    assert blocker.read_text() == "not a folder"


def test_an_out_folder_that_is_a_file_is_one_line(capsys, tmp_path, model_dir):
    blocker = tmp_path / "out"
    blocker.write_text("keep me")
    code, _, err = zit(capsys, *generate_args(model_dir, "--out", str(blocker)))
    assert code == 2 and only_error_line(err, "the output folder")
    assert blocker.read_text() == "keep me" and sorted(tmp_path.iterdir()) == [blocker]


def test_no_loading_bars_before_an_error(tmp_path, model_dir):
    """A real process: the libraries' bars and log lines go to the process's own stderr."""
    env = {**os.environ, "ZIT_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    for name in ("DIFFUSERS_VERBOSITY", "TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "zit_agent.agent", *generate_args(model_dir, "--layer", "99")],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert done.returncode == 2
    assert only_error_line(done.stderr, "layer 99 is out of range"), done.stderr


VERBOSE_CHOICE = """
import diffusers, transformers
from huggingface_hub.utils import are_progress_bars_disabled
from zit_agent.backends.quiet import quiet_libraries

quiet_libraries(verbose=True)  # what `zit --verbose` does first
quiet_libraries()  # what a loader calls: the front end's choice holds
assert diffusers.utils.logging.is_progress_bar_enabled()
assert transformers.utils.logging.is_progress_bar_enabled()
assert not are_progress_bars_disabled()
assert transformers.utils.logging.get_verbosity() == transformers.utils.logging.WARNING
quiet_libraries(verbose=False)
assert not diffusers.utils.logging.is_progress_bar_enabled()
assert not transformers.utils.logging.is_progress_bar_enabled()
assert are_progress_bars_disabled()
assert diffusers.utils.logging.get_verbosity() == diffusers.utils.logging.ERROR
"""


def test_verbose_keeps_the_libraries_output_and_loaders_keep_the_choice():
    """In a process of its own, as the CLI runs: huggingface_hub reads its bar switch from the
    environment once, at import, so a test process another test quieted first cannot show it."""
    env = dict(os.environ)
    for name in ("DIFFUSERS_VERBOSITY", "TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-c", VERBOSE_CHOICE], capture_output=True, text=True, timeout=180,
        env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_check_home_accepts_a_folder_or_a_path_to_make(tmp_path):
    from zit_agent.errors import UserError
    from zit_agent.files import check_home

    assert check_home(tmp_path) == tmp_path
    assert check_home(tmp_path / "new" / "zit") == tmp_path / "new" / "zit"
    assert not (tmp_path / "new").exists()  # checked, not made
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="ZIT_HOME .* is a file, not a folder"):
        check_home(tmp_path / "file")
    with pytest.raises(UserError, match="cannot be made"):
        check_home(tmp_path / "file" / "zit")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "bogus"], "unknown device 'bogus'"),
        (["--device", "cuda"], "is not available here"),
    ],
)
def test_devices_torch_cannot_use_are_one_line(capsys, model_dir, args, message):
    import torch

    if message == "is not available here" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")  # the CI machine has none
    code, _, err = zit(capsys, *generate_args(model_dir, *args))
    assert code == 2 and only_error_line(err, message)


def test_a_transformers_writer_pointed_at_a_z_image_folder_is_one_line(capsys, model_dir):
    args = generate_args(model_dir)
    args[args.index("none")] = f"hf:{model_dir}"
    code, _, err = zit(capsys, *args)
    assert code == 2 and only_error_line(err, "is not a transformers causal language model")


def test_zit_ruts_on_a_huge_png_is_one_line(capsys, tmp_path):
    from PIL import Image

    huge = tmp_path / "huge.png"
    Image.new("1", (20000, 20000)).save(huge)  # 400 million pixels, a small file
    code, _, err = zit(capsys, "ruts", str(huge), str(huge))
    assert code == 2 and only_error_line(err, "too large to judge")
