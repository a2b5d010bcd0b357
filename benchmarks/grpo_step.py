"""One R1-Zero step, split into its parts, and what asynchronous rewards save.

    python benchmarks/grpo_step.py [--steps 6]

Tiny config, B=16 prompts x G=8 samples, 64 new tokens, kl_coef > 0 (so the reference forward
runs), one minibatch. Part 1 times the pieces of one step on the host loop's own functions
(sample, reward scoring in the process pool, reference logprobs, the update). Part 2 runs the
whole loop for --steps steps with a reward that sleeps 10 ms per completion (a slow verifier),
synchronously and with ``rl.async_rewards``, and reports the wall time per step of each.
"""

import argparse
import os
import sys
import tempfile
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # reward workers import it
import slow_reward

from r1jax import metrics, models, optim, rewards, rl, rollout, tokenizers
from r1jax.mesh import make_mesh

rewards.register("slow_length", slow_reward.slow_length_reward)
CFG = models.get_config("tiny", vocab_size=320)


class Batches:
    def __init__(self, prompts):
        self.prompts, self.index = prompts, 0

    def __next__(self):
        self.index += 1
        return [{"prompt": p} for p in self.prompts]

    def get_state(self):
        return {"index": self.index}

    def set_state(self, state):
        self.index = state["index"]


def config(**overrides):
    c = rl.default_config()
    c.update(dict(steps=1, prompts_per_step=16, group_size=8, max_new_tokens=64, lr=1e-3,
                  kl_coef=0.01, stop_strings=(), checkpoint_every=10_000))
    c.update(overrides)
    return c


def timed(fn):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    rng = np.random.default_rng(0)
    lines = ["".join(rng.choice(list("abcdefghij "), size=60)) for _ in range(300)]
    tokenizer = tokenizers.train_sentencepiece(lines, os.path.join(tmp, "tok"), vocab_size=300)
    prompts = ["".join(rng.choice(list("abcdefghij"), size=12)) for _ in range(16)]
    mesh = make_mesh(devices=jax.devices()[:1])
    params = models.shard_params(CFG, models.init(CFG, jax.random.key(0)), mesh)

    with rewards.RewardScorer({"slow_length": 1.0}, num_workers=2) as scorer:
        c = config()
        settings = rl.UpdateSettings.from_config(c)
        collector = rollout.Collector(rollout.RolloutSettings.from_config(c), CFG, tokenizer,
                                      scorer, mesh)
        opt_state = optim.init_opt_state(settings.optimizer.make(), params, mesh)
        batch = next(Batches(prompts))
        rows = []
        for attempt in ("compile", "timed"):
            sampled, t_sample = timed(lambda: collector.sample(params, batch, jax.random.key(1)))
            ro, t_reward = timed(lambda: collector.score(sampled))
            mb = jax.device_put({"prompts": ro.prompts, "prompt_mask": ro.prompt_mask,
                                 "tokens": ro.tokens, "mask": ro.mask}, models.batch_sharding(mesh))
            _, t_ref = timed(lambda: rl.reference_logprobs(CFG, settings, params, mb))
            state = {"params": jax.tree.map(lambda x: x.copy(), params), "ref_params": params,
                     "opt_state": jax.tree.map(lambda x: x.copy(), opt_state)}
            _, t_train = timed(lambda: rl.learn(c, CFG, settings, state, ro, jax.random.key(2),
                                                mesh)[0]["params"])
            if attempt == "timed":
                tokens = int(ro.lengths.sum())
                total = t_sample + t_reward + t_train
                rows = [("sample (generate)", t_sample), ("reward (pool, 10 ms each)", t_reward),
                        ("reference logprobs", t_ref),
                        ("train (ref + advantages + update)", t_train), ("step total", total)]
        print(f"\njax {jax.__version__} on {jax.devices()[0].device_kind}; tiny config, "
              f"B=16 x G=8, 64 new tokens; {tokens} tokens generated")
        print("| part | time s | share |")
        print("|---|---|---|")
        for what, t in rows:
            print(f"| {what} | {t:.3f} | {t / total:.0%} |")
        print(f"\nthroughput: {tokens / total:,.0f} generated tokens/s for the whole step")

        walls = {}
        for mode in (False, True):
            workdir = tempfile.mkdtemp()
            rl.train(config(steps=args.steps, async_rewards=mode), workdir, CFG, params,
                     tokenizer, scorer, Batches(prompts), mesh)
            history = metrics.read_metrics(os.path.join(workdir, "metrics.jsonl"))[1:]
            walls[mode] = np.mean([h["time/sample_s"] + h["time/reward_s"] + h["time/train_s"]
                                   for h in history])
        print(f"\n| loop (steps 2-{args.steps}, compilation excluded) | wall s per step |")
        print("|---|---|")
        print(f"| synchronous rewards | {walls[False]:.3f} |")
        print(f"| async rewards (one step of policy lag) | {walls[True]:.3f} |")
        print(f"saved: {1 - walls[True] / walls[False]:.0%} of the step time")


if __name__ == "__main__":
    main()
