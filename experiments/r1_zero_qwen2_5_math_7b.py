"""R1-Zero on Qwen2.5-Math-7B: experiments/r1_zero_qwen2_5_math_1_5b.py with the 7B model.

    python -m r1jax.main --config=experiments/r1_zero_qwen2_5_math_7b.py \\
        --config.model.hf_path=/models/Qwen2.5-Math-7B \\
        --config.data.sources.math.path=/data/MATH/train \\
        --config.eval.data_dir=/data/benchmarks --workdir=runs/r1_zero_qwen2_5_math_7b

Every training setting and every departure from the paper is the 1.5B config's (read its
docstring); only memory differs: 7.6B parameters in fp32 with AdamW's two moments are about
122 GB before activations, so they are sharded over all devices (FSDP, as for 1.5B) and a step
takes 64 microbatches of 8 rows. Qwen2.5-Math-7B also has 4,096 positions, so the 3,072-token
response limit stays.
"""

import os

from r1jax.cli import load_experiment


def get_config(arg: str = ""):
    here = os.path.dirname(os.path.abspath(__file__))
    config = load_experiment(os.path.join(here, "r1_zero_qwen2_5_math_1_5b.py"), arg)
    if not arg:
        config.model.name = "qwen2.5-math-7b"
        config.rl.microbatches = 64
    return config
