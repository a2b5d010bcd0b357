"""R1-Zero plumbing on the toy world from a randomly initialised model (no pretraining).

    python -m r1jax.main --config=experiments/r1_zero_toy.py --workdir=runs/r1_zero_toy
    python -m r1jax.main --config=experiments/r1_zero_toy.py:smoke --workdir=/tmp/smoke

A random model rarely earns the accuracy reward, so this run mostly shows the loop, its metrics
and its checkpoints; experiments/aha_tiny.py pretrains a base model first and is the experiment
that learns. Every key below can be overridden: --config.rl.lr=1e-4.
"""

import ml_collections

from r1jax import rl


def get_config(arg: str = ""):
    config = ml_collections.ConfigDict()
    config.job = "rl"
    config.model = ml_collections.ConfigDict(
        dict(name="toy-1m", vocab_size=0, hf_path="", dtype="float32", init_seed=0))
    config.tokenizer = ""  # "" = train the toy world's SentencePiece tokenizer into the workdir
    config.data = ml_collections.ConfigDict(dict(
        tasks=("arithmetic",), levels=(1, 2), train_size=2000, seed=0,
        tokenizer_documents=2000))
    config.rewards = ml_collections.ConfigDict({"arithmetic": 1.0, "format": 1.0})
    config.reward_workers = 2
    config.reward_timeout_s = 10.0
    config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    config.eval = ml_collections.ConfigDict(dict(
        benchmark="toy_arithmetic", n_problems=64, k=4, max_new_tokens=48,
        data_file="", data_dir=""))  # "": generated test problems; or a file / "tfds:NAME[:SPLIT]"
    config.rl = rl.default_config()
    config.rl.update(dict(steps=200, prompts_per_step=8, group_size=8, max_new_tokens=48,
                          lr=3e-4, warmup_steps=10, checkpoint_every=50, eval_every=50,
                          correctness_reward="arithmetic"))
    if arg == "smoke":
        config.model.update(name="tiny", vocab_size=512)
        config.data.update(train_size=64, tokenizer_documents=300)
        config.eval.update(n_problems=4, max_new_tokens=8)
        config.rl.update(steps=3, prompts_per_step=2, group_size=4, max_new_tokens=8,
                         checkpoint_every=2, eval_every=3)
    elif arg:
        raise ValueError(f"unknown config argument {arg!r}; use '' or 'smoke'")
    return config
