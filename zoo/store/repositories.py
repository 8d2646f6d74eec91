"""Every store repository of one registry, over one database and one blob store (what a Registry holds)."""

from __future__ import annotations

from dataclasses import dataclass

from zoo.store.blobrows import BlobRepository
from zoo.store.blobs import BlobStore
from zoo.store.checkpoints import CheckpointRepository
from zoo.store.datasets import DatasetRepository
from zoo.store.db import Database
from zoo.store.generators import GeneratorRepository
from zoo.store.jobs import JobRepository
from zoo.store.vectors import VectorRepository
from zoo.store.watched import WatchedFileRepository


@dataclass(frozen=True)
class Repositories:
    """The repositories of one registry; each opens its own sessions and returns records."""

    blobs: BlobRepository  # blob rows and files: liveness, two-phase removal, verification
    datasets: DatasetRepository  # dataset rows
    checkpoints: CheckpointRepository  # checkpoints, tags, metrics, aliases, lineage
    generators: GeneratorRepository  # generator versions
    vectors: VectorRepository  # dataset and architecture vectors, retrieval's reads, index settings
    jobs: JobRepository  # leases and job runs
    watched: WatchedFileRepository  # what re-indexing remembers of the files it examined

    @classmethod
    def open(cls, db: Database, files: BlobStore) -> Repositories:
        blobs = BlobRepository(db, files)
        datasets = DatasetRepository(db)
        return cls(
            blobs,
            datasets,
            CheckpointRepository(db, blobs, datasets),
            GeneratorRepository(db, blobs),
            VectorRepository(db),
            JobRepository(db),
            WatchedFileRepository(db),
        )


__all__ = ["Repositories"]
