#!/usr/bin/env bash
# The GPU checks of the speed issue, as one prepared run on a lent GPU machine (about 6 minutes
# on an H100 or H200): the card and jax, the sampler against the HBM roofline on a
# qwen2.5-0.5b-shaped model in bf16 with 256 rows (its greedy decode checked against the full
# forward pass first), then the training step's MFU (reference pass + policy update) on a
# qwen2.5-1.5b shape, without and with per-layer remat. Record what it prints in
# benchmarks/RESULTS.md with the card, the jax version and this command:
#
#     bash benchmarks/gpu_check.sh
#
# A machine whose image lacks this project's dependencies (ml_collections, grain, ...) gets them
# as wheels in .whl/ (downloaded for its Python and platform), installed here first.
set -euo pipefail
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$(pwd)" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
python3 benchmarks/sampling.py --roofline --prompts 32 --samples 8 --new_tokens 256 --repeats 3
python3 benchmarks/training_mfu.py --model=qwen2.5-1.5b --rows=16 --logprob_chunk=512
python3 benchmarks/training_mfu.py --model=qwen2.5-1.5b --rows=32 --layers=remat --logprob_chunk=512
