"""Per-layer remat and the scan over layers (``token_logprobs(layers=...)``) against the loop.

They change what the backward pass keeps and what XLA compiles, never the numbers: log-probs,
entropies and gradients must match the unrolled loop's. Jitted on CPU they come out bit-identical;
the tolerances leave room for float reassociation only (the compiled scan against an op-by-op
loop differs by up to about 6e-6 in gradients of magnitude 10).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax import models

CFG = models.get_config("tiny", vocab_size=97)  # two layers
T = 12


@pytest.fixture(scope="module")
def run():
    """run(layers, chunk) -> ((logprobs, entropy), grad) of a jitted value-and-grad, memoised."""
    params = models.init(CFG, jax.random.key(1))
    # Non-trivial biases and norms, and layers that differ, so a swapped layer shows.
    params = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.key(2), x.shape),
                          params)
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(0, CFG.vocab_size, (3, T)), jnp.int32)
    start, end = np.array([[0], [3], [0]]), np.array([[T], [T], [8]])  # none, left, right padding
    mask = jnp.asarray((np.arange(T)[None] >= start) & (np.arange(T)[None] < end))
    weights = jnp.asarray(rng.normal(size=(2, 3, T - 1)), jnp.float32)
    memo = {}

    def value_and_grad(layers, chunk):
        def objective(p):
            logprobs, entropy = models.token_logprobs(CFG, p, tokens, mask, 0.7, chunk,
                                                      layers=layers)
            return jnp.sum(weights[0] * logprobs + weights[1] * entropy), (logprobs, entropy)

        if (layers, chunk) not in memo:
            (_, outputs), grad = jax.jit(jax.value_and_grad(objective, has_aux=True))(params)
            memo[layers, chunk] = outputs, grad
        return memo[layers, chunk]

    return value_and_grad


@pytest.mark.parametrize("chunk", [0, 5])  # dense logits; 11 positions in a ragged last chunk
@pytest.mark.parametrize("layers", ["remat", "scan"])
def test_mode_equals_the_loop_in_value_and_gradient(run, layers, chunk):
    (logprobs, entropy), grad = run(layers, chunk)
    (loop_logprobs, loop_entropy), loop_grad = run("loop", chunk)
    np.testing.assert_allclose(logprobs, loop_logprobs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(entropy, loop_entropy, rtol=1e-5, atol=1e-6)
    assert jax.tree.structure(grad) == jax.tree.structure(loop_grad)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
                 grad, loop_grad)


def test_each_mode_traces_to_what_it_names():
    """A mode that silently fell back to the loop would pass the equality test above."""
    params = models.abstract_params(CFG)
    tokens, mask = jnp.zeros((1, T), jnp.int32), jnp.ones((1, T), bool)

    def jaxpr(layers):
        return str(jax.make_jaxpr(lambda p: models.token_logprobs(CFG, p, tokens, mask,
                                                                  layers=layers))(params))

    checkpoint = jax.make_jaxpr(jax.checkpoint(jnp.sin))(1.0).eqns[0].primitive.name + "["
    loop, remat, scan = jaxpr("loop"), jaxpr("remat"), jaxpr("scan")
    assert checkpoint not in loop and "scan[" not in loop
    assert remat.count(checkpoint) == CFG.num_layers and "scan[" not in remat
    assert scan.count(checkpoint) == 1 and scan.count("scan[") == 1
    assert f"length={CFG.num_layers}" in scan


@pytest.mark.parametrize("chunk", [0, 5])
def test_unknown_mode_names_the_known_ones(chunk):
    tokens, mask = jnp.zeros((1, T), jnp.int32), jnp.ones((1, T), bool)
    with pytest.raises(ValueError, match=r"\('loop', 'remat', 'scan'\).*'unrolled'"):
        jax.eval_shape(lambda p: models.token_logprobs(CFG, p, tokens, mask, chunk=chunk,
                                                       layers="unrolled"),
                       models.abstract_params(CFG))
