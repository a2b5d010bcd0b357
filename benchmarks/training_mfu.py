"""The GRPO training step's model-flops utilisation: the reference pass and one policy update.

    python benchmarks/training_mfu.py                               # a GPU: qwen2.5-1.5b, bf16
    python benchmarks/training_mfu.py --model=toy-1m --prompt_len=32 --new_tokens=64 \
        --logprob_chunk=0                                           # a CPU: toy shape

Random weights of ``--model``; ``--rows`` completions of ``--new_tokens`` after prompts of
``--prompt_len`` tokens; bf16 compute on float32 master weights; the reference log-probs
(`rl.reference_logprobs`) and then one AdamW update (`rl.update`, KL 0.04), each timed on its
own as the best of ``--repeats`` after a compiling call. Model flops per token are 2 x the
matmul weights (the embedding lookup is free, the output head is not) plus the causal
attention's 2 x layers x heads x head_dim x mean context for a forward pass, and three times that
for forward + backward; MFU is model flops over time over the device's peak dense bf16 rate
(``--peak_tflops``, known for H100/H200; none on a CPU). Remat's recomputation is work the
hardware does that MFU does not count.
"""

import argparse

import jax
import numpy as np
from sampling import best_time  # benchmarks/sampling.py: best of repeats after a compiling call

from r1jax import models, optim, rl
from r1jax.mesh import make_mesh

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0}  # dense, SXM: NVIDIA's data sheets


def peak_tflops(device) -> float | None:
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device.device_kind), None)


def forward_flops_per_token(cfg, context: float) -> float:
    """Model flops of one token's forward pass at mean attention ``context`` (keys attended)."""
    abstract = models.abstract_params(cfg)
    matmul = models.num_params(cfg) - abstract["embed"]["embedding"].size * (
        0 if cfg.tie_embeddings else 1)  # a tied embedding is the head's matmul too
    return 2 * matmul + 2 * 2 * cfg.num_layers * cfg.num_heads * cfg.head_dim * context


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="qwen2.5-1.5b")
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--prompt_len", type=int, default=256)
    parser.add_argument("--new_tokens", type=int, default=768)
    parser.add_argument("--microbatches", type=int, default=1)
    parser.add_argument("--layers", default="loop", choices=models.LAYER_MODES)
    parser.add_argument("--logprob_chunk", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peak_tflops", type=float, default=None)
    args = parser.parse_args()

    cfg = models.get_config(args.model)
    mesh = make_mesh()
    c = rl.default_config()
    c.update(dict(steps=1, max_new_tokens=args.new_tokens, compute_dtype="bfloat16",
                  kl_coef=0.04, lr=1e-6, layers=args.layers, logprob_chunk=args.logprob_chunk,
                  microbatches=args.microbatches))
    s = rl.UpdateSettings.from_config(c)
    params = models.shard_params(cfg, models.init(cfg, jax.random.key(0)), mesh)
    opt_state = optim.init_opt_state(s.optimizer.make(), params, mesh)
    rng = np.random.default_rng(0)
    R, P, N = args.rows, args.prompt_len, args.new_tokens
    batch = dict(prompts=rng.integers(1, cfg.vocab_size, (R, P), dtype=np.int32),
                 prompt_mask=np.ones((R, P), bool),
                 tokens=rng.integers(1, cfg.vocab_size, (R, N), dtype=np.int32),
                 mask=np.ones((R, N), bool), loss_mask=np.ones((R, N), bool),
                 logprobs=np.full((R, N), -2.0, np.float32),
                 advantages=rng.standard_normal(R).astype(np.float32))

    reference_s, _ = best_time(
        lambda _: rl.reference_logprobs(cfg, s, params, rl._put(mesh, batch)), args.repeats)
    batch["ref_logprobs"] = np.asarray(rl.reference_logprobs(cfg, s, params,
                                                             rl._put(mesh, batch)))
    minibatch = rl._put(mesh, optim.split_microbatches(batch, args.microbatches), axis=1)
    state = [params, opt_state]

    def one_update(_):  # donates its inputs: each call starts from the last call's outputs
        state[0], state[1], out = rl.update(cfg, s, state[0], state[1], minibatch)
        return out["loss"]

    update_s, _ = best_time(one_update, args.repeats)
    tokens = R * (P + N)
    per_token = forward_flops_per_token(cfg, (P + N) / 2)
    peak = args.peak_tflops or peak_tflops(jax.devices()[0])
    device = f"{jax.device_count()} x {jax.devices()[0].device_kind}"
    print(f"\njax {jax.__version__} on {device}; {args.model} "
          f"({models.num_params(cfg) / 1e6:,.1f}M params), bf16 compute, {R} rows x "
          f"({P} prompt + {N} new) tokens, layers={args.layers}, "
          f"logprob_chunk={args.logprob_chunk}, microbatches={args.microbatches}")
    print("| what | time s | tokens/s | model TFLOP/s | MFU |")
    print("|---|---|---|---|---|")
    for what, seconds, flops in (("reference pass", reference_s, per_token * tokens),
                                 ("policy update", update_s, 3 * per_token * tokens),
                                 ("training step (both)", reference_s + update_s,
                                  4 * per_token * tokens)):
        tflops = flops / seconds / 1e12
        mfu = f"{tflops / peak:.1%}" if peak else "n/a (no peak known)"
        print(f"| {what} | {seconds:.3f} | {tokens / seconds:,.0f} | {tflops:.2f} | {mfu} |")


if __name__ == "__main__":
    main()
