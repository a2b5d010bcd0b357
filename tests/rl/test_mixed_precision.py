"""Mixed precision: float32 master params and optimizer state with bfloat16 compute move at the
paper's learning rate as a float32 run does; bfloat16 params (the failure this prevents) do not."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax import models, optim, rl

CFG = models.get_config("tiny", vocab_size=64)
N = 10  # completion tokens


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(0)
    n, P = 8, 6
    batch = dict(prompts=rng.integers(1, 64, (n, P)).astype(np.int32),
                 prompt_mask=np.ones((n, P), bool),
                 tokens=rng.integers(1, 64, (n, N)).astype(np.int32), mask=np.ones((n, N), bool),
                 loss_mask=np.ones((n, N), bool), advantages=rng.normal(size=n).astype(np.float32),
                 ref_logprobs=np.zeros((n, N), np.float32))
    init = models.init(CFG, jax.random.key(0))
    batch["logprobs"] = np.asarray(rl.completion_logprobs(CFG, settings("float32"), init, batch)[0])
    return init, optim.split_microbatches(batch, 1)


def settings(compute_dtype):
    return rl.UpdateSettings(optim.OptimizerSettings(lr=1e-6, total_steps=100, b2=0.99),
                             compute_dtype, 0, "loop", 1.0, "seq_mean_token_mean", 0.2, 0.2, 0.0,
                             N, False)


def moved(case, compute_dtype, master_dtype, steps=20):
    """The change of every parameter after ``steps`` updates at lr 1e-6, as float64 [n_params]."""
    init, batch = case
    params = optim.cast_floating(init, master_dtype)
    s = settings(compute_dtype)
    p, opt_state = jax.tree.map(jnp.copy, params), s.optimizer.make().init(params)
    for _ in range(steps):
        p, opt_state, out = rl.update(CFG, s, p, opt_state, batch)
        assert not bool(out["skipped"])
    assert jax.tree.leaves(p)[0].dtype == jnp.dtype(master_dtype)  # masters keep their dtype
    return np.concatenate([(np.asarray(a, np.float64) - np.asarray(b, np.float64)).ravel()
                           for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(params))])


def test_bf16_compute_on_float32_masters_moves_params_as_float32_does(case):
    reference = moved(case, "float32", "float32")
    mixed = moved(case, "bfloat16", "float32")
    cosine = mixed @ reference / np.linalg.norm(mixed) / np.linalg.norm(reference)
    assert cosine > 0.98 and 0.9 < np.linalg.norm(mixed) / np.linalg.norm(reference) < 1.1
    # The same parameters move (0.994 of them; bf16 rounds one in 80k gradients to 0).
    assert abs(np.mean(mixed != 0) - np.mean(reference != 0)) < 1e-3
    assert np.mean(reference != 0) > 0.95
    # What the master copy prevents: 0.02 + 1e-6 == 0.02 in bf16, so bf16 params barely move.
    assert np.mean(moved(case, "bfloat16", "bfloat16") != 0) < 0.1  # measured 0.02


def test_compute_dtype_names():
    assert optim.compute_dtype("auto") == "float32"  # these tests run on CPU
    with pytest.raises(ValueError, match="compute_dtype 'fp16'"):
        optim.compute_dtype("fp16")
    tree = {"w": jnp.ones(2), "ids": jnp.arange(2)}
    cast = optim.cast_floating(tree, "bfloat16")
    assert cast["w"].dtype == jnp.bfloat16 and cast["ids"].dtype == tree["ids"].dtype
    assert optim.cast_floating(tree, "float32")["w"] is tree["w"]  # float32 runs are untouched
