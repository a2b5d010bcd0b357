"""Launchers that run r1jax experiments on machines other than this one (``launch/tpu.py``)."""
