"""The optimizer every trainer uses: AdamW with warm-up, a schedule and global-norm clipping."""

import optax


def learning_rate_schedule(lr: float, warmup_steps: int, total_steps: int, schedule: str):
    """Linear warm-up to ``lr``, then ``constant`` or ``cosine`` decay to 0 at ``total_steps``."""
    if schedule == "constant":
        after = optax.constant_schedule(lr)
    elif schedule == "cosine":
        after = optax.cosine_decay_schedule(lr, max(1, total_steps - warmup_steps))
    else:
        raise ValueError(f"unknown schedule {schedule!r}; use 'constant' or 'cosine'")
    if warmup_steps <= 0:
        return after
    return optax.join_schedules(
        [optax.linear_schedule(0.0, lr, warmup_steps), after], [warmup_steps])


def make_optimizer(lr: float, total_steps: int, warmup_steps: int = 0,
                   schedule: str = "constant", weight_decay: float = 0.0, b1: float = 0.9,
                   b2: float = 0.999, grad_clip: float = 1.0) -> optax.GradientTransformation:
    """AdamW (decoupled weight decay) after clipping the global gradient norm to ``grad_clip``.

    ``total_steps`` counts optimizer updates (for GRPO: steps x minibatches x epochs).
    """
    chain = [optax.clip_by_global_norm(grad_clip)] if grad_clip > 0 else []
    chain.append(optax.adamw(learning_rate_schedule(lr, warmup_steps, total_steps, schedule),
                             b1=b1, b2=b2, weight_decay=weight_decay))
    return optax.chain(*chain)
