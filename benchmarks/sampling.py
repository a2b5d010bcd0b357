"""Sampler throughput: ``sampling.generate`` against a naive full-recompute decoder, same run.

    python benchmarks/sampling.py                      # tiny, toy-1m, toy-10m on this machine
    python benchmarks/sampling.py --configs=toy-1m --new_tokens=64
    python benchmarks/sampling.py --roofline           # GPU: qwen2.5-0.5b shape, bf16, 256 rows

For each config: B x G = 64 rows (8 prompts x 8 samples, prompts of 20-27 tokens), 256 new
tokens, temperature 1, no stop token (every row runs to the end, so tokens/s counts real work).
The baseline is the same model decoded without a KV cache: every step reruns the full forward pass
over the whole [rows, prompt + new] buffer (jitted once, a ``lax.fori_loop``). Timings are the
best of ``--repeats`` runs after a warm-up (compilation excluded and reported separately).
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from r1jax import models, sampling


def naive_generate(cfg, params, prompts_BP, mask_BP, rng, num_samples, max_new_tokens):
    """Decode by recomputing the full forward pass for every new token (no cache)."""
    tokens = jnp.repeat(prompts_BP, num_samples, axis=0)
    mask = jnp.repeat(mask_BP, num_samples, axis=0)
    P = tokens.shape[1]
    tokens = jnp.pad(tokens, ((0, 0), (0, max_new_tokens)))
    mask = jnp.pad(mask, ((0, 0), (0, max_new_tokens)))

    def step(t, state):
        tokens, mask = state
        logits = models.forward(cfg, params, tokens, attention_mask_BT=mask)[:, P + t - 1]
        token = jax.random.categorical(jax.random.fold_in(rng, t), logits).astype(jnp.int32)
        return tokens.at[:, P + t].set(token), mask.at[:, P + t].set(True)

    return jax.lax.fori_loop(0, max_new_tokens, step, (tokens, mask))[0]


def best_time(fn, repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(0))
    compile_s = time.perf_counter() - start
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(i + 1))
        times.append(time.perf_counter() - start)
    return min(times), compile_s


def copy_bandwidth(n_bytes=2 << 30):
    """Bytes moved per second by a jitted device copy (read + write), best of 5."""
    x = jnp.ones((n_bytes // 4,), jnp.float32)
    copy = jax.jit(lambda a: a * 1.0)
    jax.block_until_ready(copy(x))
    best = min(_timed(lambda: jax.block_until_ready(copy(x))) for _ in range(5))
    return 2 * n_bytes / best


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def check_against_full_forward(cfg, params, prompts, steps=8):
    """Greedy decoding equals repeated argmax of the uncached forward pass (on this device)."""
    out = sampling.generate(cfg, params, prompts, jax.random.key(0), num_samples=1,
                            max_new_tokens=steps, temperature=0.0)
    mismatches = 0
    for b, prompt in enumerate(prompts):
        seq = list(prompt)
        for _ in range(steps):
            seq.append(int(jnp.argmax(models.forward(cfg, params, jnp.asarray([seq]))[0, -1])))
        mismatches += seq[len(prompt):] != np.asarray(out.tokens[b]).tolist()
    return mismatches


def roofline(args):
    """Decode step time of a qwen2.5-0.5b-shaped random bf16 model against the memory roofline.

    The per-step time is the difference of two runs (N and N/2 new tokens) divided by N/2, so
    the prefill cancels; bytes per step are all weights (the tied embedding is read whole by the
    output head) plus the KV cache up to the mean position of the steps measured.
    """
    cfg = models.get_config("qwen2.5-0.5b")
    params = models.init(cfg, jax.random.key(0), jnp.bfloat16)
    prompts = [list(range(1, 21 + i % 8)) for i in range(args.prompts)]
    rows, n = args.prompts * args.samples, args.new_tokens

    def run(new_tokens):
        def fn(seed):
            return sampling.generate(cfg, params, prompts, jax.random.key(seed),
                                     num_samples=args.samples, max_new_tokens=new_tokens).tokens
        return best_time(fn, args.repeats)[0]

    t_full, t_half = run(n), run(n // 2)
    step_s = (t_full - t_half) / (n - n // 2)
    weight_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
    mean_len = sampling.prompt_bucket(28) + (n + n // 2) / 2
    kv_bytes = 2 * cfg.num_layers * rows * cfg.num_kv_heads * mean_len * cfg.head_dim * 2
    bandwidth = copy_bandwidth()
    ideal_s = (weight_bytes + kv_bytes) / bandwidth
    small = models.get_config("tiny")
    mismatches = check_against_full_forward(small, models.init(small, jax.random.key(1)),
                                            [[5, 9, 17], [3, 1, 4, 1, 5, 9, 2, 6], [200]])
    print(f"\njax {jax.__version__} on {jax.devices()[0].device_kind}")
    print(f"greedy vs full-forward argmax mismatches (tiny, fp32): {mismatches}")
    print("| what | shape | decode step ms | tokens/s | roofline ms | fraction |")
    print("|---|---|---|---|---|---|")
    print(f"| generate qwen2.5-0.5b bf16 | {args.prompts}x{args.samples} rows, {n} new | "
          f"{step_s * 1e3:.2f} | {rows / step_s:,.0f} | {ideal_s * 1e3:.3f} | "
          f"{ideal_s / step_s:.0%} |")
    print(f"whole call: {t_full:.2f} s for {rows * n} tokens = {rows * n / t_full:,.0f} tokens/s; "
          f"weights {weight_bytes / 1e9:.2f} GB, KV cache read per step {kv_bytes / 1e9:.2f} GB, "
          f"copy bandwidth {bandwidth / 1e12:.2f} TB/s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="tiny,toy-1m,toy-10m")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--new_tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive_configs", default="tiny,toy-1m",
                        help="configs that also run the no-cache baseline (toy-10m's takes "
                             "over 10 minutes on 2 CPU cores)")
    parser.add_argument("--roofline", action="store_true",
                        help="qwen2.5-0.5b shape in bf16 against the memory roofline (a GPU)")
    args = parser.parse_args()
    if args.roofline:
        return roofline(args)

    rows = []
    for name in args.configs.split(","):
        cfg = models.get_config(name)
        params = models.init(cfg, jax.random.key(0))
        prompts = [list(range(1, 21 + i)) for i in range(args.prompts)]
        n_tokens = args.prompts * args.samples * args.new_tokens

        def ours(seed):
            return sampling.generate(cfg, params, prompts, jax.random.key(seed),
                                     num_samples=args.samples,
                                     max_new_tokens=args.new_tokens).tokens

        t_ours, c_ours = best_time(ours, args.repeats)
        shape = f"{args.prompts}x{args.samples} rows, {args.new_tokens} new"
        rows.append((f"generate {name}", shape, t_ours, n_tokens / t_ours, c_ours, 1.0))
        if name in args.naive_configs.split(","):
            padded, mask = sampling.pad_prompts(prompts, sampling.prompt_bucket(27), 0)
            naive = jax.jit(naive_generate, static_argnums=(0, 5, 6))

            def baseline(seed):
                return naive(cfg, params, padded, mask, jax.random.key(seed), args.samples,
                             args.new_tokens)

            t_naive, c_naive = best_time(baseline, 1)
            rows.append((f"naive recompute {name}", shape, t_naive, n_tokens / t_naive, c_naive,
                         t_naive / t_ours))

    print(f"\njax {jax.__version__} on {jax.devices()[0].device_kind} "
          f"({jax.device_count()} device(s)); params {', '.join(args.configs.split(','))}: "
          + ", ".join(f"{models.num_params(models.get_config(n)) / 1e6:.2f}M"
                      for n in args.configs.split(",")))
    print(f"| {'what':28} | {'shape':26} | {'time s':>8} | {'tokens/s':>9} | {'compile s':>9} "
          f"| {'speed-up of generate':>20} |")
    print(f"|{'-' * 30}|{'-' * 28}|{'-' * 10}|{'-' * 11}|{'-' * 11}|{'-' * 22}|")
    for what, shape, t, tps, c, ratio in rows:
        print(f"| {what:28} | {shape:26} | {t:8.3f} | {tps:9.0f} | {c:9.1f} | {ratio:20.1f} |")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
