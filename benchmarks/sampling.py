"""Sampler throughput: ``sampling.generate`` against two baselines measured in the same run.

    python benchmarks/sampling.py                      # tiny, toy-1m, toy-10m on this machine
    python benchmarks/sampling.py --configs=toy-1m --new_tokens=64
    python benchmarks/sampling.py --roofline           # GPU: qwen2.5-0.5b shape, bf16, 256 rows

For each config: B x G = 64 rows (8 prompts x 8 samples, prompts of 20-27 tokens), 256 new
tokens, temperature 1, no stop token (every row runs to the end, so tokens/s counts real work).
Rows of the table:
- ``generate``: one device.
- ``generate, N CPU devices``: the same call data-parallel over a mesh of N CPU devices
  (``--cpu_devices``, default: this machine's cores; XLA:CPU runs one computation on one core,
  so this is how a CPU-only machine uses all of them). Only on a CPU backend.
- ``straightforward KV cache``: the design the issue measured as its reference (6,000 tokens/s
  at ~1M, 1,500 at ~10M on this machine): every row prefilled, a jitted ``lax.scan`` of decode
  steps over a [B, K, S, E] key and value cache, einsum attention, ``jax.random.categorical``.
  The speed-up column is relative to it.
- ``naive recompute``: no cache, every step reruns the full forward pass over the whole
  [rows, prompt + new] buffer (``--naive_configs``).
Timings are the best of ``--repeats`` runs after a warm-up (compilation excluded and reported
separately).
"""

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from r1jax import mesh as mesh_lib
from r1jax import models, sampling
from r1jax.models.configs import rope_inv_freq


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


def straightforward_generate(cfg, params, prompts_BP, mask_BP, rng, num_samples,
                             max_new_tokens, temperature=1.0):
    """The reference design: prefill all B x G rows, then ``lax.scan`` one token per step.

    Written against the params tree directly (Qwen2 layout, untied head or tied embedding) so
    that it shares no code with the model's cached forward; temperature 0 is greedy (for the
    agreement check).
    """
    tokens = jnp.repeat(prompts_BP, num_samples, axis=0)
    mask = jnp.repeat(mask_BP, num_samples, axis=0)
    R, P = tokens.shape
    S, K, E = P + max_new_tokens, cfg.num_kv_heads, cfg.head_dim
    H = cfg.num_heads
    inv_freq = jnp.asarray(rope_inv_freq(cfg), jnp.float32)
    embed = params["embed"]["embedding"]
    head = embed.T if cfg.tie_embeddings else params["lm_head"]["kernel"]

    def norm(x, scale):
        return scale * x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + cfg.rms_eps)

    def rope(x, pos):  # x [R, heads, T, E], pos [R, T]
        ang = pos[:, None, :, None].astype(jnp.float32) * inv_freq
        x1, x2 = jnp.split(x, 2, axis=-1)
        cos, sin = jnp.cos(ang), jnp.sin(ang)
        return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)

    def heads(h, linear, n):  # [R, T, D] -> [R, n, T, E]
        out = h @ linear["kernel"] + linear["bias"]
        return out.reshape(R, h.shape[1], n, E).transpose(0, 2, 1, 3)

    def step(x_tokens, pos, caches, index, valid):  # x_tokens [R, T]; returns last logits
        T = x_tokens.shape[1]
        x = embed[x_tokens]
        allowed = valid[:, None, :] & (jnp.arange(S)[None, :] <= index + jnp.arange(T)[:, None])
        new_caches = []
        for layer, (k_cache, v_cache) in zip(params["layers"].values(), caches):
            a = layer["attn"]
            h = norm(x, layer["attn_norm"]["scale"])
            q, k = rope(heads(h, a["q_proj"], H), pos), rope(heads(h, a["k_proj"], K), pos)
            v = heads(h, a["v_proj"], K)
            k_cache = jax.lax.dynamic_update_slice(k_cache, k, (0, 0, index, 0))
            v_cache = jax.lax.dynamic_update_slice(v_cache, v, (0, 0, index, 0))
            new_caches.append((k_cache, v_cache))
            scores = jnp.einsum("rkgte,rkse->rkgts", q.reshape(R, K, H // K, T, E),
                                k_cache) * E ** -0.5
            probs = jax.nn.softmax(jnp.where(allowed[:, None, None], scores, -1e30), axis=-1)
            out = jnp.einsum("rkgts,rkse->rkgte", probs, v_cache).reshape(R, H, T, E)
            x = x + out.transpose(0, 2, 1, 3).reshape(R, T, H * E) @ a["o_proj"]["kernel"]
            m = layer["mlp"]
            h = norm(x, layer["mlp_norm"]["scale"])
            x = x + (jax.nn.silu(h @ m["gate_proj"]["kernel"]) * (h @ m["up_proj"]["kernel"])
                     ) @ m["down_proj"]["kernel"]
        return norm(x[:, -1], params["final_norm"]["scale"]) @ head, new_caches

    def draw(logits, key):
        if temperature == 0:
            return jnp.argmax(logits, -1).astype(jnp.int32)
        return jax.random.categorical(key, logits / temperature).astype(jnp.int32)

    caches = [(jnp.zeros((R, K, S, E)), jnp.zeros((R, K, S, E))) for _ in params["layers"]]
    valid = jnp.pad(mask, ((0, 0), (0, max_new_tokens)))
    positions = models.padding_positions(mask)
    logits, caches = step(tokens, positions, caches, 0, valid)
    lengths = jnp.sum(mask, -1)

    def decode(carry, t):
        logits, caches, valid = carry
        token = draw(logits, jax.random.fold_in(rng, t))
        valid = valid.at[:, P + t].set(True)
        logits, caches = step(token[:, None], (lengths + t)[:, None], caches, P + t, valid)
        return (logits, caches, valid), token

    return jax.lax.scan(decode, (logits, caches, valid), jnp.arange(max_new_tokens))[1].T


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


def baseline_agrees(steps=16):
    """Greedy tokens of the straightforward decoder equal those of ``generate`` (tiny, fp32)."""
    cfg = models.get_config("tiny")
    params = models.init(cfg, jax.random.key(1))
    prompts = [[5, 9, 17], [3, 1, 4, 1, 5, 9, 2, 6]]
    ours = sampling.generate(cfg, params, prompts, jax.random.key(0), max_new_tokens=steps,
                             temperature=0.0).tokens
    padded, mask = sampling.pad_prompts(prompts, sampling.prompt_bucket(8), 0)
    theirs = straightforward_generate(cfg, params, padded, mask, jax.random.key(0), 1, steps,
                                      temperature=0.0)
    return bool(jnp.all(ours == theirs))


def config_rows(name, args, mesh):
    """(what, best time s, compile s, speed-up over the straightforward decoder) for one config."""
    cfg = models.get_config(name)
    params = models.init(cfg, jax.random.key(0))
    prompts = [list(range(1, 21 + i)) for i in range(args.prompts)]
    padded, mask = sampling.pad_prompts(prompts, sampling.prompt_bucket(27), 0)

    def ours(seed, params=params, mesh=None):
        return sampling.generate(cfg, params, prompts, jax.random.key(seed),
                                 num_samples=args.samples, max_new_tokens=args.new_tokens,
                                 mesh=mesh).tokens

    def baseline(decoder):
        decoder = jax.jit(decoder, static_argnums=(0, 5, 6))
        return lambda seed: decoder(cfg, params, padded, mask, jax.random.key(seed),
                                    args.samples, args.new_tokens)

    runs = [(f"generate {name}", ours, args.repeats)]
    if mesh is not None:
        sharded = models.shard_params(cfg, params, mesh)
        runs.append((f"generate {name}, {mesh.size} CPU devices",
                     lambda seed: ours(seed, sharded, mesh), args.repeats))
    runs.append((f"straightforward KV cache {name}", baseline(straightforward_generate),
                 args.repeats))
    if name in args.naive_configs.split(","):
        runs.append((f"naive recompute {name}", baseline(naive_generate), 1))
    timed = [(what, *best_time(fn, repeats)) for what, fn, repeats in runs]
    reference = next(t for what, t, _ in timed if what.startswith("straightforward"))
    return [(what, t, c, reference / t) for what, t, c in timed]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="tiny,toy-1m,toy-10m")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--new_tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive_configs", default="tiny",
                        help="configs that also run the no-cache baseline (toy-1m's takes 9 "
                             "minutes on 2 CPU cores)")
    parser.add_argument("--cpu_devices", type=int, default=len(os.sched_getaffinity(0)),
                        help="CPU devices for the data-parallel row (default: the cores here)")
    parser.add_argument("--roofline", action="store_true",
                        help="qwen2.5-0.5b shape in bf16 against the memory roofline (a GPU)")
    args = parser.parse_args()
    if args.roofline:
        return roofline(args)
    mesh_lib.use_cpu_devices(args.cpu_devices)  # before any backend starts
    on_cpu = jax.default_backend() == "cpu"
    mesh = mesh_lib.make_mesh() if on_cpu and jax.device_count() > 1 else None
    if mesh is not None and args.prompts % jax.device_count():
        raise SystemExit(f"--prompts={args.prompts} does not split over {jax.device_count()} "
                         "CPU devices")

    shape = f"{args.prompts}x{args.samples} rows, {args.new_tokens} new"
    n_tokens = args.prompts * args.samples * args.new_tokens
    rows = [row for name in args.configs.split(",") for row in config_rows(name, args, mesh)]

    print(f"\njax {jax.__version__} on {jax.devices()[0].device_kind} "
          f"({jax.device_count()} device(s)); params {', '.join(args.configs.split(','))}: "
          + ", ".join(f"{models.num_params(models.get_config(n)) / 1e6:.2f}M"
                      for n in args.configs.split(",")))
    print(f"straightforward decoder's greedy tokens equal generate's (tiny, 16 steps): "
          f"{baseline_agrees()}")
    print(f"| {'what':40} | {'shape':26} | {'time s':>8} | {'tokens/s':>9} | {'compile s':>9} "
          f"| {'x straightforward':>17} |")
    print(f"|{'-' * 42}|{'-' * 28}|{'-' * 10}|{'-' * 11}|{'-' * 11}|{'-' * 19}|")
    for what, t, c, ratio in rows:
        print(f"| {what:40} | {shape:26} | {t:8.3f} | {n_tokens / t:9.0f} | {c:9.1f} "
              f"| {ratio:17.2f} |")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
