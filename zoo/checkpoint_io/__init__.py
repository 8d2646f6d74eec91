"""Reading what users hand to :meth:`Registry.add`: files, modules and state dicts, safely.

Pickled torch files are read only with ``torch.load(weights_only=True, map_location="cpu")``; nothing else
ever unpickles.

Foreign conventions, and what is recorded in the checkpoint's metadata (:meth:`ReadCheckpoint.notes`):

- **Weight sets.** A checkpoint dict may hold its weights under a key (``state_dict`` in PyTorch Lightning's
  ``.ckpt``, ``model``, ``model_state_dict``, ``module`` in DeepSpeed's files, ``net``, ``params``, ...,
  searched :data:`MAX_NESTING` levels deep under such keys) and beside them optimizer state, schedulers,
  hyper-parameters and scalars. A *weight set* is a dict of tensors; when there is exactly one, or exactly
  one under a conventional name (:data:`NESTED_KEYS`, or averaged weights: ``state_dict_ema``, ``model_ema``,
  ``ema``, ``swa_model``, ...), it is taken. When several are (training and EMA weights, timm's
  ``state_dict`` + ``state_dict_ema``), zoo refuses rather than choose silently, listing the sets and the
  fix: ``weights='state_dict_ema'`` (``--weights`` on the command line, ``"weights"`` in a sidecar). Recorded:
  ``source_weights`` (the set taken), ``source_weight_sets`` (all of them, when more than one),
  ``source_extra`` (the scalars beside them: ``epoch``, ``best_prec1``) and ``source_left_out`` (everything
  else the file held: ``optimizer``, the other weight set, ...). Nothing is dropped unrecorded.
- **Name prefixes.** Wrapper prefixes (``module.`` from DataParallel/DDP, ``_orig_mod.`` from torch.compile)
  are always removed when every name carries them. Any other prefix that every name shares (Lightning's
  ``model.``, ``net.``, ``backbone.``, ...) is removed when, and only when, that is what makes the weights fit
  (:func:`detect_weights`, :func:`fit_prefix`). ``strip_prefix='model.'`` removes a prefix explicitly and
  keeps only the names that carry it (the others are recorded as left out). Recorded: ``stripped_prefix``.
- **Several networks in one state dict.** A training module may keep its EMA copy as a submodule: one
  ``state_dict`` holding ``model.*`` and ``model_ema.*`` (or ``teacher.*`` and ``student.*``, ``net.*`` and
  ``ema_net.*``), each a whole network. Such a state dict is refused like several weight sets, naming each
  prefix and the fix: ``strip_prefix='model_ema.'`` (``--strip-prefix``, ``"strip_prefix"`` in a sidecar).
  Recorded: ``stripped_prefix``, and the other network in ``source_left_out`` (``'state_dict/model.* (10
  tensors)'``).

Layout: :mod:`~zoo.checkpoint_io.reading` (:func:`read_checkpoint`, the entry point),
:mod:`~zoo.checkpoint_io.formats` (safetensors and torch files read safely; tensor checks),
:mod:`~zoo.checkpoint_io.weight_sets` (finding the weights in a checkpoint dict),
:mod:`~zoo.checkpoint_io.prefixes` (name prefixes; several networks in one state dict).
"""

from zoo.checkpoint_io.formats import ALLOWED_DTYPES, check_names, check_tensors
from zoo.checkpoint_io.prefixes import detect_weights, fit_prefix, shared_prefixes
from zoo.checkpoint_io.reading import CheckpointLike, read_checkpoint
from zoo.checkpoint_io.weight_sets import (
    AVERAGED_RE,
    MAX_NESTING,
    NESTED_KEYS,
    WRAPPER_PREFIXES,
    ReadCheckpoint,
    scalar_extras,
)

__all__ = [
    "ALLOWED_DTYPES",
    "AVERAGED_RE",
    "MAX_NESTING",
    "NESTED_KEYS",
    "WRAPPER_PREFIXES",
    "CheckpointLike",
    "ReadCheckpoint",
    "check_names",
    "check_tensors",
    "detect_weights",
    "fit_prefix",
    "read_checkpoint",
    "scalar_extras",
    "shared_prefixes",
]
