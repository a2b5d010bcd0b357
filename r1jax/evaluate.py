"""Evaluation with the R1 paper's protocol: k samples per problem at T 0.6 / top-p 0.95, then
pass@1 (mean correctness over the k samples), cons@k (majority vote) and unbiased pass@k.

    summary, records = run(cfg, params, tokenizer, problems, k=16, max_new_tokens=1024,
                           reward="accuracy", rng=jax.random.key(0))
    print(markdown_table(summary))

    python -m r1jax.evaluate --checkpoint=DIR --benchmark=aime24 [--k=64] [--max_new_tokens=N] \
        --data_dir=DATA --out=aime24.json [--extraction=strict]

--out names the summary JSON; the per-problem records go beside it (<out stem>.problems.jsonl).
DIR is an r1jax workdir (its latest checkpoint, config.json and tokenizer) or an HF checkpoint
directory (config.json, *.safetensors, tokenizer.json), loaded by `r1jax.policy`. Benchmarks and
their files are in `r1jax.data.benchmarks`; each is judged by a reward (`r1jax.rewards.judge`),
the same verifier RL trains with, except that maths answers are found as public evaluators find
them (math-verify's extraction; `extraction="strict"`: the RL reward's rule). The training loop
evaluates through the same `run` (`hook_from_config`).

cons@k groups the extracted answers of a problem by equivalence (`math_equal`, so "1/2", "0.5" and
"\\frac{1}{2}" vote together), not by string; samples without an answer do not vote. Each answer
joins the first group whose first answer it is equivalent to. The largest group wins; among
groups of equal size the one whose first answer was sampled earliest wins (samples are i.i.d., so
this is a fair tie-break that is fixed by the rng). The vote is correct when the winning group's
first answer is; a problem with no answer at all counts as wrong.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np
from absl import flags

from r1jax import cli, metrics, multihost, rewards, sampling, stopping, templates, tokenizers
from r1jax.data.benchmarks import BENCHMARKS
from r1jax.mesh import data_parallel_size

DEFAULT_EXTRACTION = "math_verify"  # credit answers as public evaluators do (`rewards.judge`)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k), computed as
    1 - prod_{j=n-c+1..n} (1 - k/j) (Codex §2.1), which is 1 exactly when n - c < k."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def majority_vote(answers, equivalent=rewards.math_equivalent) -> int | None:
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
    return {"id": problem.get("id"), "lang": problem.get("lang"), "prompt": problem["prompt"],
            "gold": problem.get("answer"),
            "completions": texts, "answers": answers, "correct": correct,
            "lengths": [int(n) for n in lengths], "truncated": [bool(t) for t in truncated],
            "pass@1": sum(correct) / k,
            "cons_answer": None if winner is None else answers[winner],
            "cons_correct": winner is not None and correct[winner]}


def summarize(records, k: int, pass_ks=()) -> dict:
    """The benchmark's numbers from its per-problem records (see `run`): accuracy, lengths,
    reflection, and how readable the completions are, which R1's stages change: the shares in
    R1-Zero's format and in R1's readable one (with a summary), and, when the problems are posed
    in a language ("lang"), the language consistency of the reasoning (the `language` reward)."""
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
        "reflect/wait_rate": float(counts["wait"].mean()),
        "format_frac": float(rewards.format_reward(texts).mean()),
        "summary_format_frac": float(rewards.format_reward(texts, summary=True).mean())})
    if all(r.get("lang") is not None for r in records):
        language = rewards.get("language")
        summary["language/consistency"] = float(np.mean(np.concatenate(
            [language(r["completions"], [{"lang": r["lang"]}] * len(r["completions"]))
             for r in records])))
    return summary


def run(cfg, params, tokenizer, problems, *, k: int, max_new_tokens: int, reward: str, rng,
        temperature: float = 0.6, top_p: float = 0.95, prompts_per_batch: int = 8,
        stop=None, pass_ks=(), mesh=None, extraction: str = DEFAULT_EXTRACTION):
    """Sample k completions for each problem (a dict with the templated "prompt" and the fields
    reward ``reward`` reads), judge them by that reward with maths answers found by
    ``extraction`` (`rewards.judge`); (summary, records).

    `prompts_per_batch` problems go to the sampler in one call, all k samples of each in the same
    call; the last batch is padded with copies of its first problem (their samples are dropped)
    so every call has the same shape. The batch starting at problem b is sampled with
    fold_in(rng, b) while the host judges the batch before it. `max_new_tokens` is lowered to fit
    the model's max_position after the longest prompt; the summary holds the value used. With a
    mesh, params should be placed on it and the batch is rounded up to a multiple of its
    data-parallel size. In a run over several processes every process calls this together with
    the same problems; each samples and judges its rows of every batch, and all return the
    same records.
    """
    if not problems or k < 1:
        raise ValueError(f"run needs problems and k >= 1, got {len(problems)} problems, k={k}")
    start = time.perf_counter()
    prompts = [tokenizer.encode(p["prompt"]) for p in problems]
    max_new_tokens = min(max_new_tokens, cfg.max_position - max(map(len, prompts)))
    if max_new_tokens < 1:
        raise ValueError(f"the longest prompt ({max(map(len, prompts))} tokens) leaves no room "
                         f"to generate within max_position {cfg.max_position}")
    stop = stop or stopping.StopCondition((tokenizer.eos_id,))
    judge = functools.partial(rewards.judge, reward, extraction=extraction)
    equivalent = rewards.equivalence(reward)
    size = min(prompts_per_batch, len(problems))
    if mesh is not None:
        data = data_parallel_size(mesh)
        size = -(-size // data) * data

    rows = multihost.row_slice(mesh, size)  # this process's rows of every batch

    def sample(b):
        batch = prompts[b:b + size]
        return b, sampling.generate(
            cfg, params, (batch + [batch[0]] * (size - len(batch)))[rows],
            jax.random.fold_in(rng, b), num_samples=k, max_new_tokens=max_new_tokens,
            temperature=temperature, top_p=top_p, stop=stop, pad_id=tokenizer.pad_id, mesh=mesh)

    def judge_batch(b, out):
        """Judge this process's problems of batch b; every process's records, in order."""
        tokens, lengths, truncated = multihost.local_rows((out.tokens, out.lengths, out.truncated))
        local = []
        for i, problem in enumerate(problems[b:b + size][rows]):
            mine = slice(i * k, (i + 1) * k)
            texts = [tokenizer.decode(row[:n]) for row, n in zip(tokens[mine], lengths[mine])]
            local.append(_problem_record(problem, texts, lengths[mine], truncated[mine], judge,
                                         equivalent, k))
        records.extend(r for part in multihost.gather_blocks(mesh, size, local) for r in part)

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


def training_hook(cfg, tokenizer, problems, reward: str, *, k: int, max_new_tokens: int,
                  seed: int = 0, prefix: str = "eval/", **run_kwargs):
    """An `evaluate(step, params) -> metrics` for rl.train: `run` on held-out problems (with
    "prompt" filled in), its numbers under `prefix`; the rng depends on the step only."""
    def evaluate(step, params):
        summary, _ = run(cfg, params, tokenizer, problems, k=k, max_new_tokens=max_new_tokens,
                         reward=reward, rng=jax.random.fold_in(jax.random.key(seed), step),
                         **run_kwargs)
        return {prefix + key: value for key, value in summary.items()}
    return evaluate


def held_out_problems(config, benchmark: str) -> list[dict]:
    """The first ``config.eval.n_problems`` problems of ``benchmark`` in the training prompts'
    template (``config.data.template``): read from ``config.eval.data_file`` (a file or
    "tfds:NAME[:SPLIT]", the main benchmark's only) or from its file in ``data_dir``; a toy
    benchmark with neither generates its test problems of ``config.data``'s levels, posed in
    ``config.eval.languages`` (English when unset)."""
    from r1jax.data import benchmarks, prompts

    e = config.eval
    problems = benchmarks.load(benchmark, e.get("data_dir") or None,
                               path=(e.get("data_file") or None) if benchmark == e.benchmark
                               else None, n=e.n_problems, levels=tuple(config.data.levels),
                               languages=tuple(e.get("languages", ("en",))))
    to_prompt = prompts.prompt_template(config.data.get("template", "r1_zero"),
                                        config.tokenizer or config.model.hf_path)
    return [{**p, "prompt": to_prompt(p["question"])} for p in problems]


def hook_from_config(config, cfg, tokenizer, mesh):
    """The in-loop evaluation of an experiment: `training_hook` on ``held_out_problems`` (k,
    max_new_tokens, extraction (default `run`'s) from ``config.eval``) at the paper's T 0.6 /
    top-p 0.95, stopping where the training rollouts do (``config.rl.stop_strings``).
    ``config.eval.benchmark`` is logged under eval/ (what the plots and the results table read),
    each of ``config.eval.also`` under eval/NAME/. Every problem set is read now, so a missing
    file stops the job before training. A step is evaluated once: called again for the step it
    evaluated last, it returns that result (the params of a step do not change)."""
    e = config.eval
    stop = stopping.stop_condition(tokenizer, tuple(config.rl.stop_strings))
    hooks = [training_hook(cfg, tokenizer, held_out_problems(config, name),
                           BENCHMARKS[name].reward, k=e.k, max_new_tokens=e.max_new_tokens,
                           mesh=mesh, stop=stop, prefix=prefix,
                           extraction=e.get("extraction", DEFAULT_EXTRACTION))
             for name, prefix in [(e.benchmark, "eval/"),
                                  *((name, f"eval/{name}/") for name in e.get("also", ()))]]
    last = {}  # step -> metrics of the latest step evaluated

    def evaluate(step, params):
        # The RL job evaluates its last step twice (in the loop, then for the report), with the
        # same params: the second time is the first's result.
        if step not in last:
            last.clear()
            last[step] = {k: v for hook in hooks for k, v in hook(step, params).items()}
        return last[step]
    return evaluate


def markdown_table(summary: dict) -> str:
    """The summary as a two-column markdown table, in its key order."""
    def cell(value):
        return f"{value:.4f}" if isinstance(value, float) else str(value)
    return "\n".join(["| metric | value |", "|---|---|"]
                     + [f"| {key} | {cell(value)} |" for key, value in summary.items()])


# --- Command line ------------------------------------------------------------------------------

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "r1jax workdir or HF checkpoint directory")
_BENCHMARK = flags.DEFINE_enum("benchmark", None, sorted(BENCHMARKS), "the benchmark")
_K = flags.DEFINE_integer("k", 0, "samples per problem (0: the paper's value)")
_MAX_NEW_TOKENS = flags.DEFINE_integer(
    "max_new_tokens", 0, "0: 32768 (256 for toy benchmarks), lowered to the model's max_position")
_DATA_DIR = flags.DEFINE_string("data_dir", os.environ.get("R1JAX_DATA_DIR"),
                                "benchmark files, or tfds datasets (default: $R1JAX_DATA_DIR)")
_DATA_FILE = flags.DEFINE_string(
    "data_file", None, "the benchmark's file or directory instead of its file in data_dir, or "
    "tfds:NAME[:SPLIT], a tfds dataset in data_dir (e.g. tfds:toy_world/sums:test)")
_N_PROBLEMS = flags.DEFINE_integer("n_problems", 0,
                                   "first N problems (0: all; generated toy sets: 500)")
_LEVELS = flags.DEFINE_list("levels", ["1", "2", "3", "4"], "toy benchmarks' levels")
_TEMPLATE = flags.DEFINE_enum("template", "auto", ["auto", "r1_zero", "r1_usage"],
                              "prompt template (auto: r1_usage when the tokenizer has a chat "
                              "template, else r1_zero)")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.6, "sampling temperature")
_TOP_P = flags.DEFINE_float("top_p", 0.95, "nucleus sampling mass")
_SAMPLES_PER_BATCH = flags.DEFINE_integer(
    "samples_per_batch", 64, "sampler rows per call; prompts per call = max(1, this // k)")
_PASS_K = flags.DEFINE_list("pass_k", [], "extra pass@j to report, e.g. 1,8")
_SEED = flags.DEFINE_integer("seed", 0, "sampling (and generated toy problems') seed")
_EXTRACTION = flags.DEFINE_enum("extraction", DEFAULT_EXTRACTION, rewards.judging.EXTRACTIONS,
                                "maths answers: math-verify's (as public evaluators) or strict")


def template_stop(tokenizer, tokenizer_dir: Path, template: str) -> stopping.StopCondition:
    """eos, generation_config.json's eos ids (chat models end a turn with one of several), and
    the text </answer> after the R1-Zero template."""
    generation = tokenizer_dir / "generation_config.json"
    ids = json.loads(generation.read_text()).get("eos_token_id") if generation.is_file() else None
    extra = ids if isinstance(ids, list) else [] if ids is None else [ids]
    return stopping.stop_condition(
        tokenizer, ("</answer>",) if template == "r1_zero" else (), extra)


def benchmark_run(cfg, params, tokenizer, tokenizer_dir: Path, benchmark: str, problems, *,
                  template: str, k: int, max_new_tokens: int, samples_per_batch: int, seed: int,
                  **run_kwargs):
    """(summary, records) of `run` on ``problems`` of ``benchmark`` put in ``template``
    (`templates.prompt_function`), stopping where the template's answers end; k and
    max_new_tokens 0 take the benchmark's own. The summary starts with what was evaluated how."""
    bench = BENCHMARKS[benchmark]
    k = k or bench.k
    template, to_prompt = templates.prompt_function(template, tokenizer_dir)
    summary, records = run(
        cfg, params, tokenizer, [{**p, "prompt": to_prompt(p["question"])} for p in problems],
        k=k, max_new_tokens=max_new_tokens or bench.max_new_tokens, reward=bench.reward,
        rng=jax.random.key(seed), prompts_per_batch=max(1, samples_per_batch // k),
        stop=template_stop(tokenizer, tokenizer_dir, template), **run_kwargs)
    return {"benchmark": benchmark, "template": template,
            "extraction": run_kwargs.get("extraction", DEFAULT_EXTRACTION), **summary}, records


def write_results(out: Path, summary: dict, records: list[dict]) -> None:
    """The summary as JSON at ``out``, the per-problem records beside it (.problems.jsonl)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.with_suffix(".problems.jsonl").open("w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    out.write_text(json.dumps(summary, indent=2) + "\n")  # last: its presence means complete


def _tokenizer_for(cfg, source) -> tuple:
    """(tokenizer, its directory) of ``source``, checked against the model."""
    from r1jax import policy

    source = Path(source)
    tokenizer = tokenizers.load_tokenizer(source)
    policy.check_tokenizer(cfg, tokenizer, source)
    return tokenizer, source if source.is_dir() else source.parent


def main(argv: list[str]) -> dict:
    from r1jax import policy
    from r1jax.data import benchmarks
    from r1jax.mesh import make_mesh

    cli.parse("r1jax.evaluate", argv)
    cli.require("r1jax.evaluate", checkpoint=_CHECKPOINT.value, benchmark=_BENCHMARK.value,
                out=cli.OUT.value)
    try:
        problems = benchmarks.load(_BENCHMARK.value, _DATA_DIR.value, path=_DATA_FILE.value,
                                   n=_N_PROBLEMS.value, seed=_SEED.value,
                                   levels=[int(x) for x in _LEVELS.value])
        mesh = make_mesh()
        dtype = cli.DTYPE.value or ("float32" if jax.default_backend() == "cpu" else "bfloat16")
        cfg, params = policy.load_policy(_CHECKPOINT.value, dtype, mesh)
        tokenizer, tokenizer_dir = _tokenizer_for(cfg, policy.tokenizer_source(_CHECKPOINT.value))
        templates.prompt_function(_TEMPLATE.value, tokenizer_dir)  # a bad template fails here
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"r1jax.evaluate: {e}")
    summary, records = benchmark_run(
        cfg, params, tokenizer, tokenizer_dir, _BENCHMARK.value, problems,
        template=_TEMPLATE.value, k=_K.value, max_new_tokens=_MAX_NEW_TOKENS.value,
        samples_per_batch=_SAMPLES_PER_BATCH.value, seed=_SEED.value,
        temperature=_TEMPERATURE.value, top_p=_TOP_P.value,
        pass_ks=[int(j) for j in _PASS_K.value], mesh=mesh, extraction=_EXTRACTION.value)
    summary = {"checkpoint": str(_CHECKPOINT.value), **summary}
    if multihost.is_primary():
        print(markdown_table(summary))
        write_results(Path(cli.OUT.value), summary, records)
    return summary


def job(config, workdir: str) -> bool:
    """Evaluate ``config.model``'s checkpoint at the paper's protocol on ``config.eval.benchmark``
    and each of ``config.eval.also`` (from ``config.eval.data_dir``; k, max_new_tokens 0: each
    benchmark's own), every problem set read before the model is loaded. Each benchmark's result
    is written to workdir/eval/NAME.json (+ .problems.jsonl) and skipped when it exists, so a
    rerun resumes; results.md sets pass@1 beside ``config.eval.published`` (percent), the
    figures the checkpoint's authors report."""
    from r1jax import optim, policy
    from r1jax.data import benchmarks
    from r1jax.mesh import mesh_from_config

    e = config.eval
    names = [e.benchmark, *e.get("also", ())]
    problem_sets = {name: benchmarks.load(name, e.data_dir or None, n=e.n_problems, seed=e.seed)
                    for name in names}
    cfg = policy.model_config(config.model)
    tokenizer, tokenizer_dir = _tokenizer_for(cfg, config.tokenizer or config.model.hf_path)
    mesh = mesh_from_config(config.mesh)
    cfg, params = policy.load_policy(config.model, optim.compute_dtype(e.dtype), mesh)
    rows = []
    for name in names:
        out = Path(workdir) / "eval" / f"{name}.json"
        if not out.exists():
            summary, records = benchmark_run(
                cfg, params, tokenizer, tokenizer_dir, name, problem_sets[name],
                template=e.template, k=e.k, max_new_tokens=e.max_new_tokens,
                samples_per_batch=e.samples_per_batch, seed=e.seed, temperature=e.temperature,
                top_p=e.top_p, mesh=mesh, extraction=e.extraction)
            if multihost.is_primary():
                write_results(out, summary, records)
            multihost.sync(f"evaluated {name}")
        summary = json.loads(out.read_text())
        published = e.published.get(name)
        rows.append(f"| {name} | {summary['k']} | {100 * summary['pass@1']:.1f} | "
                    f"{'n/a' if published is None else f'{published:.1f}'} | "
                    f"{100 * summary['cons@k']:.1f} | {summary['max_new_tokens']} | "
                    f"{summary['n_problems']} |")
    table = "\n".join(["| benchmark | k | pass@1 (%) | published pass@1 (%) | cons@k (%) | "
                       "max new tokens | problems |", "|---|---|---|---|---|---|---|", *rows])
    if multihost.is_primary():
        Path(workdir, "results.md").write_text(
            f"# Evaluation of {config.model.hf_path}\n\n{table}\n")
        print(table)
    return True


if __name__ == "__main__":
    main(sys.argv[1:])
