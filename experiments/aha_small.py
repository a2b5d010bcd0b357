"""The "aha moment" on one GPU: experiments/aha_tiny.py's pipeline with a larger world and model.

    python -m r1jax.main --config=experiments/aha_small.py --workdir=runs/aha_small
    python -m r1jax.main --config=experiments/aha_small.py:smoke --workdir=/tmp/aha_small_smoke

All four levels of sums (3-6 digits) instead of the first two, a toy-10m base model pretrained on
5x the tokens, and larger RL batches; everything else, the evaluation protocol included, is
aha_tiny's. Sized for about 10 minutes on one H100 (not yet run on one: see the README).
"""

import os

from r1jax.cli import load_experiment


def get_config(arg: str = ""):
    config = load_experiment(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                          "aha_tiny.py"), arg)
    if arg == "smoke":  # aha_tiny's smoke run, through this file
        return config
    config.model.update(name="toy-10m", vocab_size=1024)
    config.data.update(levels=(1, 2, 3, 4))
    config.corpus.update(level_mix=(0.25, 0.25, 0.25, 0.25))
    config.pretrain.update(steps=2000, batch_size=32, checkpoint_every=500)
    config.pretrain.documents = 400_000
    config.eval.update(n_problems=400, max_new_tokens=160)
    config.rl.update(steps=200, prompts_per_step=32, group_size=16, max_new_tokens=160,
                     checkpoint_every=50, eval_every=50)
    return config
