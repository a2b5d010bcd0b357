"""The toy world's data: problems (`tasks`) in its languages (`languages`), the pretraining corpus
(`corpus`), grain pipelines (`pipeline`) and the tfds/array_record builder (`tfds_builder`).

Only the pure-Python parts are imported here; `from r1jax.data import pipeline, tfds_builder`
pulls in grain (seconds to import) and tensorflow-datasets where they are needed.
"""

from r1jax.data.corpus import CorpusConfig, corpus_documents, split_prompt, write_corpus
from r1jax.data.tasks import LEVELS, TASKS, make_split

__all__ = [
    "LEVELS",
    "TASKS",
    "CorpusConfig",
    "corpus_documents",
    "make_split",
    "split_prompt",
    "write_corpus",
]
