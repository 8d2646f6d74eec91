"""Weights for a task: the nearest compatible checkpoint when one is similar enough,
generated weights otherwise.

:func:`retrieve_or_generate` is the one call a user makes; :func:`retrieve` and :func:`generate` do one half
each. All three return a :class:`Provision`: the ready module and a record of what happened and why.

The policy (:class:`RetrievalPolicy`; every field can also be passed as a keyword):

1. The architecture is resolved through the family plugins (an unknown name raises the plugins' error); the
   dataset is a registered dataset's name (its stored vectors are used) or data that
   :func:`zoo.as_dataset` reads (embedded on the fly, nothing stored).
2. Retrieval only considers checkpoints of *exactly* that architecture (another architecture's weights
   would not load, so none is ever returned), ranked by dataset similarity with the registry's default
   dataset encoder (or ``encoder``). Equally similar checkpoints (e.g. several seeds trained on one
   dataset) rank by their recorded metrics: ``metric`` when named, else the first of
   :data:`zoo.embeddings.TIE_METRICS` (accuracy, acc, top1, val_acc, ..., loss) they record, best first
   (lower first for loss-like names), then the newest first -- never by registration order.
3. Without labelled samples: the ``candidates`` nearest compatible checkpoints are considered and listed;
   the nearest is returned when its similarity reaches ``min_similarity``; otherwise one network is sampled
   from the generator.
4. With labelled samples (``labelled=``): the dataset embedding is only a hint, the labels decide, so the
   pool scored is not just the nearest few. While at most ``score_pool`` (default :data:`SCORE_POOL`, 64)
   checkpoints of the architecture are registered, *every* one is scored, also those without a dataset
   (or without a vector by the encoder). Above that, ``score_pool`` of them (plus the ``candidates``
   nearest, which always join): the ``candidates`` nearest first, then taken in turn from four rankings
   until the pool is full -- nearest by dataset similarity; the best checkpoint of each dataset (by
   recorded metric, datasets nearest first, for diversity); the best by recorded metric (as in 2) of
   those that record it; the newest version of each name.
   In :func:`retrieve` only checkpoints at least ``min_similarity`` similar are eligible. Those and
   ``samples`` generated networks (best-of-n) are scored by top-1 accuracy on the labelled samples, and the
   highest score wins; ties go to a checkpoint over a generated sample, then to the order of
   :attr:`Provision.candidates` (more similar first, then as in 2). Generation runs when no checkpoint is
   similar enough, and also when one is if ``challenge`` is on. Every scored checkpoint is listed.
5. The generator is ``generator`` when given, else the newest *promoted* version covering the family and
   trained on this very architecture, else the newest such candidate. Its own dataset encoder embeds the
   query (the generator was conditioned on that encoder's vectors). Generators are reached only through
   the contract of :mod:`zoo.generators` (the version's kind, e.g. IGPG's, loads, checks and samples it):
   a version whose kind is not installed is named in the reason, never used.
6. Generation is needed but no generator knows the architecture: the nearest compatible checkpoint is
   returned anyway (``fallback_to_nearest``, the reason says so), or :class:`~zoo.errors.NoWeightsError`
   is raised naming what to do when there is none.

Why :data:`SCORE_POOL` is 64: scoring one checkpoint on 100 labelled images (``Registry.load``, which reads
and verifies the blob, plus one forward pass) took 3.4-3.8 ms for cnn-tiny and 89-98 ms for resnet20 on 2
CPU cores (median over 16 registered checkpoints each), so a full pool of 64 costs about 0.25 s for cnn-tiny
and 6 s for resnet20 -- cheap next to what a wrong pick costs, and the main job's zoo (8 tasks x 6 seeds of
cnn-tiny) is scored whole.

Why :data:`DEFAULT_MIN_SIMILARITY` is 0.99: measured with the offline default encoder ``pixels``
(``bench/results/retrieval.json``, ``docs/embeddings.md``), a fresh sample of a registered task scores
0.998 against it on average (0.990-0.995 when the sample holds only 3-5 images per class), while the closest
*different* task scores 0.949 on average (class subsets about 0.93, rotations 0.71-0.85). 0.99 keeps the
first and rejects the second. It does not reject the same images with permuted labels (about 0.994): pass
labelled samples to catch that. Another encoder needs its own threshold (an untrained CLIP puts every pair
above 0.997).

Layout: :mod:`zoo.provision.api` (the three calls: build the request once, serve it),
:mod:`~zoo.provision.request` (the request), :mod:`~zoo.provision.gather` (retrieval candidates, generated
samples, scores), :mod:`~zoo.provision.generation` (generators, through the contract of
:mod:`zoo.generators`),
:mod:`~zoo.provision.choose` (choose and explain: pure functions), :mod:`~zoo.provision.register` (store
generated weights, assemble the answer), :mod:`~zoo.provision.results` (the records returned).
"""

from zoo.provision.api import generate, retrieve, retrieve_or_generate
from zoo.provision.results import (
    DEFAULT_MIN_SIMILARITY,
    SCORE_POOL,
    Candidate,
    Provision,
    RetrievalPolicy,
)

__all__ = [
    "DEFAULT_MIN_SIMILARITY",
    "SCORE_POOL",
    "Candidate",
    "Provision",
    "RetrievalPolicy",
    "generate",
    "retrieve",
    "retrieve_or_generate",
]
