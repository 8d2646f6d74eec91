"""zoo: a registry of pretrained PyTorch models, and a generator of new weights from it.

The names below are zoo's public API. The error classes, :data:`hookimpl` and :func:`lazy_exports` are
imported with the package; every other name is imported from the module that defines it on first use
(:func:`zoo.lazy_exports`), so that ``import zoo`` and the command line's start (``zoo --help``, ``zoo
list``) do not load torch: the registry, plugins and commands import it where weights are read, written or
built.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

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
from zoo.hookspecs import hookimpl
from zoo.lazy import lazy_exports

if TYPE_CHECKING:  # for type checkers and editors; at run time __getattr__ imports on first use
    from zoo.adaptation import Adapted, adapt
    from zoo.alignment import PermutationSpec, align, average_aligned, permutation_spec
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
    from zoo.family import ArchitectureFamily
    from zoo.generators import (
        GeneratorKind,
        generator_kinds,
        get_generator_kind,
        list_generator_kinds,
        registered_data,
        training_checkpoints,
    )
    from zoo.jobs import JobRun, Lease, current_run, job_runs, recorded, recording
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
    from zoo.retrieval import Neighbor, embed_arch, get_embedding, nearest, refresh_stale
    from zoo.shared_data import shared_data_candidates, shared_data_dir
    from zoo.slots import Layout, TensorSlot
    from zoo.training import Curve, fine_tune_module
    from zoo.validation import check_name

_EXPORTS: dict[str, str] = {  # public name -> the module that defines it (imported on first use)
    "Adapted": "zoo.adaptation",
    "adapt": "zoo.adaptation",
    "PermutationSpec": "zoo.alignment",
    "align": "zoo.alignment",
    "average_aligned": "zoo.alignment",
    "permutation_spec": "zoo.alignment",
    "atomic_write": "zoo.atomic",
    "Chunks": "zoo.chunking",
    "chunk": "zoo.chunking",
    "chunk_index": "zoo.chunking",
    "unchunk": "zoo.chunking",
    "ImageDataset": "zoo.datasets",
    "as_dataset": "zoo.datasets",
    "SlotDescriptor": "zoo.descriptors",
    "default_descriptors": "zoo.descriptors",
    "ClassPooledEncoder": "zoo.encoders",
    "DatasetEncoder": "zoo.encoders",
    "TextEncoder": "zoo.encoders",
    "get_dataset_encoder": "zoo.encoders",
    "get_text_encoder": "zoo.encoders",
    "ArchitectureFamily": "zoo.family",
    "GeneratorKind": "zoo.generators",
    "generator_kinds": "zoo.generators",
    "get_generator_kind": "zoo.generators",
    "list_generator_kinds": "zoo.generators",
    "registered_data": "zoo.generators",
    "training_checkpoints": "zoo.generators",
    "JobRun": "zoo.jobs",
    "Lease": "zoo.jobs",
    "current_run": "zoo.jobs",
    "job_runs": "zoo.jobs",
    "recorded": "zoo.jobs",
    "recording": "zoo.jobs",
    "detect_arch": "zoo.plugins",
    "families": "zoo.plugins",
    "get_family": "zoo.plugins",
    "list_architectures": "zoo.plugins",
    "list_families": "zoo.plugins",
    "list_plugins": "zoo.plugins",
    "load_plugins": "zoo.plugins",
    "register_plugin": "zoo.plugins",
    "reset_plugins": "zoo.plugins",
    "resolve_arch": "zoo.plugins",
    "unregister_plugin": "zoo.plugins",
    "Candidate": "zoo.provision",
    "DEFAULT_MIN_SIMILARITY": "zoo.provision",
    "Provision": "zoo.provision",
    "RetrievalPolicy": "zoo.provision",
    "generate": "zoo.provision",
    "retrieve": "zoo.provision",
    "retrieve_or_generate": "zoo.provision",
    "AliasRecord": "zoo.records",
    "ArchSpec": "zoo.records",
    "CheckpointRecord": "zoo.records",
    "DatasetRecord": "zoo.records",
    "EmbeddingRecord": "zoo.records",
    "GeneratorRecord": "zoo.records",
    "JobRunRecord": "zoo.records",
    "VerifyReport": "zoo.records",
    "Registry": "zoo.registry",
    "GeneratorDecision": "zoo.reindexing",
    "ReindexConfig": "zoo.reindexing",
    "ReindexReport": "zoo.reindexing",
    "accuracy_evaluator": "zoo.reindexing",
    "reindex": "zoo.reindexing",
    "Neighbor": "zoo.retrieval",
    "embed_arch": "zoo.retrieval",
    "get_embedding": "zoo.retrieval",
    "nearest": "zoo.retrieval",
    "refresh_stale": "zoo.retrieval",
    "shared_data_candidates": "zoo.shared_data",
    "shared_data_dir": "zoo.shared_data",
    "Layout": "zoo.slots",
    "TensorSlot": "zoo.slots",
    "Curve": "zoo.training",
    "fine_tune_module": "zoo.training",
    "check_name": "zoo.validation",
}

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
    "JobRun",
    "JobRunRecord",
    "Layout",
    "Lease",
    "LeaseHeldError",
    "LeaseLostError",
    "Neighbor",
    "NoWeightsError",
    "NotFoundError",
    "PermutationSpec",
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
    "align",
    "as_dataset",
    "atomic_write",
    "average_aligned",
    "chunk",
    "chunk_index",
    "current_run",
    "default_descriptors",
    "check_name",
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
    "registered_data",
    "list_plugins",
    "load_plugins",
    "nearest",
    "refresh_stale",
    "permutation_spec",
    "register_plugin",
    "recorded",
    "recording",
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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
