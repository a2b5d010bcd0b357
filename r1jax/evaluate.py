"""Evaluation with the R1 paper's protocol: k samples per problem at T 0.6 / top-p 0.95, then
pass@1 (mean correctness over the k samples), cons@k (majority vote) and unbiased pass@k.

    summary, records = run(cfg, params, tokenizer, problems, k=16, max_new_tokens=1024,
                           judge=BENCHMARKS["math500"].judge, rng=jax.random.key(0))
    print(markdown_table(summary))

    python -m r1jax.evaluate --checkpoint=DIR --benchmark=aime24 [--k=64] [--max_new_tokens=N] \
        --data_dir=DATA --out=aime24.json

DIR is an r1jax workdir (its latest checkpoint, config.json and tokenizer) or an HF checkpoint
directory (config.json, *.safetensors, tokenizer.json). Benchmarks, their files and judges are in
`r1jax.benchmarks_data`. The training loop uses the same `run` through `training_hook`.

cons@k groups the extracted answers of a problem by equivalence (`math_equal`, so "1/2", "0.5" and
"\\frac{1}{2}" vote together), not by string; samples without an answer do not vote. Each answer
joins the first group whose first answer it is equivalent to. The largest group wins; among
groups of equal size the one whose first answer was sampled earliest wins (samples are i.i.d., so
this is a fair tie-break that is fixed by the rng). The vote is correct when the winning group's
first answer is; a problem with no answer at all counts as wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import jinja2.sandbox
import numpy as np

from r1jax import benchmarks_data, metrics, models, sampling, templates, tokenizers
from r1jax.benchmarks_data import BENCHMARKS, math_equivalent
from r1jax.models.sharding import BATCH_AXES

THINK_PREFIX = "<think>\n"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k), computed as
    1 - prod_{j=n-c+1..n} (1 - k/j) (Codex §2.1), which is 1 exactly when n - c < k."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def majority_vote(answers, equivalent=math_equivalent) -> int | None:
    """Index of the sample that represents the winning answer group (its earliest sample), or
    None when no sample has an answer; the grouping and tie-break are in the module docstring."""
    groups: list[list[int]] = []  # sample indices; groups[g][0] is the group's representative
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        group = next((g for g in groups if equivalent(answer, answers[g[0]])), None)
        if group is None:
            groups.append([i])
        else:
            group.append(i)
    # max() keeps the first of equal sizes, and groups are in order of their first sample.
    return max(groups, key=len)[0] if groups else None


def _problem_record(problem, texts, lengths, truncated, judge, equivalent, k):
    verdicts = [judge(text, problem) for text in texts]
    correct = [bool(c) for c, _ in verdicts]
    answers = [a for _, a in verdicts]
    winner = majority_vote(answers, equivalent)
    return {"id": problem.get("id"), "prompt": problem["prompt"], "gold": problem.get("answer"),
            "completions": texts, "answers": answers, "correct": correct,
            "lengths": [int(n) for n in lengths], "truncated": [bool(t) for t in truncated],
            "pass@1": sum(correct) / k,
            "cons_answer": None if winner is None else answers[winner],
            "cons_correct": winner is not None and correct[winner]}


def summarize(records, k: int, pass_ks=()) -> dict:
    """The benchmark's numbers from its per-problem records (see `run`)."""
    lengths = np.concatenate([r["lengths"] for r in records]).astype(np.float64)
    texts = [t for r in records for t in r["completions"]]
    counts = metrics.reflection_counts(texts)
    n_correct = [sum(r["correct"]) for r in records]
    summary = {"n_problems": len(records), "k": k,
               "pass@1": float(np.mean([c / k for c in n_correct])),
               "cons@k": float(np.mean([r["cons_correct"] for r in records])),
               "pass@k": float(np.mean([pass_at_k(k, c, k) for c in n_correct]))}
    for j in sorted(set(pass_ks) - {1, k}):
        if j < k:
            summary[f"pass@{j}"] = float(np.mean([pass_at_k(k, c, j) for c in n_correct]))
    summary.update({
        "answered_frac": float(np.mean([a is not None for r in records for a in r["answers"]])),
        "length/mean": float(lengths.mean()), "length/median": float(np.median(lengths)),
        "length/max": float(lengths.max()),
        "truncated_frac": float(np.mean([t for r in records for t in r["truncated"]])),
        "reflect/rate": float(counts["total"].mean()),
        "reflect/wait_rate": float(counts["wait"].mean())})
    return summary


def run(cfg, params, tokenizer, problems, *, k: int, max_new_tokens: int, judge, rng,
        temperature: float = 0.6, top_p: float = 0.95, prompts_per_batch: int = 8,
        stop_tokens=None, equivalent=math_equivalent, pass_ks=(), mesh=None):
    """Sample k completions for each problem (a dict with the templated "prompt" and whatever
    `judge(completion, problem) -> (correct, answer)` reads), judge them; (summary, records).

    `prompts_per_batch` problems go to the sampler in one call, all k samples of each in the same
    call; the last batch is padded with copies of its first problem (their samples are dropped)
    so every call has the same shape. The batch starting at problem b is sampled with
    fold_in(rng, b) while the host judges the batch before it. `max_new_tokens` is lowered to fit the model's max_position after the
    longest prompt; the summary holds the value used. With a mesh, params should be placed on it
    and the batch is rounded up to a multiple of its data-parallel size.
    """
    if not problems or k < 1:
        raise ValueError(f"run needs problems and k >= 1, got {len(problems)} problems, k={k}")
    start = time.perf_counter()
    prompts = [tokenizer.encode(p["prompt"]) for p in problems]
    max_new_tokens = min(max_new_tokens, cfg.max_position - max(map(len, prompts)))
    if max_new_tokens < 1:
        raise ValueError(f"the longest prompt ({max(map(len, prompts))} tokens) leaves no room "
                         f"to generate within max_position {cfg.max_position}")
    stop_tokens = tuple(stop_tokens or (tokenizer.eos_id,))
    size = min(prompts_per_batch, len(problems))
    if mesh is not None:
        data = int(np.prod([mesh.shape[a] for a in BATCH_AXES]))
        size = -(-size // data) * data

    def sample(b):
        batch = prompts[b:b + size]
        return b, sampling.generate(
            cfg, params, batch + [batch[0]] * (size - len(batch)), jax.random.fold_in(rng, b),
            num_samples=k, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
            stop_tokens=stop_tokens, pad_id=tokenizer.pad_id, mesh=mesh)

    def judge_batch(b, out):
        tokens, lengths = jax.device_get((out.tokens, out.lengths))
        for i, problem in enumerate(problems[b:b + size]):
            rows = range(i * k, (i + 1) * k)
            last = [tokens[r, max(lengths[r] - 1, 0)] for r in rows]
            truncated = [lengths[r] == max_new_tokens and t not in stop_tokens
                         for r, t in zip(rows, last)]
            texts = [tokenizer.decode(tokens[r, :lengths[r]]) for r in rows]
            records.append(_problem_record(problem, texts, lengths[i * k:(i + 1) * k],
                                           truncated, judge, equivalent, k))

    records, pending = [], None
    for b in range(0, len(problems), size):
        sampled = sample(b)  # dispatched asynchronously: it runs while the host judges `pending`
        if pending is not None:
            judge_batch(*pending)
        pending = sampled
    judge_batch(*pending)
    elapsed = time.perf_counter() - start
    summary = summarize(records, k, pass_ks)
    summary.update({"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p,
                    "time_s": elapsed, "problems_per_s": len(problems) / elapsed,
                    "tokens_per_s": float(sum(sum(r["lengths"]) for r in records)) / elapsed})
    return summary, records


def training_hook(cfg, tokenizer, problems, judge, *, k: int, max_new_tokens: int, seed: int = 0,
                  prefix: str = "eval/", **run_kwargs):
    """An `evaluate(step, params) -> metrics` for rl.train: `run` on held-out problems (with
    "prompt" filled in), its numbers under `prefix`; the rng depends on the step only."""
    def evaluate(step, params):
        summary, _ = run(cfg, params, tokenizer, problems, k=k, max_new_tokens=max_new_tokens,
                         judge=judge, rng=jax.random.fold_in(jax.random.key(seed), step),
                         **run_kwargs)
        return {prefix + key: value for key, value in summary.items()}
    return evaluate


def markdown_table(summary: dict) -> str:
    """The summary as a two-column markdown table, in its key order."""
    def cell(value):
        return f"{value:.4f}" if isinstance(value, float) else str(value)
    return "\n".join(["| metric | value |", "|---|---|"]
                     + [f"| {key} | {cell(value)} |" for key, value in summary.items()])


# --- Checkpoints and prompt templates ---------------------------------------------------------


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    return json.loads(path.read_text())


def _restore_workdir(workdir: Path, dtype, mesh):
    """(cfg, params, tokenizer path) from an r1jax workdir: the latest checkpoint's policy params
    (only those are read), the model and tokenizer named by its config.json."""
    import orbax.checkpoint as ocp

    from r1jax.models.hf import config_from_hf

    config = _read_json(workdir / "config.json")
    model = config.get("model") or {}
    if model.get("hf_path"):
        hf_config = Path(model["hf_path"]) / "config.json"
        cfg = config_from_hf(_read_json(hf_config), str(hf_config))
    elif model.get("name"):
        cfg = models.get_config(model["name"], **(
            {"vocab_size": model["vocab_size"]} if model.get("vocab_size") else {}))
    else:
        raise ValueError(f"{workdir / 'config.json'} names no model (model.name or model.hf_path)")
    dtype = jnp.dtype(dtype or model.get("dtype", "float32"))
    abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                            models.abstract_params(cfg, dtype),
                            models.param_shardings(cfg, mesh, dtype))
    manager = ocp.CheckpointManager((workdir / "checkpoints").absolute())
    step = manager.latest_step()
    if step is None:
        raise FileNotFoundError(f"{workdir / 'checkpoints'} holds no complete checkpoint")
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item={"params": abstract}, partial_restore=True,
        restore_args={"params": ocp.checkpoint_utils.construct_restore_args(abstract)})))
    manager.close()
    tokenizer_path = config.get("tokenizer") or model.get("hf_path") or workdir
    return cfg, restored["state"]["params"], tokenizer_path


def load_checkpoint(path, dtype=None, mesh=None):
    """(cfg, params, tokenizer, tokenizer directory) of an r1jax workdir or an HF checkpoint
    directory; params placed on `mesh` (one device when None)."""
    from r1jax.mesh import make_mesh

    path, mesh = Path(path), mesh or make_mesh(devices=jax.devices()[:1])
    if (path / "checkpoints").is_dir():
        cfg, params, tokenizer_path = _restore_workdir(path, dtype, mesh)
    elif (path / "config.json").is_file() and any(path.glob("*.safetensors")):
        cfg, params = models.load_hf(str(path), dtype=jnp.dtype(dtype or "float32"), mesh=mesh)
        tokenizer_path = path
    else:
        raise FileNotFoundError(f"{path} is neither an r1jax workdir (with checkpoints/) nor an "
                                f"HF checkpoint directory (config.json and *.safetensors)")
    tokenizer_dir = Path(tokenizer_path)
    tokenizer_dir = tokenizer_dir if tokenizer_dir.is_dir() else tokenizer_dir.parent
    return cfg, params, tokenizers.load_tokenizer(tokenizer_path), tokenizer_dir


def chat_template(tokenizer_dir) -> str | None:
    """The jinja2 chat template of an HF tokenizer: chat_template.jinja, else the "chat_template"
    of tokenizer_config.json (a string, or a list of named templates whose "default" is taken)."""
    tokenizer_dir = Path(tokenizer_dir)
    if (tokenizer_dir / "chat_template.jinja").is_file():
        return (tokenizer_dir / "chat_template.jinja").read_text()
    config_file = tokenizer_dir / "tokenizer_config.json"
    template = _read_json(config_file).get("chat_template") if config_file.is_file() else None
    if isinstance(template, list):
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    return template


def render_chat(template: str, messages, special_tokens: dict) -> str:
    """`template` rendered as transformers renders chat templates, with the generation prompt."""
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda x, indent=None, **_: json.dumps(x, ensure_ascii=False,
                                                                    indent=indent)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=messages, add_generation_prompt=True,
                                            **special_tokens)


def prompt_function(template: str, tokenizer_dir):
    """(name, question -> prompt text). "r1_zero": the R1-Zero template. "r1_usage": DeepSeek's
    usage recommendation: the question and the \\boxed{} instruction as the only (user) message of
    the checkpoint's chat template, the response forced to begin with "<think>\\n". "auto":
    r1_usage when the checkpoint has a chat template, else r1_zero."""
    source = chat_template(tokenizer_dir)
    if template == "auto":
        template = "r1_zero" if source is None else "r1_usage"
    if template == "r1_zero":
        return template, templates.r1_zero_prompt
    if template != "r1_usage":
        raise ValueError(f"unknown template {template!r}; use r1_zero, r1_usage or auto")
    if source is None:
        raise ValueError(f"template r1_usage needs a chat template; {tokenizer_dir} has no "
                         f"chat_template.jinja or tokenizer_config.json 'chat_template'")
    config_file = Path(tokenizer_dir) / "tokenizer_config.json"
    config = _read_json(config_file) if config_file.is_file() else {}
    special = {}
    for name in ("bos_token", "eos_token"):
        value = config.get(name) or ""
        special[name] = value.get("content", "") if isinstance(value, dict) else value

    def prompt(question):
        text = render_chat(source, [{"role": "user",
                                     "content": templates.r1_usage_prompt(question)}], special)
        return text if text.endswith(THINK_PREFIX) else text + THINK_PREFIX  # R1-Distill's adds it

    return template, prompt


# --- Command line --------------------------------------------------------------------------


def _parser():
    p = argparse.ArgumentParser(prog="python -m r1jax.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="r1jax workdir or HF checkpoint directory")
    p.add_argument("--benchmark", required=True, choices=sorted(BENCHMARKS))
    p.add_argument("--out", required=True, help="summary JSON; records go beside it "
                                                "(<out stem>.problems.jsonl)")
    p.add_argument("--k", type=int, default=0, help="samples per problem (0: the paper's value)")
    p.add_argument("--max_new_tokens", type=int, default=0,
                   help="0: 32768 (256 for toy benchmarks), lowered to the model's max_position")
    p.add_argument("--data_dir", default=os.environ.get("R1JAX_DATA_DIR"),
                   help="benchmark files, or tfds datasets (default: $R1JAX_DATA_DIR)")
    p.add_argument("--data_file", help="the benchmark's file or directory instead of its file in "
                                       "data_dir, or tfds:NAME[:SPLIT], a tfds dataset in data_dir "
                                       "(e.g. tfds:toy_world/sums:test)")
    p.add_argument("--n_problems", type=int, default=0,
                   help="first N problems (0: all; generated toy sets: 500)")
    p.add_argument("--levels", default="1,2,3,4", help="toy benchmarks' levels")
    p.add_argument("--template", default="auto", choices=("auto", "r1_zero", "r1_usage"))
    p.add_argument("--temperature", type=float, default=0.6)
    p.add_argument("--top_p", type=float, default=0.95)
    p.add_argument("--samples_per_batch", type=int, default=64,
                   help="sampler rows per call; prompts per call = max(1, this // k)")
    p.add_argument("--pass_k", default="", help="extra pass@j to report, e.g. 1,8")
    p.add_argument("--dtype", default="", help="default: float32 on CPU, else bfloat16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu_devices", type=int, help="split the host CPU into this many devices "
                   "and sample data-parallel over them (a CPU-only machine: its core count)")
    return p


def _stop_tokens(tokenizer, tokenizer_dir: Path, template: str) -> tuple[int, ...]:
    """eos, generation_config.json's eos ids (chat models end a turn with one of several), and
    </answer> after the R1-Zero template when it is one token."""
    stop = [tokenizer.eos_id]
    generation = tokenizer_dir / "generation_config.json"
    ids = _read_json(generation).get("eos_token_id") if generation.is_file() else None
    stop += ids if isinstance(ids, list) else [] if ids is None else [ids]
    answer_end = tokenizer.token_to_id("</answer>")
    if template == "r1_zero" and answer_end is not None:
        stop.append(answer_end)
    return tuple(dict.fromkeys(int(s) for s in stop))


def main(argv=None) -> dict:
    from r1jax.mesh import make_mesh, use_cpu_devices

    args = _parser().parse_args(argv)
    bench = BENCHMARKS[args.benchmark]
    k = args.k or bench.k
    try:
        if args.cpu_devices is not None:
            use_cpu_devices(args.cpu_devices)
        problems = benchmarks_data.load(
            args.benchmark, args.data_dir, path=args.data_file, n=args.n_problems, seed=args.seed,
            levels=[int(x) for x in args.levels.split(",")])
        mesh = make_mesh()
        dtype = args.dtype or ("float32" if jax.default_backend() == "cpu" else "bfloat16")
        cfg, params, tokenizer, tokenizer_dir = load_checkpoint(args.checkpoint, dtype, mesh)
        template, to_prompt = prompt_function(args.template, tokenizer_dir)
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"r1jax.evaluate: {e}")
    problems = [{**p, "prompt": to_prompt(p["question"])} for p in problems]
    summary, records = run(
        cfg, params, tokenizer, problems, k=k,
        max_new_tokens=args.max_new_tokens or bench.max_new_tokens, judge=bench.judge,
        rng=jax.random.key(args.seed), temperature=args.temperature, top_p=args.top_p,
        prompts_per_batch=max(1, args.samples_per_batch // k),
        stop_tokens=_stop_tokens(tokenizer, tokenizer_dir, template), equivalent=bench.equivalent,
        pass_ks=[int(j) for j in args.pass_k.split(",") if j], mesh=mesh)
    summary = {"benchmark": args.benchmark, "checkpoint": str(args.checkpoint),
               "template": template, **summary}
    print(markdown_table(summary))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    with out.with_suffix(".problems.jsonl").open("w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    return summary


if __name__ == "__main__":
    main()
