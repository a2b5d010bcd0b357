"""One GRPO step on the workload r1jax is compared with TRL and tunix on, through `rl.train`.

    python benchmarks/grpo_peer_workload.py [--steps 16] [--cpu_devices 1 2]

The workload (the peers' harness times the same one in TRL's GRPOTrainer and tunix's
GRPOLearner; their scripts live outside this project): a random Qwen2-shaped ~1.1M-parameter
decoder (`toy-1m`: vocab 512, d 128, 4 layers, 4 q / 2 kv heads, ffn 512, float32), 8 prompts x
8 samples, prompts of exactly 24 SentencePiece tokens, exactly 64 new tokens (no stop token),
T 1.0, AdamW lr 1e-5 with clipping at 1, KL 0.04 with a reference forward, one update on all 64
completions, a trivial rule reward (the completion holds a "7").

Each device count runs in its own process (the CPU is split into JAX devices before JAX
starts). Per step, from step 3 on (the first two include compilation), medians of: the whole
loop iteration, its parts (sampling; rewards; reference pass + update), the process's CPU seconds
per wall second (how many cores it used) and its minor page faults (memory the kernel had to
map afresh: allocation churn). "update compiles" is how many programs the update compiled for the
whole run (1: every step reused the first). Each device count runs four ways, each adding one
change to the one before: as r1jax ran before issue 18's changes (no huge pages, every completion
row with its own copy of the prompt in the reference pass and the update, the Linear layers'
kernel gradient in JAX's own form), with huge pages for glibc's malloc (`r1jax.huge_pages`,
which `python -m r1jax.main` sets), with each prompt computed once per group (`rl.prompt_share`),
and with the kernel gradient's transposed copy made of the narrower of x and dy
(`models.transformer._matmul`): what `rl.train` does.
"""

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # reward workers import it

PROMPTS, PROMPT_TOKENS, GROUP, NEW_TOKENS = 8, 24, 8, 64


def workload(tmp):
    """(tokenizer, prompts): a 512-piece SentencePiece model and 8 prompts of exactly 24 tokens
    (random words and numbers, as the peers' harness makes them)."""
    from r1jax import tokenizers

    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), rng.integers(2, 8)))
             for _ in range(400)]

    def sentence(n):
        return " ".join(str(rng.integers(1000)) if rng.random() < 0.15 else rng.choice(words)
                        for _ in range(n))

    tokenizer = tokenizers.train_sentencepiece([sentence(rng.integers(5, 16)) for _ in range(4000)],
                                               os.path.join(tmp, "sp"), vocab_size=512)
    prompts = []
    while len(prompts) < PROMPTS:
        text = tokenizer.decode(tokenizer.encode(sentence(20))[:PROMPT_TOKENS])
        if len(tokenizer.encode(text)) == PROMPT_TOKENS and text not in prompts:
            prompts.append(text)
    return tokenizer, prompts


class CompileLog(logging.Handler):
    """The names of the programs JAX compiles from now on (its compile log, kept from the
    console)."""

    def __init__(self):
        super().__init__()
        import jax

        self.names = []
        jax.config.update("jax_log_compiles", True)
        logger = logging.getLogger("jax._src.dispatch")
        logger.addHandler(self)
        logger.propagate = False

    def emit(self, record):
        message = record.getMessage()
        if message.startswith("Finished XLA compilation of "):
            self.names.append(message.split()[4])

    def count(self, name: str) -> int:
        return self.names.count(name)


def measure(steps: int) -> dict:
    """Run the workload for ``steps`` steps in this process; its per-step medians."""
    import jax

    import peer_reward
    from grpo_step import Batches  # the same prompts at every step
    from r1jax import metrics, models, rewards, rl
    from r1jax.mesh import make_mesh

    rewards.register("has7", peer_reward.has7_reward)
    compiles = CompileLog()
    tmp = tempfile.mkdtemp(prefix="r1jax_peer_")
    tokenizer, prompts = workload(tmp)
    tokenizer.eos_id = -1  # no stop token: every completion is exactly NEW_TOKENS long
    cfg = models.get_config("toy-1m", vocab_size=512)
    c = rl.default_config()
    c.update(dict(steps=steps, prompts_per_step=PROMPTS, group_size=GROUP,
                  max_new_tokens=NEW_TOKENS, temperature=1.0, lr=1e-5, b2=0.999, kl_coef=0.04,
                  stop_strings=(), checkpoint_every=10**6, samples_logged=1, eval_every=1))
    marks = []  # (wall, cpu seconds, minor faults) at the end of each step

    def mark(step, params):  # the loop's per-step hook, called after the update
        usage = resource.getrusage(resource.RUSAGE_SELF)
        marks.append((time.perf_counter(), usage.ru_utime + usage.ru_stime, usage.ru_minflt))
        return {}

    with rewards.RewardScorer({"has7": 1.0}, num_workers=2) as scorer:
        rl.train(c, os.path.join(tmp, "run"), cfg, models.init(cfg, jax.random.key(0)),
                 tokenizer, scorer, Batches(prompts), make_mesh(devices=jax.devices()),
                 evaluate=mark)
    history = metrics.read_metrics(os.path.join(tmp, "run", "metrics.jsonl"))
    timed = range(2, steps)  # steps 3.. (0-based 2..): both compiles are behind
    wall, cpu, faults = (np.array([marks[i][k] - marks[i - 1][k] for i in timed])
                         for k in range(3))

    def median(key):
        return float(np.median([history[i][key] for i in timed]))

    return dict(devices=jax.device_count(), step_s=float(np.median(wall)),
                sample_s=median("time/sample_s"), reward_s=median("time/reward_s"),
                train_s=median("time/train_s"), cores=float(np.median(cpu / wall)),
                faults=float(np.median(faults)), update_compiles=compiles.count("jit(update)"),
                jax=jax.__version__)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--cpu_devices", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child: this many devices
    parser.add_argument("--prompt_per_row", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--jax_kernel_grad", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        from r1jax import rl
        from r1jax.mesh import use_cpu_devices

        use_cpu_devices(args.one)
        if args.prompt_per_row:  # the update as it was: every row recomputes its prompt
            rl.prompt_share = lambda c, mesh: 1
        if args.jax_kernel_grad:  # the Linear layers' backward as JAX derives it
            import jax

            from r1jax.models import transformer

            transformer._linear_dot_general = lambda x, kernel, dims, **kw: \
                jax.lax.dot_general(x, kernel, dims)
        print("RESULT " + json.dumps(measure(args.steps)))
        return
    from r1jax import huge_pages

    plain = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    results = []
    for devices in args.cpu_devices:
        for with_huge_pages, shared, narrower_copy in (
                (False, False, False), (True, False, False), (True, True, False),
                (True, True, True)):
            env = huge_pages.environment(plain) if with_huge_pages else plain
            flags = ([] if shared else ["--prompt_per_row"]) + (
                [] if narrower_copy else ["--jax_kernel_grad"])
            out = subprocess.run([sys.executable, __file__, f"--steps={args.steps}",
                                  f"--one={devices}"] + flags,
                                 capture_output=True, text=True, check=True,
                                 env={**env, "JAX_PLATFORMS": "cpu"}).stdout
            result = json.loads(out.split("RESULT ", 1)[1])
            results.append({**result, "huge_pages": with_huge_pages, "shared": shared,
                            "narrower_copy": narrower_copy})
    base = results[0]["step_s"]
    tokens = PROMPTS * GROUP * NEW_TOKENS
    print(f"\njax {results[0]['jax']}; toy-1m, {PROMPTS} prompts x {GROUP} samples, "
          f"{PROMPT_TOKENS}-token prompts, {NEW_TOKENS} new tokens; medians of steps "
          f"3-{args.steps}")
    print("| CPU devices | huge pages | prompt once per group | narrower copy in kernel gradient "
          "| step s | sample s | reward s | ref + update s | generated tokens/s | cores used "
          "| page faults/step | update compiles | step vs first row |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['devices']} | {'yes' if r['huge_pages'] else 'no'} "
              f"| {'yes' if r['shared'] else 'no'} | {'yes' if r['narrower_copy'] else 'no'} "
              f"| {r['step_s']:.3f} | {r['sample_s']:.3f} | {r['reward_s']:.3f} "
              f"| {r['train_s']:.3f} | {tokens / r['step_s']:,.0f} | {r['cores']:.2f} "
              f"| {r['faults']:,.0f} | {r['update_compiles']} | {r['step_s'] / base:.2f}x |")


if __name__ == "__main__":
    main()
