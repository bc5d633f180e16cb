"""The import contract: the layering of the package, checked on every import statement (those
inside functions too), and the packaging that makes `zit_agent` the only import name.

Bottom to top: the core (`zit_agent` itself, the `core/` folder: errors, files, settings,
defaults, options, sequences, axes) and `prompts` < `backends` < `agent` (the flow) < `evals` <
`agent.cli` (the front end). A module may import only from its own layer or below.

(import-linter cannot see this layout: its graph walks the root package's folder, and our
subpackages live in sibling folders mapped with setuptools `package-dir`.)
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
FOLDERS = PYPROJECT["tool"]["setuptools"]["package-dir"]  # package -> folder
CORE = ("errors", "files", "settings", "defaults", "options", "sequence", "axes")
# Each layer and the packages it may not import.
FORBIDDEN = {
    "zit_agent.core": ["zit_agent.backends", "zit_agent.agent", "zit_agent.evals"],
    "zit_agent.prompts": ["zit_agent.backends", "zit_agent.agent", "zit_agent.evals"],
    "zit_agent.backends": ["zit_agent.agent", "zit_agent.evals"],
    "zit_agent.agent": ["zit_agent.evals", "zit_agent.agent.cli"],
    "zit_agent.evals": ["zit_agent.agent.cli"],
    "zit_agent.agent.cli": [],
}


def modules() -> dict[str, Path]:
    """Every module of the package, by its import name."""
    found = {}
    for package, folder in FOLDERS.items():
        root = REPO / folder
        files = root.glob("*.py") if package == "zit_agent" else root.rglob("*.py")
        for path in files:
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join([package, *parts]).removesuffix(".__init__")] = path
    return found


def layer_of(module: str) -> str:
    if module.startswith("zit_agent.agent.cli") or module == "zit_agent.agent.__main__":
        return "zit_agent.agent.cli"
    for package in (
        "zit_agent.prompts",
        "zit_agent.backends",
        "zit_agent.agent",
        "zit_agent.evals",
    ):
        if module == package or module.startswith(package + "."):
            return package
    return "zit_agent.core"


def imports(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for each import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + [base]
                ).strip(".")
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
            found.append((node.lineno, base))
    return found


def test_every_module_imports_only_its_own_layer_and_below():
    broken = []
    for module, path in modules().items():
        banned = FORBIDDEN[layer_of(module)]
        for line, target in imports(module, path):
            if any(target == b or target.startswith(b + ".") for b in banned):
                broken.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert not broken, "layering broken:\n" + "\n".join(sorted(set(broken)))


def test_the_contract_sees_every_layer():
    layers = {layer_of(m) for m in modules()}
    assert layers == set(FORBIDDEN)
    assert {f"zit_agent.{name}" for name in CORE} <= set(modules())


@pytest.mark.parametrize("bare", ["agent", "backends", "evals", "prompts", "core"])
def test_no_module_imports_a_repository_folder_by_its_bare_name(bare):
    offenders = [
        f"{path.relative_to(REPO)}:{line}"
        for module, path in modules().items()
        for line, target in imports(module, path)
        if target == bare or target.startswith(bare + ".")
    ]
    assert not offenders


@pytest.mark.slow  # builds a wheel
def test_the_wheel_installs_one_top_level_name(tmp_path):
    """Built by pip from this pyproject, as a user's `pip install .` would: from a copy of the
    package's files, so the build leaves no `build/` folder in the checkout."""
    import shutil
    import subprocess
    import sys
    import zipfile

    source = tmp_path / "source"
    junk = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in {*FOLDERS.values()}:
        shutil.copytree(REPO / folder, source / folder, ignore=junk)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path),
         str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [wheel] = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"zit_agent"}
    assert "zit_agent/prompts/expand.md" in names and "zit_agent/evals/suites/smoke.yaml" in names
    assert "zit_agent/backends/tiny/sketch.py" in names


@pytest.mark.slow  # starts a process
def test_zit_runs_from_a_folder_with_its_own_agent_and_evals_packages(tmp_path, tokenizer_dir):
    """LangGraph's project template makes a top-level `agent` package; OpenAI's `evals` is one
    too. Neither may shadow zit's code."""
    import json
    import subprocess
    import sys

    for name in ("agent", "evals", "backends", "prompts"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("raise ImportError('the wrong package')\n")
    done = subprocess.run(
        [sys.executable, "-m", "zit_agent.agent", "tokens", "a cat", "--json",
         "--tokenizer", str(tokenizer_dir)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["token_ids"][:3] == [151644, 872, 198]
