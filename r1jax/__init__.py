"""r1jax: the DeepSeek-R1 recipe in JAX.

Submodules are imported on use (``from r1jax import models, sampling, rewards, grpo``), so that a
light import does not pull in the data or checkpointing stacks.
"""
