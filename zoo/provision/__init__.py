"""Weights for a task: the nearest compatible checkpoint when one is similar enough, a checkpoint of another
architecture of the family adapted to it, or generated weights.

:func:`retrieve_or_generate` is the one call a user makes; :func:`retrieve` and :func:`generate` do one part
each (neither adapts). All three return a :class:`Provision`: the ready module and a record of what happened
and why; its ``source`` is ``"retrieved"``, ``"adapted"`` or ``"generated"``.

The policy (:class:`RetrievalPolicy`; every field can also be passed as a keyword):

1. The architecture is resolved through the family plugins (an unknown name raises the plugins' error); the
   dataset is a registered dataset's name (its stored vectors are used) or data that
   :func:`zoo.as_dataset` reads (embedded on the fly, nothing stored).
2. Retrieval only considers checkpoints of *exactly* that architecture (another architecture's weights
   would not load, so none is ever returned as it is), ranked by dataset similarity with the registry's
   default dataset encoder (or ``encoder``). Equally similar checkpoints (e.g. several seeds trained on one
   dataset) rank by their recorded metrics: ``metric`` when named, else the first of
   :data:`zoo.embeddings.TIE_METRICS` (accuracy, acc, top1, val_acc, ..., loss) they record, best first
   (lower first for loss-like names), then the newest first -- never by registration order.
3. Adaptation, the third source (``adapt``, on by default; :func:`retrieve_or_generate` only): when no
   checkpoint of exactly the architecture is similar enough (or none exists), checkpoints of *other*
   architectures of its family that :func:`zoo.adapt` turns into it (Net2Net, Chen et al. 2016: CIFAR
   ResNets deeper and/or wider, cnns wider; same ``num_classes`` and ``in_chans``; the adapted network
   computes the source's function exactly) become candidates; deeper ResNets too, approximately (blocks
   dropped), with ``adapt_shallower``. The ``adapt_candidates`` (3) best are kept: the most similar
   dataset first, then exact before approximate, the better recorded metric (as in 2: an exact adaptation
   keeps its source's accuracy), the larger source (fewer new channels and blocks), the newest. A
   candidate's weights are read and adapted only when it is served or scored; the adaptation's seed is
   ``seed`` (None: a fresh one, named in ``adaptation``). The served :class:`Provision` names the source
   checkpoint in ``checkpoint`` and what was done in ``adaptation``; a message says why a family's
   architectures could not be adapted (narrower, ...).
4. Without labelled samples: the ``candidates`` nearest compatible checkpoints are considered and listed;
   the nearest is returned when its similarity reaches ``min_similarity``; otherwise the nearest adapted
   checkpoint whose source's dataset reaches ``min_similarity``; otherwise one network is sampled from the
   generator (why adapted before generated: below).
5. With labelled samples (``labelled=``): the dataset embedding is only a hint, the labels decide, so the
   pool scored is not just the nearest few. While at most ``score_pool`` (default :data:`SCORE_POOL`, 64)
   checkpoints of the architecture are registered, *every* one is scored, also those without a dataset
   (or without a vector by the encoder). Above that, ``score_pool`` of them (plus the ``candidates``
   nearest, which always join): the ``candidates`` nearest first, then taken in turn from four rankings
   until the pool is full -- nearest by dataset similarity; the best checkpoint of each dataset (by
   recorded metric, datasets nearest first, for diversity); the best by recorded metric (as in 2) of
   those that record it; the newest version of each name.
   In :func:`retrieve` only checkpoints at least ``min_similarity`` similar are eligible. Those, the
   adapted candidates of 3 (each one adapted) and ``samples`` generated networks (best-of-n) are scored by
   top-1 accuracy on the labelled samples, and the highest score wins; ties go to a retrieved checkpoint,
   then an adapted one, then a generated sample, then to the order of :attr:`Provision.candidates` (more
   similar first, then as in 2). Generation runs when nothing (retrieved or adapted) is similar enough,
   and also when something is if ``challenge`` is on. Every scored candidate is listed.
6. The generator is ``generator`` when given, else the newest *promoted* version covering the family and
   trained on this very architecture, else the newest such candidate, else the family's other versions
   (promoted first, newest first), each asked whether it knows the architecture (a generator kind may make
   depths and widths it was not trained on). They are loaded one at a time and the first that knows it
   serves. Its own dataset encoder embeds the query (the generator was conditioned on that encoder's
   vectors). Generators are reached only through the contract of :mod:`zoo.generators` (the version's
   kind, e.g. IGPG's, loads, checks and samples it): a version whose kind is not installed is named in the
   reason, never used.
7. Generation is needed but no generator knows the architecture: the most similar of the compatible and
   the adapted checkpoints is returned anyway (a compatible one among equals; ``fallback_to_nearest``, the
   reason says so), or :class:`~zoo.errors.NoWeightsError` is raised naming what to do when there is none.

Why an adapted checkpoint goes before a generated sample without labels (point 4): an exact adaptation
scores, on any data, what its source scores (tests/zoo/test_provision_adapted.py checks that the outputs are
equal), and neighbouring depths of a trained CIFAR ResNet differ little (zoo_demo.resnet_zoo's table: at most
0.03 test accuracy between resnet8, 14, 26 and 32 at width 8 on each task), so a source trained on a
similar-enough dataset serves near the accuracy of one trained on the architecture itself. The one sample
served without labels is far less predictable: IGPG on the tiny zoo (``bench/results/generator.json``,
cnn-tiny, architectures and tasks it was trained on) scored 0.67 of the pretrained mean on average, below
0.2 on 3 of 8 tasks. When no source is similar enough, the generator (conditioned on the dataset) goes first,
as it does for a dissimilar checkpoint of the architecture itself -- although on the two held-out tasks of
that benchmark the nearest other task's checkpoint beat the unlabelled sample too (0.79 against 0.67, 0.34
against 0.15). Labelled samples settle it: everything is scored.

Why :data:`SCORE_POOL` is 64: scoring one checkpoint on 100 labelled images (``Registry.load``, which reads
and verifies the blob, plus one forward pass) took 3.4-3.8 ms for cnn-tiny and 89-98 ms for resnet20 on 2
CPU cores (median over 16 registered checkpoints each), so a full pool of 64 costs about 0.25 s for cnn-tiny
and 6 s for resnet20 -- cheap next to what a wrong pick costs, and the main job's zoo (8 tasks x 6 seeds of
cnn-tiny) is scored whole.

Why :data:`DEFAULT_MIN_SIMILARITY` is 0.99: measured with the offline default encoder ``pixels``
version 2 (``bench/results/task_retrieval.json``, ``docs/embeddings.md``; 140 digit and MNIST tasks), a
fresh sample of a registered task scores 0.993-0.998 against it, while the closest *different* task scores
at most 0.980 (rotations 15 degrees apart) and the same images under another class order about 0.79 (at most
0.83). 0.99 keeps the first and rejects the others. Queries of only 5 images per class score about 0.95
against their own task: pass labelled samples, or lower ``min_similarity``, for those. Another encoder needs
its own threshold (an untrained CLIP puts every pair above 0.997).

Generated networks get a class head (``igpg.heads``) when zoo has the data asked about: the data given, or
a registered dataset's data read again from its source. The classifier is then made from that dataset's
per-class examples through the generated body, and a sample keeps it where it scores better on held-back
examples than the decoded one (``GeneratorKind.takes_examples``).

Layout: :mod:`zoo.provision.api` (the three calls: build the request once, serve it),
:mod:`~zoo.provision.request` (the request), :mod:`~zoo.provision.gather` (retrieval candidates, adapted
checkpoints, generated samples, scores), :mod:`~zoo.provision.adapted` (which checkpoints can be adapted,
adapting them), :mod:`~zoo.provision.generation` (generators, through the contract of
:mod:`zoo.generators`), :mod:`~zoo.provision.choose` (choose and explain: pure functions),
:mod:`~zoo.provision.register` (store generated or adapted weights, assemble the answer),
:mod:`~zoo.provision.results` (the records returned).
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
