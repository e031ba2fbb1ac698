#!/usr/bin/env bash
# Every CUDA check in one go, for a machine with a GPU: the parity tests, then the
# DeepFM benchmark through the store at batch 4096 (printed as JSON).
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/pytest tests/gpu -v -s
.venv/bin/fmstream bench train --device cuda --store rocksdb --bench-models deepfm \
    --batches 4096 --steps 50 --repeat 3
