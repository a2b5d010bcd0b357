"""Next-token training: the loss is cross-entropy over the masked targets, a tiny model
memorises, masked-out targets do not matter, accumulation is exact, and a run resumes exactly."""

import os
import signal

import jax
import numpy as np

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


def one_update(c, tokens, mask, params=None):
    params = models.init(CFG, jax.random.key(0)) if params is None else params
    settings = sft.UpdateSettings.from_config(c)
    opt_state = settings.optimizer.make().init(params)
    microbatches = optim.split_microbatches((tokens, mask), c.microbatches)
    return sft.update(CFG, settings, params, opt_state, microbatches)


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
    mask[:, :10] = True  # targets 1..10 count; 11..16 do not (and, causally, feed nothing that does)
    changed = tokens.copy()
    changed[:, 11:] = rng.integers(0, CFG.vocab_size, (4, 6))
    (p1, _, o1), (p2, _, o2) = (one_update(config(), t, mask) for t in (tokens, changed))
    assert float(o1["loss"]) == float(o2["loss"]) and float(o1["grad_norm"]) == float(o2["grad_norm"])
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
