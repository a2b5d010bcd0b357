"""Peak memory, step and compile time of the training log-probs: dense or chunked logits
(``models.token_logprobs(chunk=...)``), and the decoder blocks looped, rematerialised or scanned
(``layers=...``).

    python benchmarks/logprob_memory.py [--config qwen2.5-0.5b] [--seq 1024] [--batch 1] \
        [--chunks 0,256] [--layers loop]
    python benchmarks/logprob_memory.py --chunks 256 --layers loop,remat,scan

Each row (one per chunk x layers pair) runs, in a fresh process, one jitted value-and-gradient
of sum(log-probs) + sum(entropies) over random tokens for a randomly initialised model of the
named shape (float32, as training on CPU keeps it). It reports the process's peak resident
memory (ru_maxrss, which includes what XLA used while compiling), the time to trace and compile
the step (``lower().compile()``), and the wall and CPU time (all threads) of a step after one
warm-up step; on a shared machine the CPU time is the steadier. The parameters and their gradient
are the same in every row, so the differences are what the logits cost (the dense row holds
[B, T, V] float32 logits, their log-softmax and its gradient at once; a chunked row B x chunk x V
at a time, recomputing each chunk's logits in the backward pass) and what each layers mode keeps
for the backward pass ("loop": every block's activations; "remat" and "scan": each block's input
only, plus for "scan" a stacked copy of the block weights and of their gradient).
"""

import argparse
import json
import resource
import subprocess
import sys
import time


def one_row(config: str, batch: int, seq: int, chunk: int, layers: str) -> dict:
    """Run in a child process: peak_gb, compile_s, step_s and step_cpu_s of one step."""
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
        logprobs, entropy = models.token_logprobs(cfg, p, tokens, mask, 1.0, chunk=chunk,
                                                  layers=layers)
        return jnp.sum(logprobs) + jnp.sum(entropy)

    start = time.perf_counter()
    step = jax.jit(jax.value_and_grad(objective)).lower(params).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(step(params))  # warm-up
    start, start_cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(step(params))
    return {"peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
            "compile_s": compile_s, "step_s": time.perf_counter() - start,
            "step_cpu_s": time.process_time() - start_cpu}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="qwen2.5-0.5b")
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--chunks", default="0,256")
    parser.add_argument("--layers", default="loop")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # the child's "chunk,layers"
    args = parser.parse_args()
    if args.row is not None:
        chunk, layers = args.row.split(",")
        print(json.dumps(one_row(args.config, args.batch, args.seq, int(chunk), layers)))
        return
    from r1jax import models

    cfg = models.get_config(args.config)
    print(f"{args.config} ({models.num_params(cfg) / 1e9:.2f}B params, {cfg.num_layers} layers, "
          f"vocab {cfg.vocab_size}); B={args.batch}, T={args.seq}; [B, T, V] float32 logits = "
          f"{args.batch * args.seq * cfg.vocab_size * 4 / 1e9:.2f} GB")
    print("| logits | layers | peak RSS GB | ratio to the first row | step s | step CPU s | "
          "compile s |")
    print("|---|---|---|---|---|---|---|")
    first = None
    for chunk in (int(c) for c in args.chunks.split(",")):
        for layers in args.layers.split(","):
            out = subprocess.run([sys.executable, __file__, f"--config={args.config}",
                                  f"--seq={args.seq}", f"--batch={args.batch}",
                                  f"--row={chunk},{layers}"],
                                 capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            first = first or row["peak_gb"]
            logits = "dense" if chunk == 0 else f"chunks of {chunk} positions"
            print(f"| {logits} | {layers} | {row['peak_gb']:.2f} | {row['peak_gb'] / first:.2f} "
                  f"| {row['step_s']:.1f} | {row['step_cpu_s']:.1f} | {row['compile_s']:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
