"""IGPG: the weight generator (a VQ-VAE weight tokenizer and a conditioned GPT prior)."""

from igpg.data import ZooData, load_zoo
from igpg.generator import Generator
from igpg.prior import PriorConfig, WeightPrior
from igpg.registry_io import load_generator, train_on_registry, training_checkpoints
from igpg.tokenizer import TokenizerConfig, WeightTokenizer
from igpg.train import TrainConfig, train_generator

__all__ = [
    "Generator",
    "PriorConfig",
    "TokenizerConfig",
    "TrainConfig",
    "WeightPrior",
    "WeightTokenizer",
    "ZooData",
    "load_generator",
    "load_zoo",
    "train_generator",
    "train_on_registry",
    "training_checkpoints",
]
