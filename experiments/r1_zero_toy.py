"""R1-Zero plumbing on the toy world from a randomly initialised model (no pretraining).

    python -m r1jax.main --config=experiments/r1_zero_toy.py --workdir=runs/r1_zero_toy
    python -m r1jax.main --config=experiments/r1_zero_toy.py:smoke --workdir=/tmp/smoke

A random model rarely earns the accuracy reward, so this run mostly shows the loop, its metrics
and its checkpoints; experiments/aha_tiny.py pretrains a base model first and is the experiment
that learns. Every key can be overridden: --config.rl.lr=1e-4.
"""

import os

from r1jax.cli import load_experiment


def get_config(arg: str = ""):
    config = load_experiment(os.path.join(os.path.dirname(os.path.abspath(__file__)), "common.py"))
    config.rl.update(dict(steps=200, prompts_per_step=8, group_size=8, max_new_tokens=48,
                          lr=3e-4, checkpoint_every=50, eval_every=50))
    if arg == "smoke":
        config.model.update(name="tiny", vocab_size=512)
        config.data.update(train_size=64, tokenizer_documents=300)
        config.eval.update(n_problems=4, max_new_tokens=8)
        config.rl.update(steps=3, prompts_per_step=2, group_size=4, max_new_tokens=8,
                         checkpoint_every=2, eval_every=3)
    elif arg:
        raise ValueError(f"unknown config argument {arg!r}; use '' or 'smoke'")
    return config
