"""A tiny model zoo from real data: the standard tiny CNN trained on distinct digit-recognition tasks.

Tasks are built from scikit-learn's bundled digits (always there) and the MNIST test set (when its IDX files
are found: ``$ZOO_MNIST_DIR`` or ``../shared/data/mnist``), under transformations (rotation, inversion,
mirror) and class subsets (relabelled ``0..n-1``). Every task has a fixed stratified train/test split;
checkpoints are registered with their dataset, their test accuracy and a ``task-<name>`` tag.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from tqdm.auto import tqdm

import zoo
from zoo import CheckpointRecord, DatasetRecord, Registry, get_family, resolve_arch, shared_data_candidates
from zoo.datasets import ImageDataset, find_mnist, invert, load_digits, load_mnist, mirror, rotate
from zoo.errors import DatasetError, DuplicateError, Hint
from zoo.training import accuracy, train

log = logging.getLogger(__name__)

ARCH = "cnn-tiny"  # the standard zoo CNN: 1x28x28 in, 10 classes out


@dataclass(frozen=True)
class Task:
    """A classification task: a source, a transformation and optionally a class subset."""

    name: str
    source: str  # "digits" or "mnist"
    transform: str = "none"  # "none", "rot90", "rot180", "rot270", "rot15", "invert", "mirror"
    classes: tuple[int, ...] | None = None  # kept classes, relabelled 0..n-1 in this order

    @property
    def description(self) -> str:
        what = {"digits": "scikit-learn 8x8 digits upsampled to 28x28", "mnist": "MNIST test set digits"}[
            self.source
        ]
        parts = [what]
        if self.transform != "none":
            parts.append(f"transformed: {self.transform}")
        if self.classes is not None:
            parts.append(f"classes {list(self.classes)} relabelled 0..{len(self.classes) - 1}")
        return "; ".join(parts)


TASKS: dict[str, Task] = {  # every task the builder knows
    "digits": Task("digits", "digits"),
    "digits-rot90": Task("digits-rot90", "digits", "rot90"),
    "digits-rot180": Task("digits-rot180", "digits", "rot180"),
    "digits-invert": Task("digits-invert", "digits", "invert"),
    "digits-mirror": Task("digits-mirror", "digits", "mirror"),
    "digits-0to4": Task("digits-0to4", "digits", classes=(0, 1, 2, 3, 4)),
    "digits-5to9": Task("digits-5to9", "digits", classes=(5, 6, 7, 8, 9)),
    "digits-rot270": Task("digits-rot270", "digits", "rot270"),
    "mnist": Task("mnist", "mnist"),
    "mnist-rot90": Task("mnist-rot90", "mnist", "rot90"),
    "mnist-invert": Task("mnist-invert", "mnist", "invert"),
    "mnist-5to9": Task("mnist-5to9", "mnist", classes=(5, 6, 7, 8, 9)),
    "mnist-rot180": Task("mnist-rot180", "mnist", "rot180"),
    "digits-rot15": Task("digits-rot15", "digits", "rot15"),
    "mnist-rot15": Task("mnist-rot15", "mnist", "rot15"),
}
SEEN_DIGITS_ONLY = (
    "digits",
    "digits-rot90",
    "digits-rot180",
    "digits-invert",
    "digits-mirror",
    "digits-0to4",
    "digits-5to9",
    "digits-rot270",
)  # 8 tasks that need no MNIST files
SEEN_WITH_MNIST = (
    "digits",
    "digits-rot90",
    "digits-invert",
    "digits-0to4",
    "mnist",
    "mnist-rot90",
    "mnist-invert",
    "mnist-5to9",
)  # 8 tasks from both sources
HELD_OUT = ("digits-rot15", "mnist-rot180")  # never trained on: a near task (a small shift) and a far one
HELD_OUT_DIGITS_ONLY = ("digits-rot15",)  # the held-out tasks that need no MNIST files


def mnist_dir() -> Path | None:
    """Where the MNIST IDX files are: ``$ZOO_MNIST_DIR``, or ``mnist/`` in the shared data folder."""
    env = os.environ.get("ZOO_MNIST_DIR")
    for cand in ([Path(env)] if env else []) + [c / "mnist" for c in shared_data_candidates()]:
        if cand.is_dir() and find_mnist(cand) is not None:
            return cand
    return None


def default_tasks() -> tuple[str, ...]:
    """8 tasks: digits and MNIST when MNIST is available, digits-only variants otherwise."""
    return SEEN_WITH_MNIST if mnist_dir() is not None else SEEN_DIGITS_ONLY


def held_out_tasks() -> tuple[str, ...]:
    """Tasks no zoo checkpoint is trained on (for zero-shot generation): near and far when MNIST is there."""
    return HELD_OUT if mnist_dir() is not None else HELD_OUT_DIGITS_ONLY


@lru_cache(maxsize=4)
def _source(name: str, mnist_limit: int) -> ImageDataset:
    if name == "digits":
        return load_digits().resize(28)  # 28x28, as cnn-tiny takes; the source records the resize
    path = mnist_dir()
    if path is None:
        raise DatasetError(
            "MNIST tasks need the MNIST IDX files; set ZOO_MNIST_DIR to the folder that holds them"
        )
    return load_mnist(path, limit=mnist_limit)


_TRANSFORMS: dict[str, Callable[[ImageDataset], ImageDataset]] = {  # transform name -> dataset function
    "none": lambda d: d,
    "rot90": lambda d: rotate(d, 90),
    "rot180": lambda d: rotate(d, 180),
    "rot270": lambda d: rotate(d, 270),
    "rot15": lambda d: rotate(d, 15),
    "invert": invert,
    "mirror": mirror,
}


def task_data(
    task: str | Task, *, mnist_limit: int = 5000, seed: int = 0
) -> tuple[ImageDataset, ImageDataset]:
    """(train, test) of a task: a stratified 80/20 split, fixed by ``seed``."""
    t = TASKS[task] if isinstance(task, str) else task
    data = _TRANSFORMS[t.transform](_source(t.source, mnist_limit))
    if t.classes is not None:
        data = data.select_classes(t.classes)
    return data.split(0.8, seed=seed)


@zoo.recorded(
    "build-tiny-zoo",
    summary=lambda recs: ({"checkpoints": len(recs), "tasks": len({r.dataset for r in recs})}, ""),
)
def build_tiny_zoo(
    registry: Registry,
    tasks: Iterable[str] | None = None,
    *,
    per_task: int = 10,
    steps: int = 200,
    lr: float = 3e-3,
    batch_size: int = 32,
    mnist_limit: int = 5000,
    register_datasets: bool = True,
    progress: bool = True,
) -> list[CheckpointRecord]:
    """Train ``per_task`` cnn-tiny checkpoints (seeds 0..) on each task and register them. Idempotent.

    Every network gets about ``steps`` Adam steps (whole epochs), whatever the size of its task.

    Checkpoints are named ``{task}-s{seed}``; one that is already registered is kept, not retrained. A name
    held by a checkpoint that is not a tiny-zoo member (a user's own ``digits-s0``) is refused with
    :class:`~zoo.errors.DuplicateError` before anything is trained: the tiny zoo never takes it over.
    Each task's training split is registered as a dataset of the task's name (with its embeddings and a
    source zoo can read again: ``zoo get cnn-tiny --dataset digits-rot15 --labelled digits`` scores on it),
    so a checkpoint is filed under the data it was trained on. A task whose name is registered with other
    data (``zoo datasets register digits digits`` registers scikit-learn's raw 8x8 images, not the task's
    28x28 training split) is refused with :class:`~zoo.errors.DatasetError` before anything is trained.
    """
    spec = resolve_arch(ARCH)
    names = list(tasks or default_tasks())
    jobs = [(t, s) for t in names for s in range(per_task)]
    existing = members(registry, names, per_task)  # refuses a name another checkpoint holds
    out: list[CheckpointRecord] = []
    registered = {d.name: d for d in registry.datasets()}
    for task in dict.fromkeys(names):  # refuse a name bound to other data before training anything
        check_task_name(registered.get(task), task, task_data(task, mnist_limit=mnist_limit)[0])
    datasets: set[str] = set()  # tasks whose dataset record holds their training split, with its source
    for task, seed in tqdm(jobs, desc="build tiny zoo", unit="net", disable=not progress):
        name = f"{task}-s{seed}"
        train_set, test_set = task_data(task, mnist_limit=mnist_limit)
        if register_datasets and task not in datasets:
            register_task(registry, task, train_set, registered.get(task))
        datasets.add(task)
        if name in existing:
            out.append(existing[name])
            continue
        model = train_member(train_set, seed, steps=steps, lr=lr, batch_size=batch_size)
        acc = accuracy(model, test_set.images, test_set.labels)
        out.append(
            registry.add(
                model,
                name=name,
                arch=spec,
                dataset=task,
                metrics={"accuracy": acc},
                tags=["tinyzoo", f"task-{task}"],
                origin="trained",
                exist_ok=True,
            )
        )
    return out


def is_member(rec: CheckpointRecord) -> bool:
    """Whether ``rec`` is a tiny-zoo member: a cnn-tiny checkpoint tagged ``tinyzoo`` (what
    :func:`build_tiny_zoo` registers)."""
    return "tinyzoo" in rec.tags and rec.arch.name == resolve_arch(ARCH).name


def members(registry: Registry, tasks: Iterable[str], per_task: int) -> dict[str, CheckpointRecord]:
    """The tiny-zoo members ``{task}-s{seed}`` (seeds ``0..per_task-1``) already registered, by name (their
    latest version). Raises :class:`~zoo.errors.DuplicateError`, naming every such checkpoint and the fix,
    when one of those names is held by a checkpoint that is not a member (:func:`is_member`)."""
    found: dict[str, CheckpointRecord] = {}
    clashes: list[CheckpointRecord] = []
    for task in dict.fromkeys(tasks):
        wanted = {f"{task}-s{s}" for s in range(per_task)}
        for rec in registry.search(name=f"{task}-s*", latest_only=True):
            if rec.name in wanted and is_member(rec):
                found[rec.name] = rec
            elif rec.name in wanted:
                clashes.append(rec)
    if clashes:
        first = clashes[0].name
        shown = ", ".join(
            f"{r.name}:v{r.version} ({r.arch.name} on {r.dataset or 'no dataset'})" for r in clashes[:5]
        )
        remove = Hint(f"registry.remove({first!r})", f"`zoo rm {first}`")
        raise DuplicateError(
            "checkpoint",
            first,
            f"{len(clashes)} name(s) of the tiny zoo are held by checkpoints that are not tiny-zoo members "
            f"(no `tinyzoo` tag, or not {ARCH}): {shown}; nothing was trained. Build the tiny zoo in a "
            f"registry of its own, pick other tasks, or remove those checkpoints first ({remove})",
        ).hinting(remove)
    return found


def register_task(
    registry: Registry, task: str, train_set: ImageDataset, known: DatasetRecord | None = None
) -> DatasetRecord:
    """Register ``task``'s training split as dataset ``task``, with a source zoo can read again; idempotent
    (``known``: its record, when the caller has it). A name registered with other data is refused
    (:func:`check_task_name`): a checkpoint is filed only under the data it was trained on."""
    rec = known if known is not None else next((d for d in registry.datasets() if d.name == task), None)
    check_task_name(rec, task, train_set)
    if rec is not None and rec.fingerprint == train_set.fingerprint and rec.meta.get("source"):
        return rec  # already there, readable again
    return registry.register_dataset(task, train_set, description=TASKS[task].description)


def check_task_name(rec: DatasetRecord | None, task: str, train_set: ImageDataset) -> None:
    """Refuse a task whose name is registered with other data (one meaning per dataset name): raises
    :class:`~zoo.errors.DatasetError` naming both and the fix."""
    if rec is None or not rec.fingerprint or rec.fingerprint == train_set.fingerprint:
        return  # not registered, known by name only, or the very data
    shape = "x".join(map(str, rec.meta.get("image_shape") or ())) or "?"
    want = "x".join(map(str, train_set.image_shape))
    remove = Hint(f"registry.remove_dataset({task!r})", f"`zoo datasets rm {task}`")
    raise DatasetError(
        f"dataset {task!r} is registered with other data ({rec.num_samples} images of {shape}, fingerprint "
        f"{rec.fingerprint[:12]}) than the tiny zoo's task {task!r} ({train_set.num_samples} images of "
        f"{want}: {TASKS[task].description}); its checkpoints would be filed under data they were not "
        f"trained on. Build the tiny zoo in a registry of its own, or remove the other dataset first "
        f"({remove})"
    ).hinting(remove)


def train_member(
    train_set: ImageDataset, seed: int, *, steps: int = 200, lr: float = 3e-3, batch_size: int = 32
) -> torch.nn.Module:
    """One cnn-tiny trained as the zoo trains its members: init and data order from ``seed``, about ``steps``
    Adam steps in whole epochs, whatever the size of the training split."""
    spec = resolve_arch(ARCH)
    torch.manual_seed(seed)
    epochs = max(1, math.ceil(steps * batch_size / len(train_set.labels)))
    return train(
        get_family(spec.family).build(spec),
        train_set.images,
        train_set.labels,
        epochs=epochs,
        seed=seed,
        lr=lr,
        batch_size=batch_size,
    )


def evaluate(model: torch.nn.Module, task: str, *, mnist_limit: int = 5000) -> float:
    """Test accuracy of ``model`` on a task's test split."""
    _, test_set = task_data(task, mnist_limit=mnist_limit)
    return accuracy(model, test_set.images, test_set.labels)


__all__ = [
    "ARCH",
    "HELD_OUT",
    "HELD_OUT_DIGITS_ONLY",
    "SEEN_DIGITS_ONLY",
    "SEEN_WITH_MNIST",
    "TASKS",
    "Task",
    "build_tiny_zoo",
    "default_tasks",
    "evaluate",
    "held_out_tasks",
    "check_task_name",
    "mnist_dir",
    "register_task",
    "task_data",
    "train_member",
]
