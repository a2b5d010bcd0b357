"""R1-Zero on Qwen2.5-Math-1.5B: GRPO from the base model with the accuracy and format rewards.

    python -m r1jax.main --config=experiments/r1_zero_qwen2_5_math_1_5b.py \\
        --config.model.hf_path=/models/Qwen2.5-Math-1.5B \\
        --config.data.sources.math.path=/data/MATH/train \\
        --config.eval.data_dir=/data/benchmarks --workdir=runs/r1_zero_qwen2_5_math_1_5b

The three paths have no default and must be given: an HF checkpoint directory (config.json,
*.safetensors, tokenizer.json), MATH's training problems (EleutherAI/hendrycks_math's files: a
directory or file of jsonl/parquet with problem and solution), and the directory holding the
evaluation sets (math500.jsonl, aime24.parquet, as `r1jax.data.benchmarks` names them). The run
ends with results.md and its policy as an HF checkpoint in WORKDIR/hf.

The paper's R1-Zero settings (docs/recipe.md, "R1-Zero"), and where this config departs from them
to fit one host and this model:

- As R1-Zero: the R1-Zero template, rewards accuracy (strict \\boxed{} / <answer> extraction) and
  format, weight 1 each; G = 16 at T 1.0 with no top-p; lr 3e-6, constant, AdamW (b2 0.99, grad
  clip 1); k3 KL in the loss, beta 0.001; the reference refreshed every 400 updates; 32 questions
  (512 sequences) per update.
- One update per rollout of 32 x 16 (R1: 16 updates from each rollout of 8,192 sequences), so
  every update is on-policy, the ratio is 1 and the clip range does not bind (kept at 0.2; R1 does
  not state it for R1-Zero). ref_refresh_every counts rollouts, here equal to updates.
- 3,072 new tokens at most, not 32,768: Qwen2.5-Math-1.5B has 4,096 positions, and prompts may
  take up to 512 of them. Longer MATH prompts are left out with a count (data.drop_long_prompts).
- 500 rollouts, not 10,400 updates on a 671B model: a budget for one host, to be raised.
- Sized for a TPU v5e slice of 8 chips (v5e:2x4, 16 GiB each; `python -m r1jax.compile_check
  --config=THIS --topology=v5e:2x4` prints the per-chip memory, benchmarks/RESULTS.md has it):
  fp32 master parameters and optimizer state, bf16 forward/backward on accelerators (fp32 on
  CPU), parameters and optimizer state sharded over every chip (FSDP: 1.5B x 16 bytes of
  parameters and AdamW state would not fit one chip replicated); 64 microbatches of 8 rows (one
  row of up to 3,584 tokens per chip at a time), each decoder block rematerialised in the
  backward pass (rl.layers="remat": without it one row's attention probabilities and
  activations over 28 blocks exceed a chip), log-probs over 512 positions at a time (a
  151,936-token vocabulary).
- In-loop evaluation every 50 steps on MATH-500 (eval/) and AIME 2024 (eval/aime24/), 4 samples
  per problem at the paper's T 0.6 / top-p 0.95, stopped at </answer> as training is.

``:smoke`` runs the same code path in seconds on a tiny checkpoint that tests/test_real_configs.py
writes (with a byte-level BPE tokenizer, as Qwen's); it keeps every setting but the sizes.
"""

import os

from ml_collections import config_dict

from r1jax.cli import load_experiment



def required():
    """A value only the user can give: None until set on the command line (main refuses None).
    A new one each time: ml_collections ties the keys that share one reference together."""
    return config_dict.placeholder(str)


def get_config(arg: str = ""):
    config = load_experiment(os.path.join(os.path.dirname(os.path.abspath(__file__)), "common.py"))
    config.model.update(name="qwen2.5-math-1.5b", hf_path=required(), dtype="float32")
    config.tokenizer = ""  # the checkpoint's
    config.data.update(template="r1_zero", max_prompt_tokens=512, drop_long_prompts=True,
                       sources={"math": {"path": required(), "format": "math",
                                         "reward": "accuracy"}})
    config.rewards = {"accuracy": 1.0, "format": 1.0}
    config.reward_workers = 8
    config.mesh.update(data=1, fsdp=-1, tensor=1)
    config.eval.update(benchmark="math500", also=("aime24",), data_dir=required(), n_problems=0,
                       k=4, max_new_tokens=3072)
    config.rl.update(dict(
        steps=500, prompts_per_step=32, group_size=16, max_new_tokens=3072, temperature=1.0,
        top_p=1.0, lr=3e-6, warmup_steps=0, schedule="constant", kl_coef=0.001,
        ref_refresh_every=400, num_minibatches=1, epochs=1, microbatches=64, logprob_chunk=512,
        layers="remat",
        correctness_reward="accuracy", checkpoint_every=25, eval_every=50))
    if arg == "smoke":
        config.model.name = ""  # the test's tiny checkpoint is no named model
        config.reward_workers = 2
        config.eval.update(n_problems=2, k=2, max_new_tokens=8)
        config.rl.update(dict(steps=2, prompts_per_step=8, group_size=4, max_new_tokens=12,
                              microbatches=2, logprob_chunk=8, checkpoint_every=1,
                              eval_every=2))
    elif arg:
        raise ValueError(f"unknown config argument {arg!r}; use '' or 'smoke'")
    return config
