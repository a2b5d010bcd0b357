"""r1jax: the DeepSeek-R1 recipe (GRPO, R1-Zero, the R1 pipeline, evaluation) in JAX."""

from setuptools import find_packages, setup

setup(
    name="r1jax",
    version="0.1.0",
    description="Reproduce and extend DeepSeek-R1 (GRPO, R1-Zero, distillation) in JAX",
    python_requires=">=3.10",
    packages=find_packages(include=["r1jax", "r1jax.*"]),
    install_requires=[
        "jax>=0.7",
        "flax>=0.11",
        "optax",
        "orbax-checkpoint",
        "grain",
        "sentencepiece",
        "ml_collections",
        "tensorflow-datasets",
        "array-record",
        "safetensors",
        "tokenizers",
        "numpy",
        "math-verify",
        "lingua-language-detector",
        "tensorboardX",
        "matplotlib",
        "pandas",  # r1jax.sweep's tables of metrics and evaluations
        "tqdm",
        "jinja2",
        "pyarrow",
    ],
    extras_require={
        # jax[tpu] brings libtpu, with which tests compile the RL steps for TPU topologies on
        # this CPU (python -m r1jax.compile_check); the tests themselves run on CPU devices.
        # nbclient, nbformat, ipykernel: tests/test_notebooks.py runs the notebooks on a kernel.
        "test": ["pytest", "hypothesis", "jax[tpu]", "nbclient", "nbformat", "ipykernel"],
        # transformers (with CPU torch) writes the parity fixtures and runs the live parity tests.
        "hf": ["transformers>=4.45", "torch"],
        # gcsfs: gs:// workdirs through etils.epath (orbax, metrics, plots); google-cloud-storage:
        # TensorBoard events on gs:// through tensorboardX.
        "tpu": ["jax[tpu]", "gcsfs", "google-cloud-storage"],
    },
)
