"""Evaluation throughput: problems/s of ``evaluate.run`` on the toy arithmetic test split.

    python benchmarks/evaluate.py                          # tiny and toy-1m, k=4, on this machine
    python benchmarks/evaluate.py --configs=toy-1m --problems=512 --prompts_per_batch=128

A randomly initialised model (so nearly every sample runs to ``--max_new_tokens``: the worst
case), the toy world's SentencePiece tokenizer, the R1-Zero template, T 0.6 / top-p 0.95, k
samples per problem. ``evaluate.run`` puts all k samples of ``--prompts_per_batch`` problems in one
sampler call; the baseline is the same code with one problem per call, as a per-problem loop
would do it (on the first ``--baseline_problems`` problems). Both are timed after a warm-up run
of the same shapes, so compilation is excluded (and reported separately).
"""

import argparse
import tempfile
import time

import jax

from r1jax import evaluate, models, stopping, tokenizers
from r1jax.data import benchmarks as benchmarks_data
from r1jax.data import CorpusConfig, corpus_documents
from r1jax.templates import r1_zero_prompt


def timed_run(cfg, params, tokenizer, problems, prompts_per_batch, args):
    """(summary of the timed run, seconds of the warm-up run that compiled its shapes)."""
    kwargs = {"k": args.k, "max_new_tokens": args.max_new_tokens,
              "prompts_per_batch": prompts_per_batch,
              "reward": benchmarks_data.BENCHMARKS["toy_arithmetic"].reward,
              "stop": stopping.stop_condition(tokenizer, ("</answer>",))}
    start = time.perf_counter()
    evaluate.run(cfg, params, tokenizer, problems[:prompts_per_batch], rng=jax.random.key(1),
                 **kwargs)
    warmup_s = time.perf_counter() - start
    summary, _ = evaluate.run(cfg, params, tokenizer, problems, rng=jax.random.key(0), **kwargs)
    return summary, warmup_s


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", default="tiny,toy-1m")
    p.add_argument("--problems", type=int, default=256)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--max_new_tokens", type=int, default=128)
    p.add_argument("--prompts_per_batch", type=int, default=64)
    p.add_argument("--baseline_problems", type=int, default=16, help="0: no baseline")
    args = p.parse_args()

    lines = list(corpus_documents(0, 2000, CorpusConfig(tasks=("arithmetic",))))
    problems = [{**ex, "prompt": r1_zero_prompt(ex["question"])}
                for ex in benchmarks_data.load("toy_arithmetic", n=args.problems)]
    print(f"{jax.devices()[0].device_kind}, {args.problems} toy arithmetic problems, k={args.k}, "
          f"{args.max_new_tokens} new tokens, {args.prompts_per_batch} problems per sampler call")
    print("| config | mode | problems/s | samples/s | tokens/s | mean length | compile s |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs.split(","):
            # The toy tokenizer needs more than tiny's 256 ids (byte fallback), as in the smoke run.
            cfg = models.get_config(name, vocab_size=max(512, models.get_config(name).vocab_size))
            tokenizer = tokenizers.train_sentencepiece(lines, f"{tmp}/{name}", cfg.vocab_size)
            params = models.init(cfg, jax.random.key(0))
            modes = [("batched", problems, args.prompts_per_batch)]
            if args.baseline_problems:
                modes.append(("per-problem", problems[:args.baseline_problems], 1))
            for mode, subset, per_call in modes:
                s, warmup_s = timed_run(cfg, params, tokenizer, subset, per_call, args)
                print(f"| {name} | {mode} | {s['problems_per_s']:.2f} | "
                      f"{s['problems_per_s'] * args.k:.1f} | {s['tokens_per_s']:.0f} | "
                      f"{s['length/mean']:.1f} | {warmup_s:.1f} |")


if __name__ == "__main__":
    main()
