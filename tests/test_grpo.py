"""Tests for r1jax.grpo against an independent, literal numpy/python transcription of
docs/recipe.md §2 (loops over sequences and tokens, float64, analytic gradients)."""

import functools
import math

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

from r1jax import grpo

MODES = [  # (aggregation, length_normalized)
    ("seq_mean_token_mean", False),
    ("token_mean", False),
    ("seq_mean_token_sum_norm", False),
    ("sequence", False),
    ("sequence", True),
]
MAX_LEN = 9  # generation budget for the constant normaliser (> T below)
CLIP_LOW, CLIP_HIGH = 0.2, 0.28


# ----------------------------------------------------------------------------------------------
# Reference implementation: one python loop per formula.


def ref_advantages(rewards, G, normalize_std=True):
    out = [0.0] * len(rewards)
    for b in range(len(rewards) // G):
        idx = [b * G + j for j in range(G) if math.isfinite(rewards[b * G + j])]
        vals = [float(rewards[i]) for i in idx]
        if len(vals) < 2 or max(vals) == min(vals):
            continue  # documented: no baseline / zero variance -> 0
        mean = sum(vals) / len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
        for i in idx:
            out[i] = (rewards[i] - mean) / (std + 1e-6) if normalize_std else rewards[i] - mean
    return np.array(out)


def clipped_surrogate(rho, A, cl, ch):
    """-min(rho A, clip(rho) A) and its derivative with respect to rho."""
    unclipped, clipped = rho * A, min(max(rho, 1 - cl), 1 + ch) * A
    if clipped < unclipped:  # clip active: the clipped branch is constant in rho
        return -clipped, 0.0
    return -unclipped, -A


def k3(x):
    """k3 and its derivative with respect to log pi (x = log pi_ref - log pi)."""
    return math.exp(x) - x - 1, -(math.exp(x) - 1)


def ref_policy_loss(logp, old, ref, adv, mask, mode, cl, ch, beta, max_len=None, ln=False):
    """Loss, d loss / d logp [N, T] and metrics, literally as in §1.8 (empty rows left out)."""
    N, T = logp.shape
    grad = np.zeros((N, T))
    rows = [[t for t in range(T) if mask[i, t]] for i in range(N)]
    seqs = [i for i in range(N) if rows[i]]
    B, n_tokens = len(seqs), sum(len(rows[i]) for i in seqs)
    loss, units = 0.0, []  # units: (ratio, advantage, k3) per metric unit
    for i in seqs:
        toks, n, A = rows[i], len(rows[i]), adv[i]
        if mode == "sequence":
            scale = 1.0 / n if ln else 1.0
            R = math.exp(scale * sum(logp[i, t] - old[i, t] for t in toks))
            pg, dpg_dR = clipped_surrogate(R, A, cl, ch)
            kl, dkl = k3(sum(ref[i, t] - logp[i, t] for t in toks)) if ref is not None else (0, 0)
            loss += (pg + beta * kl) / B
            for t in toks:  # dR/dlogp_t = R * scale
                grad[i, t] = (dpg_dR * R * scale + beta * dkl) / B
            units.append((R, A, kl))
            continue
        for t in toks:
            rho = math.exp(logp[i, t] - old[i, t])
            pg, dpg_drho = clipped_surrogate(rho, A, cl, ch)
            kl, dkl = k3(ref[i, t] - logp[i, t]) if ref is not None else (0, 0)
            if mode == "seq_mean_token_mean":
                w = 1.0 / (B * n)
            elif mode == "token_mean":
                w = 1.0 / n_tokens
            else:  # seq_mean_token_sum_norm
                w = 1.0 / (B * max_len)
            loss += w * (pg + beta * kl)
            grad[i, t] = w * (dpg_drho * rho + beta * dkl)
            units.append((rho, A, kl))
    U = max(len(units), 1)
    metrics = {
        "clip_frac_low": sum(r < 1 - cl and a < 0 for r, a, _ in units) / U,
        "clip_frac_high": sum(r > 1 + ch and a > 0 for r, a, _ in units) / U,
        "ratio_mean": sum(r for r, _, _ in units) / U,
        "ratio_max": max([r for r, _, _ in units], default=0.0),
        "num_tokens": n_tokens,
        "num_seqs": B,
    }
    if ref is not None:
        metrics["kl"] = sum(k for _, _, k in units) / U
    return loss, grad, metrics


# ----------------------------------------------------------------------------------------------
# Helpers.


advantages = jax.jit(grpo.advantages, static_argnums=(1, 2))


def kwargs(mode, ln, kl_coef):
    return {"aggregation": mode, "length_normalized": ln, "kl_coef": kl_coef,
            "clip_low": CLIP_LOW, "clip_high": CLIP_HIGH,
            "max_len": MAX_LEN if mode == "seq_mean_token_sum_norm" else None}


# Every mode in one jit: one compile per (kl_coef, shapes, dtype) keeps the suite fast on 2 cores.
@functools.partial(jax.jit, static_argnames="kl_coef")
def loss_and_grad(logp, old, ref, adv, mask, kl_coef):
    """{(mode, ln): (loss, d loss / d logp, metrics)} for every mode of MODES."""
    def one(mode, ln):
        def f(lp):
            return grpo.policy_loss(lp, old, ref, adv, mask, **kwargs(mode, ln, kl_coef))

        (loss, metrics), grad = jax.value_and_grad(f, has_aux=True)(logp)
        return loss, grad, metrics

    return {m: one(*m) for m in MODES}


@functools.partial(jax.jit, static_argnames="kl_coef")
def terms_and_grad(logp, old, ref, adv, mask, kl_coef):
    """{(mode, ln): (LossTerms, d loss_sum / d logp)} for every mode."""
    def one(mode, ln):
        def f(lp):
            terms = grpo.policy_loss_terms(lp, old, ref, adv, mask, **kwargs(mode, ln, kl_coef))
            return terms.loss_sum, terms

        (_, terms), grad = jax.value_and_grad(f, has_aux=True)(logp)
        return terms, grad

    return {m: one(*m) for m in MODES}


def random_case(seed, N=8, T=7, scale=0.7, dtype=np.float64):
    """Ragged (also non-prefix) masks with one empty row, log-ratios far outside the clip range,
    advantages of both signs, and junk (inf, huge) at masked positions."""
    rng = np.random.default_rng(seed)
    mask = (np.arange(T) < rng.integers(1, T + 1, N)[:, None]) & (rng.random((N, T)) > 0.15)
    mask[rng.integers(N)] = False
    old = rng.normal(-1.5, 1.0, (N, T))
    logp = old + rng.normal(0.0, scale, (N, T))
    ref = logp + rng.normal(0.0, 0.5, (N, T))
    adv = rng.normal(0.0, 1.0, N)
    logp[~mask], old[~mask], ref[~mask] = 0.0, -np.inf, 1e4
    return logp.astype(dtype), old.astype(dtype), ref.astype(dtype), adv.astype(dtype), mask


# ----------------------------------------------------------------------------------------------
# Advantages.


def test_advantage_vectors_from_the_reference():
    np.testing.assert_allclose(advantages(jnp.array([1.0, 0.0]), 2), [0.70710678, -0.70710678],
                               rtol=1e-5)
    np.testing.assert_allclose(advantages(np.array([1.0, 0.0]), 2, normalize_std=False),
                               [0.5, -0.5])
    r16 = np.zeros(16)
    r16[3] = 1.0
    a = np.asarray(advantages(r16, 16))
    assert abs(a[3] - 3.75) < 1e-4 and np.all(np.abs(np.delete(a, 3) + 0.25) < 1e-4)
    a = np.asarray(advantages(r16, 16, normalize_std=False))
    np.testing.assert_allclose(a[[3, 0]], [0.9375, -0.0625], rtol=1e-6)


@pytest.mark.parametrize("normalize_std", [True, False])
def test_zero_variance_group_is_exactly_zero(normalize_std):
    # the float32 mean of three equal rewards need not be the reward: r - mean leaves a residue
    r = np.array([0.8132702] * 3 + [0.3836775] * 3 + [0.7] * 3 + [0.0, 1.0, 1.0], np.float32)
    assert np.any(jnp.mean(r[:9].reshape(3, 3), -1) != r[:9:3])
    a = np.asarray(advantages(r, 3, normalize_std))
    assert np.all(a[:9] == 0.0) and np.all(a[9:] != 0.0)


def test_nan_rewards_get_zero_and_leave_the_group_statistics():
    nan = float("nan")
    r = [1.0, nan, 0.0, 1.0,  nan, 2.0, nan, nan,  nan, nan, nan, nan,  0.5, 0.5, nan, 3.0]
    a = np.asarray(jax.jit(grpo.advantages, static_argnums=(1, 2))(jnp.array(r), 4, True))
    assert np.all(np.isfinite(a))
    a3 = ref_advantages([1.0, 0.0, 1.0], 3)  # the group without its NaN
    np.testing.assert_allclose(a[:4], [a3[0], 0.0, a3[1], a3[2]], rtol=1e-5)
    assert np.all(a[4:12] == 0.0)  # one finite reward (std undefined), all NaN
    np.testing.assert_allclose(a, ref_advantages(r, 4), rtol=1e-5, atol=1e-7)


@settings(max_examples=30, deadline=None)
@given(G=st.sampled_from([2, 4, 16]), B=st.integers(1, 3), normalize_std=st.booleans(),
       data=st.data())
def test_advantages_match_reference(G, B, normalize_std, data):
    reward = st.one_of(st.sampled_from([0.0, 1.0, float("nan")]), st.floats(-5, 5))
    r = data.draw(st.lists(reward, min_size=B * G, max_size=B * G))
    with jax.enable_x64(True):
        a = np.asarray(advantages(np.array(r), G, normalize_std))
    np.testing.assert_allclose(a, ref_advantages(r, G, normalize_std), rtol=1e-9, atol=1e-9)
    assert np.all(np.abs(a.reshape(B, G).sum(-1)) < 1e-8)  # zero-sum within each group
    if normalize_std:
        assert np.all(np.abs(a) <= (G - 1) / math.sqrt(G) + 1e-9)  # Bessel bound (§1.4)


# ----------------------------------------------------------------------------------------------
# Policy loss against the reference.


@pytest.mark.parametrize("x64,kl_coef,with_ref", [
    (True, 0.0, False), (True, 0.0, True), (True, 0.1, True),
    (False, 0.0, False), (False, 0.1, True),
], ids=["f64-nokl", "f64-kl0-ref", "f64-kl", "f32-nokl", "f32-kl"])
def test_policy_loss_matches_reference(x64, kl_coef, with_ref):
    """Every mode, kl on/off, clip_high != clip_low, on ragged random cases with one empty row
    (the reference leaves it out of every denominator), in float64 and in float32."""
    dtype = np.float64 if x64 else np.float32
    # float32: 1e-5 relative, plus 1e-6 absolute for entries that are nearly 0
    tol = {"rtol": 1e-5, "atol": 0.0 if x64 else 1e-6}
    with jax.enable_x64(x64):
        for seed in range(5):
            logp, old, ref, adv, mask = random_case(seed, dtype=dtype)
            ref = ref if with_ref else None
            got = loss_and_grad(logp, old, ref, adv, mask, kl_coef)
            for mode, ln in MODES:
                want_loss, want_grad, want_metrics = ref_policy_loss(
                    *(None if a is None else a.astype(np.float64) for a in (logp, old, ref, adv)),
                    mask, mode, CLIP_LOW, CLIP_HIGH, kl_coef, MAX_LEN, ln)
                loss, grad, metrics = got[mode, ln]
                msg = f"{mode} length_normalized={ln} seed={seed}"
                np.testing.assert_allclose(loss, want_loss, **tol, err_msg=msg)
                np.testing.assert_allclose(grad, want_grad, **tol, err_msg=msg)
                assert metrics.keys() == want_metrics.keys()
                for k, v in want_metrics.items():
                    np.testing.assert_allclose(metrics[k], v, rtol=1e-5, err_msg=f"{k} {msg}")
                assert want_metrics["clip_frac_low"] > 0 or want_metrics["clip_frac_high"] > 0


@pytest.mark.parametrize("mode,ln", MODES)
def test_first_update_loss_is_minus_aggregated_advantage_and_gradient_is_not_zero(mode, ln):
    """mu = 1 (§1.9 item 5): logp == old, so rho == 1 in value; the loss is the aggregated -A,
    which is 0 (to rounding) for the per-sequence modes, yet the gradient is the plain policy
    gradient -A_i times the per-token weight of the mode."""
    G, T = 4, 7
    adv = np.asarray(advantages(np.array([1.0, 0, 0, 1, 1, 1, 1, 0]), G))
    n = np.array([7, 2, 5, 3, 1, 6, 4, 2])
    mask = np.arange(T) < n[:, None]
    logp = np.random.default_rng(0).normal(-1.0, 0.5, (8, T)).astype(np.float32)
    loss, grad, metrics = loss_and_grad(logp, logp, None, adv, mask, 0.0)[mode, ln]
    B = len(n)
    want_loss, per_token = {
        "seq_mean_token_mean": (0.0, -adv / (B * n)),
        "token_mean": (-(n * adv).sum() / n.sum(), -adv / n.sum()),
        "seq_mean_token_sum_norm": (-(n * adv).sum() / (B * MAX_LEN), -adv / (B * MAX_LEN)),
        "sequence": (0.0, -adv / (B * n) if ln else -adv / B),
    }[mode]
    np.testing.assert_allclose(loss, want_loss, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad, np.where(mask, per_token[:, None], 0.0), rtol=1e-6)
    assert np.abs(grad).max() > 0.01
    assert metrics["ratio_mean"] == 1.0
    assert metrics["clip_frac_low"] == metrics["clip_frac_high"] == 0


@pytest.mark.parametrize("mode,ln", MODES)
def test_gradient_accumulation_equals_full_batch(mode, ln):
    logp, old, ref, adv, mask = random_case(7, dtype=np.float32)
    full_loss, full_grad, full_metrics = loss_and_grad(logp, old, ref, adv, mask, 0.1)[mode, ln]
    terms, grads = None, []
    for sl in (slice(0, 4), slice(4, 8)):  # different token counts and empty rows per half
        t, g = terms_and_grad(logp[sl], old[sl], ref[sl], adv[sl], mask[sl], 0.1)[mode, ln]
        terms = t if terms is None else terms.combine(t)
        grads.append(g)
    loss, metrics = grpo.finish_terms(terms)
    np.testing.assert_allclose(np.concatenate(grads) / terms[1], full_grad, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(loss, full_loss, rtol=1e-6)
    for k in full_metrics:
        np.testing.assert_allclose(metrics[k], full_metrics[k], rtol=1e-6, err_msg=k)


@pytest.mark.parametrize("mode,ln", MODES)
def test_empty_rows_are_inert(mode, ln):
    """A row without loss tokens (padding, overlong-filtered) is ignored whatever it holds; that
    it is also out of every denominator is pinned by the reference test (one empty row each)."""
    logp, old, ref, adv, mask = random_case(3, dtype=np.float32)
    empty = ~mask.any(-1)
    loss, grad, metrics = loss_and_grad(logp, old, ref, adv, mask, 0.1)[mode, ln]
    logp[empty], old[empty], ref[empty], adv[empty] = -np.inf, 3.0, np.nan, 1e9
    loss2, grad2, metrics2 = loss_and_grad(logp, old, ref, adv, mask, 0.1)[mode, ln]
    assert loss == loss2 and np.all(grad == grad2) and np.all(grad[empty] == 0)
    assert all(metrics[k] == metrics2[k] for k in metrics)
    loss, grad, metrics = loss_and_grad(logp, old, ref, adv, np.zeros_like(mask), 0.1)[mode, ln]
    assert loss == 0 and np.all(grad == 0) and metrics["num_tokens"] == 0
    assert all(np.isfinite(v) for v in metrics.values())


def test_argument_errors_are_raised_before_compile():
    logp, old, ref, adv, mask = random_case(0)
    jitted = jax.jit(grpo.policy_loss, static_argnames=("aggregation", "max_len"))
    with pytest.raises(ValueError, match="'tokenmean'.*seq_mean_token_mean, token_mean, "
                                         "seq_mean_token_sum_norm, sequence"):
        jitted(logp, old, ref, adv, mask, aggregation="tokenmean")
    with pytest.raises(ValueError, match="needs max_len"):
        jitted(logp, old, ref, adv, mask, aggregation="seq_mean_token_sum_norm")
    with pytest.raises(ValueError, match="length_normalized"):
        grpo.policy_loss(logp, old, ref, adv, mask, aggregation="token_mean",
                         length_normalized=True)
    with pytest.raises(ValueError, match="needs ref_logprobs"):
        grpo.policy_loss(logp, old, None, adv, mask, kl_coef=0.04)
    with pytest.raises(ValueError, match="shapes disagree"):
        grpo.policy_loss(logp, old, ref, adv[:-1], mask)


# ----------------------------------------------------------------------------------------------
# DAPO overlong shaping.


def ref_overlong(length, max_len, cache_len):  # eq. 13
    if length <= max_len - cache_len:
        return 0.0
    if length <= max_len:
        return ((max_len - cache_len) - length) / cache_len
    return -1.0


def test_overlong_penalty_dapo_values():
    got = grpo.overlong_penalty(jnp.array([0, 16384, 18432, 20480, 20481]), 20480, 4096)
    np.testing.assert_allclose(got, [0.0, 0.0, -0.5, -1.0, -1.0])
    assert got.dtype == jnp.float32


@settings(max_examples=30, deadline=None)
@given(max_len=st.integers(1, 5000), data=st.data())
def test_overlong_penalty_matches_eq13(max_len, data):
    cache_len = data.draw(st.integers(1, max_len))
    lengths = data.draw(st.lists(st.integers(0, 2 * max_len), min_size=8, max_size=8))
    got = np.asarray(grpo.overlong_penalty(np.array(lengths), max_len, cache_len))
    want = [ref_overlong(n, max_len, cache_len) for n in lengths]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert np.all((got <= 0) & (got >= -1))


@pytest.mark.parametrize("dtype", [bool, np.float32])
def test_overlong_filter_mask(dtype):
    mask = (np.arange(4) < np.array([4, 2, 3])[:, None]).astype(dtype)
    got = np.asarray(grpo.overlong_filter_mask(mask, np.array([True, False, True])))
    assert got.dtype == mask.dtype
    np.testing.assert_array_equal(got, mask * np.array([0, 1, 0], dtype)[:, None])
