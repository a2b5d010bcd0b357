"""The base of every experiment: each key the jobs read, with the toy world's defaults.

An experiment file starts from this config and states only what differs and why (big_vision's
habit):

    from r1jax.cli import load_experiment

    def get_config(arg=""):
        config = load_experiment(os.path.join(os.path.dirname(__file__), "common.py"))
        config.rl.update(steps=80, lr=1e-4)
        ...

Sections: ``job`` (a key of r1jax.main.JOBS), ``export``, ``model`` (a named config randomly
initialised, or an HF checkpoint at ``hf_path``), ``tokenizer`` ("" = the toy world's
SentencePiece tokenizer trained into the workdir, or the HF checkpoint's), ``data`` (the toy
world's problems), the reward terms and their weights, the reward pool, the device ``mesh``,
the in-loop ``eval`` and the ``rl`` settings (r1jax.rl.default_config). The toy world's
``corpus`` and ``pretrain`` sections are added by the experiments that pretrain a base model.
"""

import ml_collections

from r1jax import rl


def get_config():
    config = ml_collections.ConfigDict()
    config.job = "rl"
    config.model = ml_collections.ConfigDict(
        dict(name="toy-1m", vocab_size=0, hf_path="", dtype="float32", init_seed=0))
    config.tokenizer = ""  # "" = train the toy world's SentencePiece tokenizer into the workdir
    config.data = ml_collections.ConfigDict(dict(
        tasks=("arithmetic",), levels=(1, 2), train_size=2000, seed=0,
        tokenizer_documents=2000,
        max_prompt_tokens=512,  # prompt sources: a longer prompt is an error before training,
        drop_long_prompts=False))  # or, with this, left out with a count
    config.export = "hf"  # a finished RL run writes its policy as an HF checkpoint here ("": no)
    config.rewards = ml_collections.ConfigDict({"arithmetic": 1.0, "format": 1.0})
    config.reward_workers = 2
    config.reward_timeout_s = 10.0
    config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    config.eval = ml_collections.ConfigDict(dict(
        benchmark="toy_arithmetic", n_problems=64, k=4, max_new_tokens=48,
        data_file="", data_dir="",  # "": generated test problems; or a file / "tfds:NAME[:SPLIT]"
        also=()))  # more benchmarks evaluated alongside (from data_dir), logged as eval/NAME/
    config.rl = rl.default_config()
    config.rl.update(dict(correctness_reward="arithmetic", warmup_steps=10))
    return config
