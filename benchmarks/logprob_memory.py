"""Peak memory of the training log-probs, dense vs chunked (models.token_logprobs(chunk=...)).

    python benchmarks/logprob_memory.py [--config qwen2.5-0.5b] [--seq 1024] [--batch 1]

Each row runs, in a fresh process, one jitted value-and-gradient of sum(log-probs) +
sum(entropies) over random tokens for a randomly initialised model of the named shape (float32,
as training on CPU keeps it) and reports the process's peak resident memory (ru_maxrss) and the
step's time. The parameters and their gradient are the same in every row (4 bytes x params x
about 3 with the step's copies), so the difference between rows is what the logits cost: the
dense row holds [B, T, V] float32 logits, their log-softmax and its gradient at once; a chunked
row holds B x chunk x V at a time and recomputes each chunk's logits in the backward pass.
"""

import argparse
import json
import resource
import subprocess
import sys
import time


def one_row(config: str, batch: int, seq: int, chunk: int) -> dict:
    """Run in a child process: {"peak_gb", "step_s"} of one value-and-grad step."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from r1jax import models

    cfg = models.get_config(config)
    params = models.init(cfg, jax.random.key(0))
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, cfg.vocab_size, (batch, seq)),
                         jnp.int32)
    mask = jnp.ones((batch, seq), bool)

    def objective(p):
        logprobs, entropy = models.token_logprobs(cfg, p, tokens, mask, 1.0, chunk=chunk)
        return jnp.sum(logprobs) + jnp.sum(entropy)

    step = jax.jit(jax.value_and_grad(objective))
    jax.block_until_ready(step(params))  # compile
    start = time.perf_counter()
    jax.block_until_ready(step(params))
    return {"peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
            "step_s": time.perf_counter() - start}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="qwen2.5-0.5b")
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--chunks", default="0,256")
    parser.add_argument("--row", type=int, help=argparse.SUPPRESS)  # the child's chunk
    args = parser.parse_args()
    if args.row is not None:
        print(json.dumps(one_row(args.config, args.batch, args.seq, args.row)))
        return
    from r1jax import models

    cfg = models.get_config(args.config)
    print(f"{args.config} ({models.num_params(cfg) / 1e9:.2f}B params, vocab {cfg.vocab_size}); "
          f"[B, T, V] float32 logits = {args.batch * args.seq * cfg.vocab_size * 4 / 1e9:.2f} GB")
    print("| what | shape | peak RSS GB | ratio to dense | step s |")
    print("|---|---|---|---|---|")
    dense = None
    for chunk in (int(c) for c in args.chunks.split(",")):
        out = subprocess.run([sys.executable, __file__, f"--config={args.config}",
                              f"--seq={args.seq}", f"--batch={args.batch}", f"--row={chunk}"],
                             capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        dense = dense or row["peak_gb"]
        what = "dense logits" if chunk == 0 else f"logits in chunks of {chunk} positions"
        print(f"| value+grad of log-probs, {what} | B={args.batch}, T={args.seq} | "
              f"{row['peak_gb']:.2f} | {row['peak_gb'] / dense:.2f} | {row['step_s']:.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
