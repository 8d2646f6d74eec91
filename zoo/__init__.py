"""zoo: a registry of pretrained PyTorch models, and a generator of new weights from it."""

from importlib.metadata import PackageNotFoundError, version

from zoo.chunking import Chunks, chunk, unchunk
from zoo.datasets import ImageDataset, as_dataset
from zoo.embeddings import Neighbor
from zoo.encoders import ClassPooledEncoder, DatasetEncoder, TextEncoder
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
    LeaseLostError,
    NotFoundError,
    NoWeightsError,
    RegistryMissingError,
    UnknownFamilyError,
    UnknownPluginError,
    UnsafeCheckpointError,
    ZooError,
)
from zoo.family import ArchitectureFamily, Layout, TensorSlot
from zoo.generators import GeneratorKind, generator_kinds, get_generator_kind, list_generator_kinds
from zoo.hookspecs import hookimpl
from zoo.jobs import Lease, job_runs
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
from zoo.provision import (
    DEFAULT_MIN_SIMILARITY,
    Candidate,
    Provision,
    RetrievalPolicy,
    generate,
    retrieve,
    retrieve_or_generate,
)
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
from zoo.registry import Registry
from zoo.reindexing import GeneratorDecision, ReindexConfig, ReindexReport, reindex
from zoo.training import Curve, fine_tune_module

try:
    __version__ = version("zoo")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = [
    "DEFAULT_MIN_SIMILARITY",
    "AliasRecord",
    "ArchSpec",
    "ArchitectureFamily",
    "ArchitectureMismatchError",
    "Candidate",
    "CheckpointError",
    "CheckpointRecord",
    "Chunks",
    "ClassPooledEncoder",
    "ConfigError",
    "Curve",
    "DatasetEncoder",
    "DatasetError",
    "DatasetRecord",
    "DuplicateError",
    "EmbeddingRecord",
    "GeneratorDecision",
    "GeneratorError",
    "GeneratorKind",
    "GeneratorRecord",
    "ImageDataset",
    "IntegrityError",
    "InvalidNameError",
    "InvalidWeightsError",
    "JobRunRecord",
    "Layout",
    "Lease",
    "LeaseHeldError",
    "LeaseLostError",
    "Neighbor",
    "NoWeightsError",
    "NotFoundError",
    "Provision",
    "Registry",
    "RegistryMissingError",
    "ReindexConfig",
    "ReindexReport",
    "RetrievalPolicy",
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
    "fine_tune_module",
    "generate",
    "generator_kinds",
    "get_family",
    "get_generator_kind",
    "hookimpl",
    "job_runs",
    "list_architectures",
    "list_families",
    "list_generator_kinds",
    "list_plugins",
    "load_plugins",
    "register_plugin",
    "reindex",
    "reset_plugins",
    "resolve_arch",
    "retrieve",
    "retrieve_or_generate",
    "unchunk",
    "unregister_plugin",
]
