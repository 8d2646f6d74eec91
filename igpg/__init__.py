"""IGPG: the weight generator (a VQ-VAE weight tokenizer and a conditioned GPT prior).

A generator plugin of zoo: :mod:`igpg.plugin` registers the ``igpg`` generator kind and the ``zoo train``
command through the ``zoo.plugins`` entry-point group. The names below are imported on first use, so that
loading the plugin (which zoo does for every command) does not load the model code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zoo import lazy_exports

if TYPE_CHECKING:  # for type checkers and editors; at run time __getattr__ imports on first use
    from igpg.data import ZooData, load_zoo
    from igpg.generator import Generator
    from igpg.heads import ClassHead
    from igpg.presets import PRESETS
    from igpg.prior import PriorConfig, WeightPrior
    from igpg.registry_io import fit_class_head, load_generator, train_on_registry, training_checkpoints
    from igpg.tokenizer import TokenizerConfig, WeightTokenizer
    from igpg.train import TrainConfig, train_generator

_EXPORTS: dict[str, str] = {  # public name -> the module that defines it
    "ClassHead": "igpg.heads",
    "fit_class_head": "igpg.registry_io",
    "Generator": "igpg.generator",
    "PRESETS": "igpg.presets",
    "PriorConfig": "igpg.prior",
    "TokenizerConfig": "igpg.tokenizer",
    "TrainConfig": "igpg.train",
    "WeightPrior": "igpg.prior",
    "WeightTokenizer": "igpg.tokenizer",
    "ZooData": "igpg.data",
    "load_generator": "igpg.registry_io",
    "load_zoo": "igpg.data",
    "train_generator": "igpg.train",
    "train_on_registry": "igpg.registry_io",
    "training_checkpoints": "igpg.registry_io",
}

__all__ = [
    "PRESETS",
    "ClassHead",
    "Generator",
    "PriorConfig",
    "TokenizerConfig",
    "TrainConfig",
    "WeightPrior",
    "WeightTokenizer",
    "ZooData",
    "fit_class_head",
    "load_generator",
    "load_zoo",
    "train_generator",
    "train_on_registry",
    "training_checkpoints",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
