"""The "aha moment" on a laptop: R1-Zero from a ~1M-parameter model pretrained from scratch.

    python -m r1jax.main --config=experiments/aha_tiny.py --workdir=runs/aha_tiny
    python -m r1jax.main --config=experiments/aha_tiny.py:smoke --workdir=/tmp/aha_smoke

One command, fixed seeds: the toy world's SentencePiece tokenizer (workdir/tokenizer.model), a
toy-1m base model pretrained on its corpus (workdir/base; both reused when present), its test
pass@1 (k=4, T 0.6, top-p 0.95), GRPO with the accuracy and format rewards in the R1-Zero
template, the final evaluation, plots and results.md.

The world is sums of 3 or 4 digits ("Add 3 + 7 + 2 + 8"). A fifth of the corpus is problems in
the R1-Zero template, answered mostly with a short guess that is right at the `short_accuracy`
rate of its level and, one time in ten, worked step by step: running totals, a check, sometimes
a corrected slip ("But that is an error."), always right. The rest shows the problems without the
template and mostly worked, which is where the tiny model learns to do the work (about 1,500
steps are needed before its worked sums are reliable). Prompted with the template, the base
model therefore answers mostly short and often wrongly, and rarely works the sum out; GRPO finds
that the work earns the reward and makes it the habit: response length, reflective words and
accuracy rise together. This is amplification of a behaviour the base model already has, as the
R1 paper argues for real base models, not emergence from nothing.
"""

import os

import ml_collections

from r1jax import sft
from r1jax.cli import load_experiment


def get_config(arg: str = ""):
    config = load_experiment(os.path.join(os.path.dirname(os.path.abspath(__file__)), "common.py"))
    config.model.update(vocab_size=512)
    config.data.update(tasks=("sums",), train_size=20_000, tokenizer_documents=20_000)
    config.corpus = ml_collections.ConfigDict(dict(
        level_mix=(0.5, 0.5, 0.0, 0.0), long_fraction=0.1, untemplated_long_fraction=0.7,
        slip_fraction=0.3, short_accuracy=(0.25, 0.15, 0.1, 0.05), template_fraction=0.2))
    config.pretrain = sft.default_config()
    config.pretrain.update(dict(steps=1500, batch_size=8, seq_len=256, lr=3e-3, warmup_steps=30,
                                mask_prompt=False, checkpoint_every=100))
    config.pretrain.documents = 100_000
    config.eval.update(benchmark="toy_sums", n_problems=200, max_new_tokens=96)
    config.rl.update(dict(steps=80, prompts_per_step=8, group_size=8, max_new_tokens=96,
                          lr=1e-4, checkpoint_every=20, eval_every=20))
    if arg == "smoke":
        # Minutes of CPU cannot pretrain worked sums, so the smoke run checks the pipeline and
        # that GRPO moves the reward: half the templated answers are worked, too long for 48
        # new tokens, and the format reward rises as the policy learns to finish in time.
        config.model.update(name="tiny")
        config.corpus.update(long_fraction=0.5)
        config.data.update(train_size=256, tokenizer_documents=2000)
        config.pretrain.update(steps=300, batch_size=8, seq_len=128, checkpoint_every=150)
        config.pretrain.documents = 4000
        config.eval.update(n_problems=16, max_new_tokens=48)
        config.rl.update(steps=10, prompts_per_step=4, group_size=8, max_new_tokens=48,
                         lr=3e-4, warmup_steps=5, checkpoint_every=5, eval_every=10)
    elif arg:
        raise ValueError(f"unknown config argument {arg!r}; use '' or 'smoke'")
    return config
