"""The GRPO objective: group-normalised advantages, the clipped policy loss in every aggregation
mode, and DAPO's overlong shaping. Pure jnp functions; formulas in docs/recipe.md §2.

Math is float32 (bf16 inputs are promoted; float64 inputs stay float64 under x64, which the tests
use). Hyperparameters (`group_size`, `aggregation`, clip values, `kl_coef`, `max_len`,
`length_normalized`) are static Python values: bind them with `functools.partial` before `jax.jit`.

Exact gradient accumulation (the tunix design): `policy_loss_terms` returns an unreduced loss
SUM, its denominator and metric sums for one minibatch of whole sequences (`optim.LossTerms`).
Adding the sums and denominators of several minibatches (`LossTerms.combine`, and the gradients
of the sums) and dividing once (`finish_terms`) gives exactly the full-batch loss, gradient and
metrics; `optim.guarded_update` does this for the RL update:

    terms = policy_loss_terms(logprobs_of(params, mb), ...)      # per minibatch
    loss, metrics = finish_terms(terms_a.combine(terms_b))       # once per step

Sequences with no loss tokens (empty, padding rows, overlong-filtered) are absent in every mode:
they add nothing to the loss sum, the denominator or the metrics, and never produce NaN.
"""

import jax.numpy as jnp

from r1jax.optim import LossTerms

AGGREGATIONS = ("seq_mean_token_mean", "token_mean", "seq_mean_token_sum_norm", "sequence")
ADV_EPS = 1e-6


def _float(x):
    """x as a jnp array of at least float32 precision."""
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def advantages(rewards, group_size, normalize_std=True):
    """Group-normalised advantages (R1 eq. 3; Dr. GRPO without std), [B*G] -> [B*G].

    Rows b*G .. b*G+G-1 form one group. Per group, over its finite rewards only:
        A_i = (r_i - mean) / (std + 1e-6)   std unbiased (ddof=1)   if normalize_std
        A_i = r_i - mean                                            otherwise
    Exactly 0 for: non-finite rewards (NaN = unscorable; they are left out of the group's mean and
    std), groups whose finite rewards are all equal (no float residue from the mean), and groups
    with fewer than 2 finite rewards (no baseline, std undefined).
    """
    r = _float(rewards)
    if r.ndim != 1 or r.shape[0] % group_size:
        raise ValueError(f"rewards must be 1-D with a length divisible by group_size={group_size}, "
                         f"got shape {r.shape}")
    r_BG = r.reshape(-1, group_size)
    ok_BG = jnp.isfinite(r_BG)
    n_B1 = ok_BG.sum(-1, keepdims=True)
    mean_B1 = jnp.where(ok_BG, r_BG, 0.0).sum(-1, keepdims=True) / jnp.maximum(n_B1, 1)
    adv_BG = jnp.where(ok_BG, r_BG - mean_B1, 0.0)
    if normalize_std:
        var_B1 = (adv_BG**2).sum(-1, keepdims=True) / jnp.maximum(n_B1 - 1, 1)
        adv_BG = adv_BG / (jnp.sqrt(var_B1) + ADV_EPS)
    hi_B1 = jnp.where(ok_BG, r_BG, -jnp.inf).max(-1, keepdims=True)
    lo_B1 = jnp.where(ok_BG, r_BG, jnp.inf).min(-1, keepdims=True)
    return jnp.where(ok_BG & (hi_B1 > lo_B1), adv_BG, 0.0).reshape(-1)


def _k3(x):
    """k3 KL estimator exp(x) - x - 1 with x = log pi_ref - log pi (>= 0; no clamp)."""
    return jnp.exp(x) - x - 1.0


def _check_args(logprobs_NT, advantages_N, mask_NT, ref_logprobs_NT, aggregation, kl_coef,
                max_len, length_normalized):
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; valid: {', '.join(AGGREGATIONS)}")
    if aggregation == "seq_mean_token_sum_norm" and not max_len:
        raise ValueError("aggregation 'seq_mean_token_sum_norm' needs max_len (the generation "
                         "budget in tokens)")
    if length_normalized and aggregation != "sequence":
        raise ValueError(f"length_normalized=True is the GSPO sequence ratio; it needs "
                         f"aggregation='sequence', got {aggregation!r}")
    if ref_logprobs_NT is None and kl_coef:
        raise ValueError(f"kl_coef={kl_coef} needs ref_logprobs (got None)")
    N, T = jnp.shape(logprobs_NT)
    if jnp.shape(mask_NT) != (N, T) or jnp.shape(advantages_N) != (N,):
        raise ValueError(f"shapes disagree: logprobs {(N, T)}, mask {jnp.shape(mask_NT)}, "
                         f"advantages {jnp.shape(advantages_N)} (want [N, T], [N, T], [N])")


def policy_loss_terms(logprobs_NT, old_logprobs_NT, ref_logprobs_NT, advantages_N, mask_NT,
                      aggregation="seq_mean_token_mean", clip_low=0.2, clip_high=0.2,
                      kl_coef=0.0, max_len=None, length_normalized=False):
    """The GRPO loss of one minibatch as LossTerms(loss_sum, denom, stats); loss = loss_sum / denom.

    Token modes, per loss token (mask True) with rho = exp(logp - old), x = ref - logp:
        l_it = -min(rho A_i, clip(rho, 1 - clip_low, 1 + clip_high) A_i) + kl_coef k3(x)
      seq_mean_token_mean      (DeepSeekMath)  sum_i (1/n_i) sum_t l_it   / #seqs
      token_mean               (DAPO)          sum_i sum_t l_it           / sum_i n_i
      seq_mean_token_sum_norm  (Dr. GRPO)      sum_i sum_t l_it           / (#seqs * max_len)
    `sequence` (R1 eq. 1-2), one ratio per sequence:
        R_i = exp(sum_t (logp - old)), or with length_normalized (GSPO) exp((1/n_i) sum_t ...)
        l_i = -min(R_i A_i, clip(R_i, ...) A_i) + kl_coef k3(sum_t x_it)   -> sum_i l_i / #seqs
    n_i is the number of loss tokens of sequence i and #seqs counts sequences with n_i > 0 (so
    Dr. GRPO's constant is per non-empty sequence; TRL's dr_grpo also counts fully masked rows).
    k3 is neither clamped nor straight-through; `sequence` mode is the literal R1 form, whose
    exp of summed log-ratios overflows float32 past ~88 nats of drift (GSPO's mean does not).
    Values at mask-False positions are ignored (they may be anything, even inf).
    kl_coef must be a static float; ref_logprobs may be None when it is 0 (then no "kl" stat).

    stats are sums over the metric units (tokens, or sequences in `sequence` mode):
    clip_low (rho < 1 - clip_low and A < 0), clip_high (rho > 1 + clip_high and A > 0), ratio,
    kl (k3 without kl_coef), units; ratio_max (a max, 0 when empty); tokens and seqs (counts).
    """
    _check_args(logprobs_NT, advantages_N, mask_NT, ref_logprobs_NT, aggregation, kl_coef,
                max_len, length_normalized)
    logp_NT = _float(logprobs_NT)
    adv_N = _float(advantages_N)
    valid_NT = jnp.asarray(mask_NT).astype(bool)
    n_N = valid_NT.sum(-1).astype(logp_NT.dtype)
    seq_ok_N = n_N > 0
    log_ratio_NT = jnp.where(valid_NT, logp_NT - _float(old_logprobs_NT), 0.0)
    x_NT = None  # log pi_ref - log pi
    if ref_logprobs_NT is not None:
        x_NT = jnp.where(valid_NT, _float(ref_logprobs_NT) - logp_NT, 0.0)

    if aggregation == "sequence":
        log_ratio = log_ratio_NT.sum(-1)
        if length_normalized:
            log_ratio = log_ratio / jnp.maximum(n_N, 1.0)
        adv, valid = adv_N, seq_ok_N
        kl = None if x_NT is None else _k3(x_NT.sum(-1))
    else:
        log_ratio, adv, valid = log_ratio_NT, adv_N[:, None], valid_NT
        kl = None if x_NT is None else _k3(x_NT)
    ratio = jnp.exp(log_ratio)
    loss = -jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high) * adv)
    if kl_coef:
        loss = loss + kl_coef * kl
    loss = jnp.where(valid, loss, 0.0)

    num_seqs = seq_ok_N.sum().astype(logp_NT.dtype)
    if aggregation == "seq_mean_token_mean":
        loss_sum, denom = (loss.sum(-1) / jnp.maximum(n_N, 1.0)).sum(), num_seqs
    elif aggregation == "token_mean":
        loss_sum, denom = loss.sum(), n_N.sum()
    elif aggregation == "seq_mean_token_sum_norm":
        loss_sum, denom = loss.sum(), num_seqs * max_len
    else:
        loss_sum, denom = loss.sum(), num_seqs

    def count(b):
        return (b & valid).sum().astype(logp_NT.dtype)

    ratio = jnp.where(valid, ratio, 0.0)
    stats = {
        "clip_low": count((ratio < 1.0 - clip_low) & (adv < 0)),
        "clip_high": count((ratio > 1.0 + clip_high) & (adv > 0)),
        "ratio": ratio.sum(),
        "ratio_max": ratio.max(),
        "units": valid.sum().astype(logp_NT.dtype),
        "tokens": n_N.sum(),
        "seqs": num_seqs,
    }
    if kl is not None:
        stats["kl"] = jnp.where(valid, kl, 0.0).sum()
    return LossTerms(loss_sum, denom, stats)


def finish_terms(terms: LossTerms):
    """LossTerms -> (loss, metrics); 0 loss and metrics when nothing is valid.

    metrics: clip_frac_low, clip_frac_high, ratio_mean, ratio_max, kl (mean k3, when a reference
    was given), num_tokens, num_seqs; fractions and means are per token (per sequence in
    `sequence` mode).
    """
    loss_sum, denom, stats = terms
    units = jnp.maximum(stats["units"], 1.0)
    metrics = {
        "clip_frac_low": stats["clip_low"] / units,
        "clip_frac_high": stats["clip_high"] / units,
        "ratio_mean": stats["ratio"] / units,
        "ratio_max": stats["ratio_max"],
        "num_tokens": stats["tokens"],
        "num_seqs": stats["seqs"],
    }
    if "kl" in stats:
        metrics["kl"] = stats["kl"] / units
    return loss_sum / jnp.maximum(denom, 1.0), metrics


def policy_loss(logprobs, old_logprobs, ref_logprobs, advantages, mask,
                aggregation="seq_mean_token_mean", clip_low=0.2, clip_high=0.2, kl_coef=0.0,
                max_len=None, length_normalized=False):
    """GRPO loss of a whole batch and its metrics: `finish_terms(policy_loss_terms(...))`."""
    return finish_terms(policy_loss_terms(
        logprobs, old_logprobs, ref_logprobs, advantages, mask, aggregation=aggregation,
        clip_low=clip_low, clip_high=clip_high, kl_coef=kl_coef, max_len=max_len,
        length_normalized=length_normalized))


def overlong_penalty(lengths, max_len, cache_len):
    """DAPO soft overlong punishment (eq. 13), lengths in tokens [N] -> float32 [N]:
    0 if L <= max_len - cache_len; ((max_len - cache_len) - L) / cache_len if L <= max_len;
    -1 if L > max_len. Added to the rule reward.
    """
    length = _float(lengths)
    start = max_len - cache_len
    ramp = (start - length) / cache_len
    return jnp.where(length <= start, 0.0, jnp.where(length <= max_len, ramp, -1.0))


def overlong_filter_mask(mask, truncated):
    """DAPO overlong filtering: mask [N, T] with the rows of truncated completions ([N] bool)
    zeroed, so they drop out of the loss (and, being empty, out of every denominator)."""
    mask = jnp.asarray(mask)
    return jnp.where(jnp.asarray(truncated, bool)[:, None], jnp.zeros_like(mask), mask)
