"""Next-token training: the loss is cross-entropy over the masked targets, a tiny model
memorises, masked-out targets do not matter, accumulation is exact, and a run resumes exactly."""

import json
import os
import signal

import jax
import numpy as np
import pytest

from r1jax import metrics, models, optim, sft
from r1jax.checkpoint import Checkpointer
from r1jax.mesh import make_mesh

CFG = models.get_config("tiny", vocab_size=64)
TIMING = ("time/", "throughput/")


def config(**overrides):
    c = sft.default_config()
    c.update(dict(steps=40, batch_size=4, seq_len=16, lr=1e-2, warmup_steps=2,
                  checkpoint_every=100))  # one compilation serves most tests
    c.update(overrides)
    return c


class Batches:
    """Random checkpointable batches {"tokens", "loss_mask"}; SIGTERM is sent at batch `kill_at`."""

    def __init__(self, c, kill_at=None):
        self.c, self.index, self.kill_at = c, 0, kill_at

    def __next__(self):
        self.index += 1
        if self.index == self.kill_at:
            os.kill(os.getpid(), signal.SIGTERM)
        rng = np.random.default_rng(self.index)
        tokens = rng.integers(0, CFG.vocab_size, (self.c.batch_size, self.c.seq_len + 1))
        return {"tokens": tokens, "loss_mask": rng.random((self.c.batch_size, self.c.seq_len)) < .7}

    def get_state(self):
        return {"index": self.index}

    def set_state(self, state):
        self.index = state["index"]


def one_update(c, tokens, mask, params=None, segments=None):
    params = models.init(CFG, jax.random.key(0)) if params is None else params
    settings = sft.UpdateSettings.from_config(c)
    opt_state = settings.optimizer.make().init(params)
    segments = np.ones_like(tokens) if segments is None else segments
    microbatches = optim.split_microbatches((tokens, mask, segments), c.microbatches)
    return sft.update(CFG, settings, params, opt_state, microbatches)


def log_softmax(logits):
    logp = np.asarray(logits, np.float64)
    logp = logp - logp.max(-1, keepdims=True)
    return logp - np.log(np.exp(logp).sum(-1, keepdims=True))


def test_packed_documents_are_trained_as_if_each_were_alone():
    """Two documents packed in one row: the loss is the mean NLL of each one's targets computed
    by a forward pass over that document alone (positions from 0, no other document in view)."""
    rng = np.random.default_rng(2)
    docs = [rng.integers(2, CFG.vocab_size, n).astype(np.int32) for n in (7, 6)]
    row = np.concatenate([*docs, [0, 0, 0, 0]])[None]  # 13 tokens and padding: T + 1 = 17
    segments = np.array([[1] * 7 + [2] * 6 + [0] * 4], np.int32)
    mask = (segments[:, 1:] == segments[:, :-1]) & (segments[:, 1:] > 0)  # within a document
    params = models.init(CFG, jax.random.key(0))
    nll = []
    for doc in docs:
        logp = log_softmax(models.forward(CFG, params, doc[None])[0, :-1])
        nll += list(-np.take_along_axis(logp, doc[1:, None], -1)[:, 0])
    _, _, out = one_update(config(batch_size=1), row, mask, segments=segments)
    np.testing.assert_allclose(float(out["loss"]), np.mean(nll), rtol=1e-5)
    # Without the segments the second document would see the first: another loss.
    _, _, joined = one_update(config(batch_size=1), row, mask)
    assert abs(float(joined["loss"]) - np.mean(nll)) > 1e-3


def test_loss_is_numpy_cross_entropy_and_accumulation_is_exact():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, CFG.vocab_size, (4, 17)).astype(np.int32)
    mask = rng.random((4, 16)) < 0.6
    logits = np.asarray(models.forward(CFG, models.init(CFG, jax.random.key(0)), tokens),
                        np.float64)[:, :-1]
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, tokens[:, 1:, None], -1)[..., 0]
    params, _, out = one_update(config(), tokens, mask)
    np.testing.assert_allclose(float(out["loss"]), nll[mask].mean(), rtol=1e-5)
    assert float(out["tokens"]) == mask.sum() and not bool(out["skipped"])
    params2, _, out2 = one_update(config(microbatches=2), tokens, mask)
    np.testing.assert_allclose(float(out2["loss"]), float(out["loss"]), rtol=1e-6)
    np.testing.assert_allclose(float(out2["grad_norm"]), float(out["grad_norm"]), rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), params, params2)


def test_masked_out_targets_change_nothing_and_non_finite_updates_are_skipped():
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, CFG.vocab_size, (4, 17)).astype(np.int32)
    mask = np.zeros((4, 16), bool)
    mask[:, :10] = True  # targets 1..10 count; 11..16 do not (and, causally, feed nothing
    # that does)
    changed = tokens.copy()
    changed[:, 11:] = rng.integers(0, CFG.vocab_size, (4, 6))
    (p1, _, o1), (p2, _, o2) = (one_update(config(), t, mask) for t in (tokens, changed))
    assert float(o1["loss"]) == float(o2["loss"])
    assert float(o1["grad_norm"]) == float(o2["grad_norm"])
    jax.tree.map(np.testing.assert_array_equal, p1, p2)
    broken = models.init(CFG, jax.random.key(0))
    broken["final_norm"]["scale"] = broken["final_norm"]["scale"].at[0].set(np.nan)
    params, _, out = one_update(config(), tokens, mask, jax.tree.map(np.array, broken))
    assert bool(out["skipped"])
    jax.tree.map(np.testing.assert_array_equal, params, broken)


def test_a_tiny_model_memorises_a_repeated_sequence(tmp_path):
    c = config()
    sequence = np.tile(np.arange(3, 20), 3)[: c.seq_len + 1]

    class Repeat(Batches):
        def __next__(self):
            self.index += 1
            return np.tile(sequence, (c.batch_size, 1))  # a plain array: every target counts

    mesh = make_mesh(devices=jax.devices()[:2])
    sft.train(c, str(tmp_path), CFG, models.init(CFG, jax.random.key(0)), Repeat(c), mesh)
    losses = [m["loss"] for m in metrics.read_metrics(tmp_path / "metrics.jsonl")]
    assert losses[0] > 3.0 and losses[-1] < 0.05 * losses[0], losses[::5]


def test_resume_after_sigterm_gives_the_metrics_of_an_uninterrupted_run(tmp_path):
    c = config(checkpoint_every=20)
    mesh = make_mesh(devices=jax.devices()[:2])  # batch split over 2 devices
    params = models.init(CFG, jax.random.key(0))

    def run(workdir, kill_at=None):
        out = sft.train(c, str(workdir), CFG, params, Batches(c, kill_at), mesh)
        return out, metrics.read_metrics(os.path.join(workdir, "metrics.jsonl"))

    straight_run, straight = run(tmp_path / "straight")
    assert straight_run.finished and straight_run.step == c.steps
    stopped, first = run(tmp_path / "resumed", kill_at=3)  # SIGTERM during step 3
    assert not stopped.finished and stopped.step == 3
    assert Checkpointer(str(tmp_path / "resumed")).latest_step() == 3 and len(first) == 3
    resumed_run, resumed = run(tmp_path / "resumed", kill_at=-1)
    assert resumed_run.finished
    assert [m["step"] for m in resumed] == list(range(1, c.steps + 1))
    for a, b in zip(straight, resumed):
        assert {k: v for k, v in a.items() if not k.startswith(TIMING)} == {
            k: v for k, v in b.items() if not k.startswith(TIMING)}
    jax.tree.map(np.testing.assert_array_equal, straight_run.state, resumed_run.state)


def sft_job_config(data_files, **overrides):
    from r1jax.cli import load_experiment

    config = load_experiment(os.path.join(REPO, "experiments", "r1_zero_toy.py"), "smoke")
    config.job = "sft"
    config.sft = sft.default_config()
    config.sft.update(dict(data=tuple(map(str, data_files)), epochs=0, steps=150, batch_size=8,
                           seq_len=160, lr=1e-2, warmup_steps=5, checkpoint_every=75))
    config.sft.update(overrides)
    config.eval.update(n_problems=4, max_new_tokens=24)
    return config


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPLETION = " <think> I add the digits. </think> <answer> 7 </answer>"


def test_the_sft_job_teaches_its_records_exports_and_is_skipped_once_done(tmp_path):
    """SFT of a random tiny model on records that all answer the same way: greedy decoding of
    the exported checkpoint, on a prompt it never saw, writes that answer (the prompt masked,
    the completion learned after it); a second run is skipped; the evaluation is written."""
    from r1jax import policy, sampling, stopping, tokenizers
    from r1jax.data import records, tasks
    from r1jax.templates import r1_zero_prompt

    examples = tasks.make_split("arithmetic", "train", 40, seed=0)
    data = tmp_path / "data.jsonl"
    records.write_jsonl(data, [{"prompt": r1_zero_prompt(e["question"]), "completion": COMPLETION,
                                "source": {"example": e["id"]}} for e in examples[:32]])
    config = sft_job_config([data])
    workdir = tmp_path / "run"
    assert sft.job(config, str(workdir))
    assert "eval/pass@1" in json.loads((workdir / "evaluation.json").read_text())
    cfg, params = policy.load_policy(str(workdir / "hf"))
    tokenizer = tokenizers.load_tokenizer(str(workdir / "hf"))
    prompt = tokenizer.encode(r1_zero_prompt(examples[-1]["question"]))
    out = sampling.generate(cfg, params, [prompt], jax.random.key(0), max_new_tokens=24,
                            temperature=0.0,
                            stop=stopping.stop_condition(tokenizer, ("</answer>",)))
    assert tokenizer.decode(np.asarray(out.tokens[0, :int(out.lengths[0])])) == COMPLETION
    steps = len(metrics.read_metrics(workdir / "metrics.jsonl"))
    assert sft.job(config, str(workdir)) and steps == 150  # skipped: nothing trained again
    assert len(metrics.read_metrics(workdir / "metrics.jsonl")) == steps


def test_sft_data_errors_name_file_line_and_field_before_training(tmp_path):
    from r1jax.data import records

    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "p", "completion": "c"}\n\n{"prompt": "p"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl, line 3: field 'completion'"):
        sft.job(sft_job_config([data]), str(tmp_path / "run"))
    data.write_text('["prompt", "completion"]\n')
    with pytest.raises(ValueError, match=r"bad.jsonl, line 1: a JSON list"):
        records.read_sft_records(str(data))
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        records.read_sft_records([str(tmp_path / "missing.jsonl")])
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_epochs_set_the_number_of_steps(tmp_path):
    """epochs=2 over N packed windows in batches of B is ceil(2 N / B) steps."""
    from r1jax.data import records

    data = tmp_path / "data.jsonl"
    records.write_jsonl(data, [{"prompt": "Add 1 + 2", "completion": " 3"}] * 10)
    config = sft_job_config([data], epochs=2, steps=0)
    config.export = ""
    config.sft.seq_len = 64
    assert sft.job(config, str(tmp_path / "run"))
    # Each record is a handful of tokens, so windows hold several records; count them as the
    # job packs them.
    from r1jax import tokenizers
    from r1jax.data import pipeline
    tokenizer = tokenizers.load_tokenizer(str(tmp_path / "run" / "tokenizer.model"))
    windows = len(pipeline.pack_pairs([("Add 1 + 2", " 3")] * 10, tokenizer, 64)[0])
    assert windows >= 2
    steps = len(metrics.read_metrics(tmp_path / "run" / "metrics.jsonl"))
    assert steps == -(-2 * windows // 8)


def test_a_batch_that_does_not_split_into_microbatches_is_an_error_before_training(tmp_path):
    c = config()
    c.microbatches = 3  # the batch's rows do not split into 3
    with pytest.raises(ValueError, match=r"\(\d+ rows from this process\) does not split into "
                                         r"microbatches=3"):
        sft.train(c, str(tmp_path), CFG, models.init(CFG, jax.random.key(0)), Batches(c),
                  make_mesh(devices=jax.devices()[:2]))
    assert not (tmp_path / "checkpoints").exists()


def test_a_batch_that_does_not_split_over_the_mesh_is_an_error_naming_its_key():
    from r1jax.mesh import check_batch_split

    mesh = make_mesh(devices=jax.devices()[:2])
    check_batch_split("sft.batch_size", 8, 2, mesh)  # 8 rows: 2 microbatches x 2 devices
    with pytest.raises(ValueError, match=r"^sft.batch_size=6 does not split into "
                                         r"microbatches=2 x the mesh's 2 data-parallel"):
        check_batch_split("sft.batch_size", 6, 2, mesh)
