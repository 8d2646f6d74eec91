"""zoo: a registry of pretrained PyTorch models, and a generator of new weights from it."""

from importlib.metadata import PackageNotFoundError, version

from zoo.adaptation import Adapted, adapt
from zoo.atomic import atomic_write
from zoo.chunking import Chunks, chunk, chunk_index, unchunk
from zoo.datasets import ImageDataset, as_dataset
from zoo.descriptors import SlotDescriptor, default_descriptors
from zoo.encoders import (
    ClassPooledEncoder,
    DatasetEncoder,
    TextEncoder,
    get_dataset_encoder,
    get_text_encoder,
)
from zoo.errors import (
    AdaptationError,
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
from zoo.family import ArchitectureFamily
from zoo.generators import (
    GeneratorKind,
    generator_kinds,
    get_generator_kind,
    list_generator_kinds,
    training_checkpoints,
)
from zoo.hookspecs import hookimpl
from zoo.jobs import Lease, job_runs
from zoo.lazy import lazy_exports
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
from zoo.reindexing import GeneratorDecision, ReindexConfig, ReindexReport, accuracy_evaluator, reindex
from zoo.retrieval import Neighbor, embed_arch, get_embedding, nearest
from zoo.shared_data import shared_data_candidates, shared_data_dir
from zoo.slots import Layout, TensorSlot
from zoo.training import Curve, fine_tune_module

try:
    __version__ = version("zoo")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = [
    "DEFAULT_MIN_SIMILARITY",
    "AdaptationError",
    "Adapted",
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
    "SlotDescriptor",
    "TensorSlot",
    "TextEncoder",
    "UnknownFamilyError",
    "UnknownPluginError",
    "UnsafeCheckpointError",
    "VerifyReport",
    "ZooError",
    "__version__",
    "accuracy_evaluator",
    "adapt",
    "as_dataset",
    "atomic_write",
    "chunk",
    "chunk_index",
    "default_descriptors",
    "detect_arch",
    "embed_arch",
    "families",
    "fine_tune_module",
    "generate",
    "generator_kinds",
    "get_dataset_encoder",
    "get_embedding",
    "get_family",
    "get_generator_kind",
    "get_text_encoder",
    "hookimpl",
    "job_runs",
    "lazy_exports",
    "list_architectures",
    "list_families",
    "list_generator_kinds",
    "list_plugins",
    "load_plugins",
    "nearest",
    "register_plugin",
    "reindex",
    "reset_plugins",
    "resolve_arch",
    "retrieve",
    "retrieve_or_generate",
    "shared_data_candidates",
    "shared_data_dir",
    "training_checkpoints",
    "unchunk",
    "unregister_plugin",
]
