"""The reward model: its scores are transformers' Qwen2ForSequenceClassification's, its export
loads back exactly under the names transformers writes, the Bradley-Terry loss and gradient are
the formula's and exact under microbatches, the job learns a preference and resumes exactly, and
bad data is an error naming file and line.

tests/fixtures/hf/qwen2_rm was written by transformers (tests/fixtures/make_rm_fixture.py) with
its float32 scores, so these tests run without torch.
"""

import dataclasses
import json
import math
import os
import shutil
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from r1jax import metrics, models, optim, policy, tokenizers
from r1jax import reward_model as rm
from r1jax.checkpoint import Checkpointer
from r1jax.mesh import make_mesh

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(REPO, "tests", "fixtures", "hf", "qwen2_rm")
CAUSAL_LM = os.path.join(REPO, "tests", "fixtures", "hf", "qwen2_tied")
CFG = models.get_config("tiny", vocab_size=64)
TIMING = ("time/", "throughput/")


def fixture_expected():
    with np.load(os.path.join(FIXTURE, "expected.npz")) as f:
        return {k: f[k] for k in f.files}


def tensor_names(path):
    with safe_open(os.path.join(path, "model.safetensors"), "numpy") as f:
        return set(f.keys())


def read_config(path):
    with open(os.path.join(path, "config.json")) as f:
        return json.load(f)


def bits_equal(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# ------------------------------------------------------------------ transformers parity


def test_scores_match_transformers_on_one_device_and_sharded():
    e = fixture_expected()
    assert len(set(e["lengths"].tolist())) == len(e["lengths"]) and e["lengths"].min() == 1
    cfg, params = rm.load(FIXTURE)
    assert not cfg.tie_embeddings and cfg.qkv_bias and "lm_head" not in params["decoder"]
    assert np.abs(np.asarray(params["decoder"]["layers"][0]["attn"]["q_proj"]["bias"])).min() > 0
    r = rm.scores(cfg, params, e["tokens"], e["lengths"])
    assert r.dtype == jnp.float32 and r.shape == (len(e["lengths"]),)
    np.testing.assert_allclose(np.asarray(r), e["logits"][:, 0], atol=1e-4)
    mesh = make_mesh(data=2, fsdp=2, tensor=2)
    cfg_m, sharded = rm.load(FIXTURE, mesh)
    assert cfg_m == cfg and sharded["head"].sharding.is_fully_replicated
    q = sharded["decoder"]["layers"][0]["attn"]["q_proj"]["kernel"]
    assert q.sharding == models.param_shardings(cfg, mesh)["layers"][0]["attn"]["q_proj"]["kernel"]
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), sharded, params)
    np.testing.assert_allclose(np.asarray(rm.scores(cfg, sharded, e["tokens"], e["lengths"])),
                               e["logits"][:, 0], atol=1e-4)


def test_a_causal_lm_is_not_a_reward_model_nor_a_reward_model_a_policy():
    with pytest.raises(ValueError, match=r"qwen2_tied/config.json: .*not a reward model") as info:
        rm.load(CAUSAL_LM)
    assert "no score head" in str(info.value)
    with pytest.raises(models.CheckpointError, match=r"qwen2_rm/config.json: .*not a causal LM"):
        policy.load_policy(FIXTURE)


def test_a_score_head_of_another_shape_names_the_file_and_shapes(tmp_path):
    ckpt = tmp_path / "rm"
    shutil.copytree(FIXTURE, ckpt)
    file = os.path.join(ckpt, "model.safetensors")
    tensors = load_file(file)
    tensors["score.weight"] = np.zeros((2, 32), np.float32)  # two labels
    save_file(tensors, file, metadata={"format": "pt"})
    with pytest.raises(models.CheckpointError,
                       match=r"model.safetensors: tensor 'score.weight' has shape \[2, 32\], "
                             r"expected \[1, 32\]"):
        rm.load(ckpt)


def random_decoder(cfg, seed=0):
    """A policy's params with every leaf random, norm scales near 1 (numpy: nothing compiles)."""
    rng = np.random.default_rng(seed)

    def leaf(key_path, x):
        centre = 1.0 if "norm" in jax.tree_util.keystr(key_path) else 0.0
        return (centre + 0.1 * rng.standard_normal(x.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(leaf, models.abstract_params(cfg))


def random_rm_params(cfg, seed=0):
    head = np.random.default_rng(seed + 1).standard_normal(cfg.d_model).astype(np.float32)
    return rm.init_params(cfg, random_decoder(cfg, seed)) | {"head": head}


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_save_load_round_trip_is_exact_and_named_as_transformers_names_it(tmp_path, tied):
    """What `save` writes loads back bit for bit, and has the tensor names and config fields of
    the checkpoint transformers wrote (so transformers loads it as the same class)."""
    cfg = dataclasses.replace(rm.load(FIXTURE)[0], tie_embeddings=tied)
    params = random_rm_params(cfg)
    rm.save(cfg, params, tmp_path, pad_id=0)
    cfg2, params2 = rm.load(tmp_path)
    assert cfg2 == cfg
    assert jax.tree.structure(params2) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params2)):
        assert bits_equal(a, b)
    assert tensor_names(tmp_path) == tensor_names(FIXTURE)  # no lm_head.weight
    ours, theirs = read_config(tmp_path), read_config(FIXTURE)
    for key in ("architectures", "id2label", "label2id", "pad_token_id", "model_type"):
        assert ours[key] == theirs[key], key


def test_transformers_loads_what_save_writes_and_scores_alike(tmp_path):
    """Skipped without torch and transformers (the committed fixture and the names above stand
    in for them)."""
    reason = "torch and transformers are not installed; the live transformers check is skipped"
    torch = pytest.importorskip("torch", reason=reason)
    transformers = pytest.importorskip("transformers", reason=reason)
    cfg = rm.load(FIXTURE)[0]
    params = random_rm_params(cfg)
    rm.save(cfg, params, tmp_path, pad_id=0)
    model, info = transformers.AutoModelForSequenceClassification.from_pretrained(
        str(tmp_path), dtype=torch.float32, attn_implementation="eager",
        output_loading_info=True)
    assert type(model).__name__ == "Qwen2ForSequenceClassification"
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    e = fixture_expected()  # right-padded with 0, the pad id; transformers reads no lengths
    with torch.no_grad():
        logits = model.eval()(input_ids=torch.from_numpy(e["tokens"]).long()).logits.numpy()
    np.testing.assert_allclose(np.asarray(rm.scores(cfg, params, e["tokens"], e["lengths"])),
                               logits[:, 0], rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ the loss and the update


def random_pairs(rng, n, seq_len, vocab=CFG.vocab_size):
    """Right-padded pairs [n, 2, seq_len] with random lengths; the padding holds random ids (it
    must not matter)."""
    tokens = rng.integers(0, vocab, (n, 2, seq_len)).astype(np.int32)
    lengths = rng.integers(1, seq_len + 1, (n, 2)).astype(np.int32)
    return tokens, lengths


def test_bradley_terry_loss_and_gradient_match_numpy_and_microbatches_are_exact():
    rng = np.random.default_rng(0)
    tokens, lengths = random_pairs(rng, 4, 12)
    params = random_rm_params(CFG)
    # The reference, in float64 numpy: margins from `scores`, and the head's gradient from the
    # hidden states of each row's last real token (the decoder's tree has no lm_head).
    flat, flat_lengths = tokens.reshape(8, 12), lengths.reshape(8)
    mask = np.arange(12)[None] < flat_lengths[:, None]
    r = np.asarray(rm.scores(CFG, params, flat, flat_lengths), np.float64).reshape(4, 2)
    margin = r[:, 0] - r[:, 1]
    loss = np.mean(np.logaddexp(0.0, -margin))
    hidden = np.asarray(models.hidden_states(CFG, params["decoder"], flat,
                                             attention_mask_BT=mask), np.float64)
    last = hidden[np.arange(8), flat_lengths - 1].reshape(4, 2, -1)
    np.testing.assert_allclose(last @ np.asarray(params["head"], np.float64), r, atol=1e-5)
    sigmoid = 1 / (1 + np.exp(margin))  # d softplus(-m) / dm = -sigmoid(-m)
    head_grad = np.mean(-sigmoid[:, None] * (last[:, 0] - last[:, 1]), axis=0)
    # Padding changes nothing: the same pairs padded with other ids score the same.
    repadded = np.where(mask, flat, rng.integers(0, CFG.vocab_size, flat.shape))
    np.testing.assert_array_equal(rm.scores(CFG, params, flat, flat_lengths),
                                  rm.scores(CFG, params, repadded, flat_lengths))

    c = rm.default_config()
    c.update(steps=10, compute_dtype="float32")
    s = rm.UpdateSettings.from_config(c)
    # Two microbatches of two pairs: their sums add up to the whole batch's loss and gradient.
    grads_of = jax.jit(lambda p, mb: optim.accumulate_gradients(
        lambda q, b: rm.pair_terms(CFG, s, q, b), p, mb))
    microbatches = optim.split_microbatches((tokens, lengths), 2)
    terms, grads = grads_of(params, microbatches)
    assert float(terms.denom) == 4
    np.testing.assert_allclose(float(terms.loss_sum) / 4, loss, rtol=1e-5)
    assert float(terms.stats["correct"]) == np.sum(margin > 0)
    np.testing.assert_allclose(float(terms.stats["margin"]), np.sum(margin), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(grads["head"]) / 4, head_grad, rtol=1e-4, atol=1e-6)
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads["decoder"])) > 0
    whole = grads_of(params, (tokens[None], lengths[None]))  # one microbatch of four pairs
    for a, b in zip(jax.tree.leaves((terms, grads)), jax.tree.leaves(whole)):
        assert np.abs(np.asarray(a) - b).max() <= 1e-5 * max(np.abs(b).max(), 1.0)
    # A zero head (the start of training) ties every pair: loss log 2, accuracy 1/2, and only
    # the head has a gradient.
    zero = params | {"head": np.zeros(CFG.d_model, np.float32)}
    terms, grads = grads_of(zero, microbatches)
    np.testing.assert_allclose(float(terms.loss_sum) / 4, math.log(2), rtol=1e-6)
    assert float(terms.stats["correct"]) == 2 and float(terms.stats["margin"]) == 0
    assert np.abs(np.asarray(grads["head"])).max() > 0
    assert all(not np.any(g) for g in jax.tree.leaves(grads["decoder"]))


# ------------------------------------------------------------------ the job


def preference_records(n, seed=0):
    """Each prompt's chosen answer closes its tag and the rejected one stops short of it: a rule
    the last token shows."""
    from r1jax.data import tasks

    return [{"prompt": e["question"], "chosen": f" <answer> {e['answer']} </answer>",
             "rejected": f" <answer> {e['answer']}", "source": {"example": e["id"]}}
            for e in tasks.make_split("arithmetic", "train", n, seed=seed)]


def job_config(data_files, **overrides):
    from r1jax.cli import load_experiment

    config = load_experiment(os.path.join(REPO, "experiments", "r1_zero_toy.py"), "smoke")
    config.job = "reward_model"
    config.reward_model = rm.default_config()
    config.reward_model.update(dict(data=tuple(map(str, data_files)), held_out=32, epochs=0,
                                    steps=12, batch_size=16, seq_len=32, lr=3e-3, warmup_steps=3,
                                    checkpoint_every=100))
    config.reward_model.update(overrides)
    return config


@pytest.fixture(scope="module")
def finished_job(tmp_path_factory):
    """(config, workdir) of a reward_model job run to the end on 160 pairs (128 to train on, 32
    held out), 12 steps of 16 pairs, from a random tiny policy saved as an HF checkpoint with
    the toy world's tokenizer (as a pipeline's SFT stage leaves its model)."""
    from r1jax import export, toy
    from r1jax.data import records

    tmp = tmp_path_factory.mktemp("rm_job")
    data = tmp / "pairs.jsonl"
    records.write_jsonl(data, preference_records(160))
    config, workdir = job_config([data]), tmp / "run"
    cfg = policy.model_config(config.model)
    toy.tokenizer(config, str(tmp), cfg.vocab_size)
    export.write(cfg, random_decoder(cfg), export.tokenizer_files(tmp / "tokenizer.model"),
                 tmp / "policy")
    config.model.update(name="", hf_path=str(tmp / "policy"))
    assert rm.job(config, str(workdir))
    return config, workdir


def test_the_job_learns_a_preference_exports_and_is_skipped_once_done(finished_job):
    config, workdir = finished_job
    steps = metrics.read_metrics(workdir / "metrics.jsonl")
    assert len(steps) == 12
    assert steps[0]["accuracy"] == 0.5 and abs(steps[0]["loss"] - math.log(2)) < 1e-6
    summary = json.loads((workdir / "evaluation.json").read_text())
    assert summary["eval/pairs"] == 32 and summary["train/pairs"] == 128
    assert summary["eval/accuracy"] > 0.9 and summary["train/accuracy"] > 0.9, summary
    assert summary["eval/margin"] > 0 and summary["eval/loss"] < 0.5 * math.log(2)
    cfg, params = rm.load(workdir / "hf")
    assert cfg == policy.model_config(config.model)
    assert {"tokenizer.model", "config.json", "model.safetensors"} <= set(
        os.listdir(workdir / "hf"))
    assert read_config(workdir / "hf")["architectures"] == ["Qwen2ForSequenceClassification"]
    pad_id = tokenizers.load_tokenizer(str(workdir / "hf")).pad_id
    assert read_config(workdir / "hf")["pad_token_id"] == pad_id
    assert not (workdir / "hf.partial").exists()
    assert rm.job(config, str(workdir))  # skipped: nothing trained again
    assert len(metrics.read_metrics(workdir / "metrics.jsonl")) == 12


class StopAt:
    """An iterator that sends SIGTERM when it reads batch ``kill_at``; checkpointable."""

    def __init__(self, it, kill_at):
        self.it, self.index, self.kill_at = it, 0, kill_at

    def __iter__(self):
        return self

    def __next__(self):
        self.index += 1
        if self.index == self.kill_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return next(self.it)

    def get_state(self):
        return {"inner": self.it.get_state(), "index": self.index}

    def set_state(self, state):
        self.it.set_state(state["inner"])
        self.index = state["index"]


def test_a_job_stopped_by_sigterm_resumes_to_the_uninterrupted_runs_model(finished_job, tmp_path,
                                                                         monkeypatch):
    from r1jax.data import pipeline

    config, straight = finished_job
    workdir = tmp_path / "run"
    dataset = pipeline.prompt_dataset
    kill_at = [5]
    monkeypatch.setattr(pipeline, "prompt_dataset",
                        lambda *a, **k: StopAt(iter(dataset(*a, **k)), kill_at[0]))
    assert not rm.job(config, str(workdir))  # SIGTERM during step 5: checkpointed, no export
    assert Checkpointer(str(workdir)).latest_step() == 5
    assert not (workdir / "hf").exists() and not (workdir / "evaluation.json").exists()
    kill_at[0] = -1
    assert rm.job(config, str(workdir))
    a, b = (metrics.read_metrics(w / "metrics.jsonl") for w in (straight, workdir))
    assert [{k: v for k, v in m.items() if not k.startswith(TIMING)} for m in a] == [
        {k: v for k, v in m.items() if not k.startswith(TIMING)} for m in b]
    assert (straight / "evaluation.json").read_text() == (workdir / "evaluation.json").read_text()
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(x, y),
                 rm.load(straight / "hf")[1], rm.load(workdir / "hf")[1])


# ------------------------------------------------------------------ errors


class CharTokenizer:
    """One id per character (its code point mod 100), so "d" (100) is the pad id 0."""

    pad_id, eos_id, vocab_size = 0, 1, 100

    def encode(self, text, add_bos=False):
        return [ord(ch) % 100 for ch in text]


def test_data_errors_name_file_line_and_field_before_training(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n\n'
                    '{"prompt": "p", "chosen": "a", "source": {}}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl, line 3: field 'rejected' must be a "
                                         r"non-empty string, got None"):
        rm.job(job_config([data]), str(tmp_path / "run"))
    data.write_text('{"prompt": "p", "chosen": "a", "rejected": 7}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl, line 1: field 'rejected'.* got 7"):
        rm.read_pairs(str(data))
    assert not (tmp_path / "run").exists()


def test_a_pair_longer_than_seq_len_is_an_error_or_dropped_and_counted(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"prompt": "Q:", "chosen": "yes", "rejected": "no"}\n'
                    '{"prompt": "Q:", "chosen": "yes", "rejected": "a long no"}\n')
    pairs = rm.read_pairs([str(data)])
    with pytest.raises(ValueError, match=r"pairs.jsonl, line 2: prompt \+ rejected is 11 tokens, "
                                         r"more than reward_model.seq_len=8"):
        rm.encode_pairs(pairs, CharTokenizer(), 8)
    tokens, lengths, dropped = rm.encode_pairs(pairs, CharTokenizer(), 8, drop_long=True)
    assert dropped == 1 and lengths.tolist() == [[5, 4]]
    assert tokens[0, 0].tolist() == rm.encode(CharTokenizer(), "Q:", "yes") + [0, 0, 0]
    assert rm.encode(CharTokenizer(), "Q:", "yes") == [ord(ch) % 100 for ch in "Q:yes"]
    data.write_text('{"prompt": "Q:", "chosen": "yes", "rejected": "nod"}\n')  # "d" is pad
    with pytest.raises(ValueError, match=r"line 1: prompt \+ rejected ends in the pad id 0"):
        rm.encode_pairs(rm.read_pairs(str(data)), CharTokenizer(), 8)


def test_held_out_is_a_count_or_a_fraction_and_leaves_pairs_to_train_on():
    train, held = rm.split_held_out(10, 3, seed=0)
    assert len(held) == 3 and sorted([*train, *held]) == list(range(10))
    assert np.array_equal(rm.split_held_out(10, 3, seed=0)[1], held)  # deterministic
    assert len(rm.split_held_out(10, 0.2, seed=0)[1]) == 2
    with pytest.raises(ValueError, match=r"held_out=10 keeps 10 of the 10 pairs out"):
        rm.split_held_out(10, 10, seed=0)


def test_served_scores_are_the_models_scores_of_what_it_reads(finished_job):
    """scenarios.RewardModel, as the RL job serves a reward model over the 8 test devices: a
    row it scores gets the score `scores` gives its prompt + summary (or whole response) alone,
    the others NaN; a row longer than the model's positions is cut from the left and counted."""
    from r1jax import scenarios
    from r1jax.templates import summary_part

    _, workdir = finished_job
    path = str(workdir / "hf")
    cfg, params = rm.load(path)
    tokenizer = tokenizers.load_tokenizer(path)
    texts = [f" <think> {i} + 1 </think> {i} 1. <answer> {i} 1 </answer>" for i in range(8)]
    examples = [{"prompt": f"User: Repeat {i} 1. Assistant:"} for i in range(8)]
    rows = np.arange(8) % 3 != 1

    def alone(i, read, limit=cfg.max_position):
        ids = rm.encode(tokenizer, examples[i]["prompt"], read(texts[i]))[-limit:]
        return float(rm.scores(cfg, params, np.array([ids], np.int32),
                               np.array([len(ids)], np.int32))[0])

    for on, read in (("summary", summary_part), ("response", lambda text: text)):
        model = scenarios.RewardModel(on, {"path": path, "on": on}, make_mesh())
        values, cut = model.scores(texts, examples, rows)
        assert cut == 0 and np.isnan(values[~rows]).all()
        np.testing.assert_allclose(values[rows], [alone(i, read) for i in np.flatnonzero(rows)],
                                   rtol=1e-5, atol=1e-6)
    model.cfg = dataclasses.replace(cfg, max_position=12)  # every response is longer
    values, cut = model.scores(texts, examples, rows)
    assert cut == rows.sum()
    np.testing.assert_allclose(values[rows], [alone(i, lambda t: t, 12)
                                              for i in np.flatnonzero(rows)], rtol=1e-5, atol=1e-6)


def test_a_reward_model_that_is_not_one_names_the_term_and_the_checkpoint(tmp_path):
    from r1jax import scenarios

    policy_dir = os.path.join(os.path.dirname(FIXTURE), "qwen2_tied")
    with pytest.raises(ValueError, match=r"reward model 'helpfulness' \(config.reward_models."
                                         r"helpfulness\): .*qwen2_tied.*not a reward model"):
        scenarios.RewardModel("helpfulness", {"path": policy_dir, "on": "summary"}, None)
