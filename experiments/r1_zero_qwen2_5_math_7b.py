"""R1-Zero on Qwen2.5-Math-7B: experiments/r1_zero_qwen2_5_math_1_5b.py with the 7B model.

    python -m r1jax.main --config=experiments/r1_zero_qwen2_5_math_7b.py \\
        --config.model.hf_path=/models/Qwen2.5-Math-7B \\
        --config.data.sources.math.path=/data/MATH/train \\
        --config.eval.data_dir=/data/benchmarks --workdir=runs/r1_zero_qwen2_5_math_7b

Every training setting and every departure from the paper is the 1.5B config's (read its
docstring); only the hardware and memory differ. Sized for a TPU v5p slice of 16 chips
(v5p:2x2x4, 95 GiB each; `python -m r1jax.compile_check --config=THIS --topology=v5p:2x2x4`):
7.6B parameters in fp32 with AdamW's two moments are about 122 GB before activations, sharded
over all chips (FSDP, as for 1.5B), and a step takes 32 microbatches of 16 rows, one row per
chip at a time. Qwen2.5-Math-7B also has 4,096 positions, so the 3,072-token response limit
stays.
"""

import os

from r1jax.cli import load_experiment


def get_config(arg: str = ""):
    here = os.path.dirname(os.path.abspath(__file__))
    config = load_experiment(os.path.join(here, "r1_zero_qwen2_5_math_1_5b.py"), arg)
    if not arg:
        config.model.name = "qwen2.5-math-7b"
        config.rl.microbatches = 32
    return config
