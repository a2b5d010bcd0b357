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


def test_top_k_one_is_greedy(params):
    kwargs = dict(num_samples=2, max_new_tokens=N)
    greedy = sampling.generate(CFG, params, PROMPTS, jax.random.key(3), temperature=0.0, **kwargs)
    top1 = sampling.generate(CFG, params, PROMPTS, jax.random.key(3), top_k=1, **kwargs)
    np.testing.assert_array_equal(top1.tokens, greedy.tokens)


def _nucleus(probs, top_p):
    """Numpy reference: the smallest set of most likely tokens with mass >= top_p."""
    order = np.argsort(-probs, kind="stable")
    mass = np.cumsum(probs[order])
    return set(order[: int(np.searchsorted(mass, top_p - 1e-7)) + 1].tolist())


@pytest.mark.parametrize("top_p", [0.5, 0.8, 0.93])  # away from the cumulative sums
def test_top_p_never_leaves_the_nucleus_and_keeps_its_proportions(top_p):
    probs = np.array([0.30, 0.25, 0.15, 0.12, 0.08, 0.05, 0.03, 0.02])
    logits = jnp.log(jnp.asarray(np.tile(probs, (4096, 1)), jnp.float32))
    nucleus = _nucleus(probs, top_p)
    draw = jax.jit(sampling.sample_token, static_argnums=(2, 3, 4))
    tokens, logprobs = draw(logits, jax.random.key(4), 1.0, top_p, 0)
    counts = np.bincount(np.asarray(tokens), minlength=len(probs))
    assert set(np.flatnonzero(counts).tolist()) == nucleus
    kept = sorted(nucleus)
    expected = probs[kept] / probs[kept].sum() * len(tokens)
    assert np.all(np.abs(counts[kept] - expected) < 5 * np.sqrt(expected) + 1)
    # Reported logprobs are of the untruncated distribution.
    np.testing.assert_allclose(logprobs, np.log(probs)[np.asarray(tokens)], atol=1e-5)


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
    before = sampling._generate._cache_size()
    rng = np.random.default_rng(0)
    lengths = range(1, 40, 3)
    for n in lengths:
        prompts = [rng.integers(1, 250, size=n).tolist(), [1]]
        sampling.generate(CFG, params, prompts, jax.random.key(8), num_samples=2,
                          max_new_tokens=4, temperature=0.0)
    buckets = {sampling.prompt_bucket(n) for n in lengths}
    assert buckets == {16, 32, 64}
    assert sampling._generate._cache_size() - before == len(buckets)


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
