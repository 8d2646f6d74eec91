"""zoo: a registry of pretrained PyTorch models, and a generator of new weights from it."""

from importlib.metadata import PackageNotFoundError, version

from zoo.errors import (
    ArchitectureMismatchError,
    CheckpointError,
    ConfigError,
    DatasetError,
    DuplicateError,
    GeneratorError,
    IntegrityError,
    InvalidNameError,
    InvalidWeightsError,
    LeaseHeldError,
    NotFoundError,
    UnknownFamilyError,
    UnknownPluginError,
    UnsafeCheckpointError,
    ZooError,
)
from zoo.chunking import Chunks, chunk, unchunk
from zoo.datasets import ImageDataset, as_dataset
from zoo.embeddings import Neighbor
from zoo.encoders import ClassPooledEncoder, DatasetEncoder, TextEncoder
from zoo.family import ArchitectureFamily, Layout, TensorSlot
from zoo.hookspecs import hookimpl
from zoo.plugins import (
    detect_arch,
    families,
    get_family,
    list_architectures,
    list_families,
    list_plugins,
    load_plugins,
    register_plugin,
    reset_plugins,
    resolve_arch,
    unregister_plugin,
)
from zoo.registry import Registry
from zoo.records import (
    AliasRecord,
    ArchSpec,
    CheckpointRecord,
    DatasetRecord,
    EmbeddingRecord,
    GeneratorRecord,
    JobRunRecord,
    VerifyReport,
)

try:
    __version__ = version("zoo")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = [
    "AliasRecord",
    "ArchSpec",
    "ArchitectureFamily",
    "ArchitectureMismatchError",
    "CheckpointError",
    "CheckpointRecord",
    "ClassPooledEncoder",
    "Chunks",
    "ConfigError",
    "DatasetEncoder",
    "DatasetError",
    "DatasetRecord",
    "DuplicateError",
    "EmbeddingRecord",
    "GeneratorError",
    "GeneratorRecord",
    "ImageDataset",
    "IntegrityError",
    "InvalidNameError",
    "InvalidWeightsError",
    "JobRunRecord",
    "Layout",
    "LeaseHeldError",
    "Neighbor",
    "NotFoundError",
    "Registry",
    "TensorSlot",
    "TextEncoder",
    "UnknownFamilyError",
    "UnknownPluginError",
    "UnsafeCheckpointError",
    "VerifyReport",
    "ZooError",
    "__version__",
    "as_dataset",
    "chunk",
    "detect_arch",
    "families",
    "get_family",
    "hookimpl",
    "list_architectures",
    "list_families",
    "list_plugins",
    "load_plugins",
    "register_plugin",
    "reset_plugins",
    "resolve_arch",
    "unchunk",
    "unregister_plugin",
]
