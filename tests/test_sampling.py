"""The group sampler against full, uncached forward passes of the same model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax import models, sampling
from r1jax.mesh import make_mesh
from r1jax.stopping import StopCondition

CFG = models.get_config("tiny")  # GQA: 4 query heads over 2 kv heads
PROMPTS = [[5, 9, 17], [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5], [200], [7, 7, 7, 7, 7, 7]]
N = 10


@pytest.fixture(scope="module")
def params():
    params = models.init(CFG, jax.random.key(0))
    # Larger weights than the 0.02 init make the distributions peaked and varied.
    return jax.tree.map(lambda x: x * 4.0 if x.ndim == 2 else x, params)


def full_logits(params, sequence):
    return np.asarray(models.forward(CFG, params, jnp.asarray([sequence])))[0]


def test_greedy_equals_repeated_argmax_of_the_full_forward(params):
    out = sampling.generate(CFG, params, PROMPTS, jax.random.key(1), num_samples=2,
                            max_new_tokens=N, temperature=0.0)
    for b, prompt in enumerate(PROMPTS):
        sequence = list(prompt)
        for _ in range(N):
            sequence.append(int(np.argmax(full_logits(params, sequence)[-1])))
        for row in (2 * b, 2 * b + 1):
            assert out.tokens[row].tolist() == sequence[len(prompt):]
    assert out.mask.all() and (out.lengths == N).all()


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_are_the_full_forward_log_softmax_at_the_sampled_tokens(params, temperature):
    G = 3
    out = sampling.generate(CFG, params, PROMPTS, jax.random.key(2), num_samples=G,
                            max_new_tokens=N, temperature=temperature)
    for row in range(len(PROMPTS) * G):
        prompt = PROMPTS[row // G]  # rows b*G .. b*G+G-1 belong to prompt b
        completion = out.tokens[row].tolist()
        logits = full_logits(params, prompt + completion) / temperature
        logp = jax.nn.log_softmax(logits, axis=-1)
        expected = [logp[len(prompt) - 1 + t, tok] for t, tok in enumerate(completion)]
        np.testing.assert_allclose(out.logprobs[row], expected, atol=1e-4)
    # The G samples of one prompt differ (peaked but not deterministic distributions).
    assert len({tuple(out.tokens[r].tolist()) for r in range(G)}) > 1


def _completion_logprobs(params, out, G, temperature):
    """Per row: the full forward's log-softmax(logits / T) [N, V] over its completion."""
    for row in range(len(PROMPTS) * G):
        prompt, completion = PROMPTS[row // G], out.tokens[row].tolist()
        logits = full_logits(params, prompt + completion)[len(prompt) - 1:-1]
        yield row, completion, np.asarray(jax.nn.log_softmax(logits / temperature, axis=-1))


def test_greedy_logprobs_are_under_the_untempered_distribution(params):
    out = sampling.generate(CFG, params, PROMPTS, jax.random.key(1), num_samples=2,
                            max_new_tokens=N, temperature=0.0)
    for row, completion, logp in _completion_logprobs(params, out, 2, 1.0):
        np.testing.assert_allclose(out.logprobs[row], logp[np.arange(N), completion], atol=1e-4)


def test_evaluation_settings_draw_from_the_nucleus_and_report_tempered_logprobs(params):
    """The paper's T 0.6 / top-p 0.95: every token lies in the nucleus of the full forward's
    tempered distribution (0.95 + 1e-4: the cached pass differs by float noise), and its
    log-prob is the tempered, untruncated one."""
    out = sampling.generate(CFG, params, PROMPTS, jax.random.key(2), num_samples=3,
                            max_new_tokens=N, temperature=0.6, top_p=0.95)
    outside = 0
    for row, completion, logp in _completion_logprobs(params, out, 3, 0.6):
        np.testing.assert_allclose(out.logprobs[row], logp[np.arange(N), completion], atol=1e-4)
        outside += sum(tok not in _kept(np.exp(logp[t].astype(np.float64)), 0.95 + 1e-4, 0)
                       for t, tok in enumerate(completion))
    assert outside == 0


def test_top_k_one_is_greedy(params):
    kwargs = dict(num_samples=2, max_new_tokens=N)
    greedy = sampling.generate(CFG, params, PROMPTS, jax.random.key(3), temperature=0.0, **kwargs)
    top1 = sampling.generate(CFG, params, PROMPTS, jax.random.key(3), top_k=1, **kwargs)
    np.testing.assert_array_equal(top1.tokens, greedy.tokens)


PROBS = np.array([0.30, 0.25, 0.15, 0.12, 0.08, 0.05, 0.03, 0.02])  # cumulative: 0.30, 0.55, ...


def _kept(probs, top_p, top_k):
    """float64 reference, exact for these decimal probabilities: the top_k most likely (and ties
    with the k-th), then, renormalised, the fewest most likely of those whose mass reaches top_p
    (and ties with the least likely of them)."""
    if top_k:
        probs = np.where(probs >= np.sort(probs)[-top_k], probs, 0.0)
    probs = probs / probs.sum()
    by_mass = np.sort(probs)[::-1]
    n = int(np.argmax(np.cumsum(by_mass) >= top_p - 1e-12)) + 1
    return set(np.flatnonzero(probs >= by_mass[n - 1]).tolist())


@pytest.mark.parametrize("temperature, top_p, top_k, n_kept", [
    (1.0, 0.5, 0, 2), (1.0, 0.8, 0, 4), (1.0, 0.93, 0, 6),
    (1.0, 0.55, 0, 2),  # exactly the mass of two tokens (0.54999995 in float32)
    (0.6, 0.95, 0, 5),  # evaluation's settings: p^(1/0.6) renormalised, cumulative 0.41, 0.71,
                        # 0.83, 0.92, 0.97
    (1.0, 1.0, 3, 3),
    (0.6, 0.9, 4, 3),  # top-p of the renormalised top 4 (0.44, 0.77, 0.90); of all 8 it keeps 4
])
def test_truncated_draws_stay_in_the_kept_set_in_its_proportions(temperature, top_p, top_k,
                                                                  n_kept):
    tempered = PROBS ** (1 / temperature) / np.sum(PROBS ** (1 / temperature))
    kept = _kept(tempered, top_p, top_k)
    assert len(kept) == n_kept
    logits = jnp.log(jnp.asarray(np.tile(PROBS, (4096, 1)), jnp.float32))
    draw = jax.jit(sampling.sample_token, static_argnums=(2, 3, 4))
    tokens, logprobs = draw(logits, jax.random.key(4), temperature, top_p, top_k)
    counts = np.bincount(np.asarray(tokens), minlength=len(PROBS))
    assert set(np.flatnonzero(counts).tolist()) == kept
    kept = sorted(kept)
    expected = tempered[kept] / tempered[kept].sum() * len(tokens)
    assert np.all(np.abs(counts[kept] - expected) < 5 * np.sqrt(expected) + 1)
    # Reported logprobs are of the tempered, untruncated distribution.
    np.testing.assert_allclose(logprobs, np.log(tempered)[np.asarray(tokens)], atol=1e-5)


def _mask(probs, top_p, top_k):
    logits = jnp.log(jnp.asarray([probs], jnp.float32))
    return set(np.flatnonzero(sampling.truncation_mask(logits, top_p, top_k)[0]).tolist())


@pytest.mark.parametrize("n", range(1, 8))
def test_top_p_equal_to_the_mass_of_n_tokens_keeps_those_n(n):
    top_p = float(f"{PROBS[:n].sum():.2f}")  # 0.3, 0.55, 0.7, 0.82, 0.9, 0.95, 0.98
    assert _mask(PROBS, top_p, 0) == set(range(n))


def test_top_p_below_the_largest_probability_keeps_only_the_argmax():
    assert _mask(PROBS, 1e-7, 0) == _mask(PROBS, 0.3, 0) == {0}


def test_ties_at_the_top_p_and_top_k_boundaries_are_all_kept():
    tied = [0.4, 0.2, 0.2, 0.1, 0.1]
    assert _mask(tied, 0.5, 0) == _mask(tied, 0.6, 0) == {0, 1, 2}
    assert _mask(tied, 1.0, 2) == {0, 1, 2}
    assert _mask(tied, 1.0, 4) == {0, 1, 2, 3, 4}
    assert _mask(tied, 1.0, 1) == {0}


def test_stop_tokens_give_lengths_masks_and_padding(params):
    pad_id = 255
    free = sampling.generate(CFG, params, PROMPTS, jax.random.key(5), num_samples=4,
                             max_new_tokens=N)
    # Stop on tokens the free run emitted at various steps.
    stops = tuple({int(free.tokens[r, t]) for r, t in [(0, 2), (5, 6), (9, 0), (14, 4)]})
    out = sampling.generate(CFG, params, PROMPTS, jax.random.key(5), num_samples=4,
                            max_new_tokens=N, stop=StopCondition(stops), pad_id=pad_id)
    for row in range(out.tokens.shape[0]):
        free_row = free.tokens[row].tolist()
        hits = [t for t, tok in enumerate(free_row) if tok in stops]
        length = hits[0] + 1 if hits else N
        assert int(out.lengths[row]) == length
        assert out.tokens[row, :length].tolist() == free_row[:length]  # same rng, same draws
        assert out.mask[row].tolist() == [True] * length + [False] * (N - length)
        assert (out.tokens[row, length:] == pad_id).all()
        assert (out.logprobs[row, length:] == 0).all()
        assert bool(out.truncated[row]) == (not hits)  # N tokens and no stop among them
    assert out.lengths.min() < N, "some rows should have stopped early"
    assert out.truncated.any() and not out.truncated.all()
    # The prompts as the sampler saw them: left-padded to one bucket, the mask on real tokens.
    width = out.prompts.shape[1]
    for b, prompt in enumerate(PROMPTS):
        assert out.prompts[b, width - len(prompt):].tolist() == list(prompt)
        assert out.prompt_mask[b].tolist() == [False] * (width - len(prompt)) + [True] * len(prompt)


def test_same_rng_same_output_and_another_rng_differs(params):
    kwargs = dict(num_samples=2, max_new_tokens=N, top_p=0.9)
    a = sampling.generate(CFG, params, PROMPTS, jax.random.key(6), **kwargs)
    b = sampling.generate(CFG, params, PROMPTS, jax.random.key(6), **kwargs)
    c = sampling.generate(CFG, params, PROMPTS, jax.random.key(7), **kwargs)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_array_equal(a.logprobs, b.logprobs)
    assert not np.array_equal(a.tokens, c.tokens)


def test_prompt_lengths_are_bucketed_so_compilations_stay_bounded(params):
    # The jitted sampler compiles once per input shape: 13 prompt lengths, 3 padded widths.
    rng = np.random.default_rng(0)
    widths = {}
    for n in range(1, 40, 3):
        prompts = [rng.integers(1, 250, size=n).tolist(), [1]]
        out = sampling.generate(CFG, params, prompts, jax.random.key(8), num_samples=2,
                                max_new_tokens=4, temperature=0.0)
        widths[n] = out.prompts.shape[1]
    assert widths == {n: 16 if n <= 16 else 32 if n <= 32 else 64 for n in range(1, 40, 3)}


def test_sharded_sampling_equals_single_device(params):
    mesh = make_mesh(data=2, fsdp=2, tensor=2)
    kwargs = dict(num_samples=2, max_new_tokens=N, temperature=1.0)
    single = sampling.generate(CFG, params, PROMPTS, jax.random.key(9), **kwargs)
    sharded = sampling.generate(CFG, models.shard_params(CFG, params, mesh), PROMPTS,
                                jax.random.key(9), mesh=mesh, **kwargs)
    assert sharded.tokens.sharding.spec[0] == ("data", "fsdp")
    np.testing.assert_array_equal(sharded.tokens, single.tokens)
    np.testing.assert_allclose(sharded.logprobs, single.logprobs, atol=1e-5)


def test_bad_requests_are_refused_before_compiling(params):
    with pytest.raises(ValueError, match="empty prompt"):
        sampling.generate(CFG, params, [[1], []], jax.random.key(0))
    with pytest.raises(ValueError, match="top_p"):
        sampling.generate(CFG, params, [[1]], jax.random.key(0), top_p=0.0)
    with pytest.raises(ValueError, match="max_position"):
        sampling.generate(CFG, params, [[1]], jax.random.key(0), max_new_tokens=CFG.max_position)
