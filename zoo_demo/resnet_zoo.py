"""A CIFAR-style ResNet zoo on real data: ``resnet{6n+2}`` networks trained on the tiny zoo's digit tasks.

The tasks, their train/test splits, the test metric and the dataset names are the tiny zoo's
(:mod:`zoo_demo.tinyzoo`): a ResNet trained on ``digits-invert`` sits beside the cnn-tiny checkpoints of
``digits-invert`` and shares their registered dataset. Every member is a CIFAR ResNet
(:mod:`zoo_families.resnet`: three stages of n BasicBlocks with ``width``, 2x and 4x channels, option-A
shortcuts, global average pooling) with one input channel and 10 outputs (5-class tasks use outputs 0..4,
as cnn-tiny does).

Architecture specs: the resnet family records ``input_size`` in the spec, and two specs that differ only in it
are different architectures to the registry (a search or retrieval by spec tells them apart; ``zoo
load-check`` and labelled scoring use it as the input shape), although the weights have the same layout.
Every tiny-zoo task yields 1x28x28 images (the 8x8 digits are upsampled by ``task_data``), so the spec is
taken from the data (``in_chans=1, input_size=28``) and all members of one depth and width share one spec,
e.g. ``resnet14(depth=14, in_chans=1, input_size=28, num_classes=10, style=cifar, width=8)``. Re-adding a
member's weights without ``arch`` would detect ``input_size=32`` (the family default): pass the spec.

Default zoo: depths 8, 14, 26 and 32 at width 8, plus resnet8 at widths 4 and 16 (three widths at one depth),
on 4 tasks, seeds 0-2: 72 members. Depth 20 is left out on purpose (an unseen depth between seen ones for
generators). Recipe: SGD (Nesterov momentum 0.9, weight decay 5e-4 on weights, none on BN and biases), a
one-cycle schedule peaking at lr 0.05, batch 32, 3 epochs over at most 2,000 training images per task (a fixed
stratified subset of the task's training split, the same for every member).

Measured (2-core CPU shared with other engineers' jobs, load 3-5; ``torch.set_num_threads(1)`` in the caller,
2000-image MNIST subsets, 999 MNIST / 360 digits test images): the default zoo (72 members, empty registry)
built in 422 s; a second call skipped all 72 in 0.1 s. Mean test accuracy over seeds 0-2 (min-max), and
seconds per member on digits / MNIST tasks:

=============  ======  ========  ==============  ==================  ==================  ===================
member         params  s/member  digits          digits-invert       mnist               mnist-rot90
=============  ======  ========  ==============  ==================  ==================  ===================
resnet8-w4       4934   1.5/2.2  0.93 (.91-.96)  0.91 (.88-.94)      0.79 (.76-.83)      0.82 (.80-.83)
resnet8-w8      19074   2.3/3.3  0.98 (.98-.99)  0.98 (.97-.98)      0.91 (.89-.93)      0.92 (.91-.93)
resnet8-w16     75002   4.2/6.5  0.99 (.97-1.0)  0.99 (.99-.99)      0.94 (.94-.94)      0.95 (.94-.95)
resnet14-w8     43490   3.9/5.8  0.98 (.97-.99)  0.98 (.98-.99)      0.94 (.94-.95)      0.95 (.94-.97)
resnet26-w8     92322   7.3/10.8 0.99 (.98-.99)  0.98 (.97-.99)      0.94 (.93-.96)      0.95 (.94-.96)
resnet32-w8    116738   9.0/13.1 0.98 (.97-.99)  0.98 (.97-.99)      0.95 (.94-.96)      0.95 (.94-.97)
=============  ======  ========  ==============  ==================  ==================  ===================

Threads: zoo leaves torch's thread count alone (as the tiny zoo does). On the shared 2-core machine two torch
threads trained resnet14 13x slower than one (the threads spin while other processes hold the cores): a
caller building on shared cores should call ``torch.set_num_threads(1)`` first. Weights are identical for a
seed at a given thread count; a different thread count may change them in the last bits.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

import zoo
from zoo import ArchSpec, CheckpointRecord, Registry, get_family, resolve_arch
from zoo.datasets import ImageDataset
from zoo.errors import ConfigError
from zoo_demo.tinyzoo import (
    GRAMMAR,
    HELD_OUT,
    TASKS,
    check_task_name,
    default_tasks,
    evaluate,
    mnist_dir,
    register_task,
    task_data,
)

log = logging.getLogger(__name__)

DEPTHS = (8, 14, 26, 32)  # depths trained at every width in WIDTHS (6n+2; 20 left out as an unseen depth)
WIDTHS = (8,)  # first-stage channels of the main grid
EXTRA_WIDTHS: tuple[tuple[int, tuple[int, ...]], ...] = ((8, (4, 16)),)  # (depth, more widths at that depth)
SEEDS = (0, 1, 2)  # one member per seed
EPOCHS = 3  # passes over the (limited) training split
TRAIN_LIMIT = 2000  # at most this many training images per task (a fixed stratified subset)
LR = 0.05  # peak learning rate of the one-cycle schedule
BATCH_SIZE = 32  # images per SGD step
MNIST_LIMIT = 5000  # MNIST images a task draws from: the tiny zoo's default, so the datasets agree
TASKS_WITH_MNIST = ("digits", "digits-invert", "mnist", "mnist-rot90")  # of tinyzoo's SEEN_WITH_MNIST
TASKS_DIGITS_ONLY = ("digits", "digits-rot90", "digits-invert", "digits-0to4")  # of SEEN_DIGITS_ONLY
TAG = "resnetzoo"  # tag on every member (plus task-<name>, as the tiny zoo tags)


def default_resnet_tasks() -> tuple[str, ...]:
    """4 of the tiny zoo's default tasks: two digits and two MNIST tasks when MNIST is there, four digits
    tasks otherwise. Never a held-out task (they are subsets of :func:`zoo_demo.tinyzoo.default_tasks`)."""
    chosen = TASKS_WITH_MNIST if mnist_dir() is not None else TASKS_DIGITS_ONLY
    assert set(chosen) <= set(default_tasks()), "the ResNet zoo's tasks must be tiny-zoo training tasks"
    return chosen


def resnet_spec(depth: int, width: int, *, in_chans: int = 1, input_size: int = 28) -> ArchSpec:
    """The CIFAR ResNet spec of a zoo member: ``resnet{depth}`` (6n+2) at ``width``, 10 classes."""
    return resolve_arch(
        f"resnet{depth}",
        family="resnet",
        style="cifar",
        in_chans=in_chans,
        width=width,
        input_size=input_size,
        num_classes=10,
    )


def member_name(spec: ArchSpec, task: str, seed: int) -> str:
    """``resnet{depth}-w{width}-{task}-s{seed}``: unique across architectures, tasks and seeds."""
    return f"resnet{spec.config['depth']}-w{spec.config['width']}-{task}-s{seed}"


@dataclass(frozen=True)
class ResNetZooBuild:
    """What :func:`build_resnet_zoo` did: every requested member, and which of them it trained now."""

    records: tuple[CheckpointRecord, ...]  # every member of the requested zoo, in build order
    added_ids: frozenset[int]  # ids of the members this call trained and registered
    seconds: float  # wall-clock time of the call

    @property
    def added(self) -> tuple[CheckpointRecord, ...]:
        """Members trained and registered by this call."""
        return tuple(r for r in self.records if r.id in self.added_ids)

    @property
    def skipped(self) -> tuple[CheckpointRecord, ...]:
        """Members that were already registered (kept, not retrained)."""
        return tuple(r for r in self.records if r.id not in self.added_ids)

    def mean_accuracy(self) -> dict[tuple[str, str], float]:
        """Mean test accuracy over seeds per (``resnet{depth}-w{width}``, task)."""
        groups: dict[tuple[str, str], list[float]] = {}
        for r in self.records:
            key = (f"resnet{r.arch.config['depth']}-w{r.arch.config['width']}", str(r.dataset))
            groups.setdefault(key, []).append(float(r.metrics["accuracy"]))
        return {k: sum(v) / len(v) for k, v in groups.items()}


def _check(
    tasks: Sequence[str], seeds: Sequence[int], epochs: int, train_limit: int | None, allow_held_out: bool
) -> None:
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ConfigError(f"unknown task(s) {unknown}; a tiny-zoo task name is {GRAMMAR}")
    held = [t for t in tasks if t in HELD_OUT]
    if held and not allow_held_out:
        raise ConfigError(
            f"task(s) {held} are held out (no zoo checkpoint is trained on them, for zero-shot tests); "
            "pass allow_held_out=True to train on them anyway"
        )
    if not tasks or not seeds:
        raise ConfigError("the ResNet zoo needs at least one task and one seed")
    if epochs < 1 or (train_limit is not None and train_limit < 2):
        raise ConfigError(
            f"epochs must be at least 1 and train_limit at least 2 (got {epochs}, {train_limit})"
        )


def limit_train_set(train_set: ImageDataset, train_limit: int | None) -> ImageDataset:
    """A fixed stratified subset of about ``train_limit`` images (all of them when there are no more)."""
    n = train_set.num_samples
    if train_limit is None or n <= train_limit:
        return train_set
    return train_set.split(train_limit / n, seed=0)[0]


def train_resnet(
    spec: ArchSpec,
    train_set: ImageDataset,
    seed: int,
    *,
    epochs: int = EPOCHS,
    lr: float = LR,
    batch_size: int = BATCH_SIZE,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
) -> nn.Module:
    """One member trained as the zoo trains them: init and data order from ``seed`` (CPU, deterministic),
    SGD with Nesterov momentum and a one-cycle schedule over ``epochs`` passes. Returns it in eval mode."""
    torch.manual_seed(seed)
    model = get_family(spec.family).build(spec)
    params = list(model.parameters())
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},  # BN scales/shifts, biases
    ]
    opt = torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True)
    x, y = train_set.images, train_set.labels
    per_epoch = math.ceil(len(y) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * per_epoch, pct_start=0.25
    )
    gen = torch.Generator().manual_seed(seed)  # data order
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=gen).split(batch_size):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


@zoo.recorded(
    "build-resnet-zoo", summary=lambda b: ({"checkpoints": len(b.records), "trained": len(b.added_ids)}, "")
)
def build_resnet_zoo(
    registry: Registry,
    *,
    depths: Iterable[int] = DEPTHS,
    widths: Iterable[int] = WIDTHS,
    extra_widths: Iterable[tuple[int, Iterable[int]]] = EXTRA_WIDTHS,
    tasks: Iterable[str] | None = None,
    seeds: Iterable[int] = SEEDS,
    epochs: int = EPOCHS,
    train_limit: int | None = TRAIN_LIMIT,
    lr: float = LR,
    batch_size: int = BATCH_SIZE,
    mnist_limit: int = MNIST_LIMIT,
    allow_held_out: bool = False,
    register_datasets: bool = True,
    progress: bool = True,
) -> ResNetZooBuild:
    """Train CIFAR ResNets on the tiny zoo's tasks and register them. Idempotent.

    Members: every depth in ``depths`` at every width in ``widths``, plus ``extra_widths`` (pairs of a depth
    and more widths for it), on each task (default :func:`default_resnet_tasks`) with each seed. A member is
    named ``resnet{depth}-w{width}-{task}-s{seed}`` (:func:`member_name`); one already registered under that
    name with the same spec is kept, not retrained (the tiny zoo's rule). Held-out tasks
    (:data:`zoo_demo.tinyzoo.HELD_OUT`) are refused unless ``allow_held_out``.

    Each task's whole training split is registered as a dataset of the task's name with its embeddings
    (unless one of that name is there, e.g. from the tiny zoo); a member trains on at most ``train_limit``
    images of it (:func:`limit_train_set`) and is registered with its test accuracy (``metrics["accuracy"]``,
    :func:`zoo_demo.tinyzoo.evaluate`), ``dataset`` = the task, tags ``resnetzoo`` and ``task-<name>``, origin
    ``trained`` and its recipe in ``meta`` (seed, epochs, train_samples, batch_size, lr, optimizer).

    Build time and accuracies of the default zoo: see the module docstring.
    """
    start = time.perf_counter()
    task_list = list(tasks) if tasks is not None else list(default_resnet_tasks())
    seed_list = [int(s) for s in seeds]
    shapes = [(d, w) for d in depths for w in widths]
    for d, more in extra_widths:
        shapes += [(d, w) for w in more if (d, w) not in shapes]
    _check(task_list, seed_list, epochs, train_limit, allow_held_out)
    for d, w in shapes:
        resnet_spec(d, w)  # refuses a depth that is not 6n+2 or a bad width before anything trains
    registered = {d.name: d for d in registry.datasets()}
    for task in task_list:  # refuse a task name bound to other data before anything trains
        check_task_name(registered.get(task), task, task_data(task, mnist_limit=mnist_limit)[0])
    datasets: set[str] = set()
    records: list[CheckpointRecord] = []
    added: set[int] = set()
    total = len(task_list) * len(shapes) * len(seed_list)
    bar = tqdm(total=total, desc="build resnet zoo", unit="net", disable=not progress)
    try:
        for task in task_list:
            train_set, _ = task_data(task, mnist_limit=mnist_limit)
            if register_datasets and task not in datasets:
                register_task(registry, task, train_set, registered.get(task))
                datasets.add(task)
            fit_set = limit_train_set(train_set, train_limit)
            c, size, _ = train_set.image_shape
            for d, w in shapes:
                spec = resnet_spec(d, w, in_chans=c, input_size=size)
                existing = {r.name: r for r in registry.search(arch=spec, latest_only=True)}
                for seed in seed_list:
                    name = member_name(spec, task, seed)
                    bar.set_postfix_str(name, refresh=False)
                    if name in existing:
                        records.append(existing[name])
                        bar.update()
                        continue
                    t0 = time.perf_counter()
                    model = train_resnet(spec, fit_set, seed, epochs=epochs, lr=lr, batch_size=batch_size)
                    acc = evaluate(model, task, mnist_limit=mnist_limit)
                    rec = registry.add(
                        model,
                        name=name,
                        arch=spec,
                        dataset=task,
                        metrics={"accuracy": acc},
                        tags=[TAG, f"task-{task}"],
                        origin="trained",
                        meta={
                            "seed": seed,
                            "epochs": epochs,
                            "train_samples": fit_set.num_samples,
                            "batch_size": batch_size,
                            "lr": lr,
                            "optimizer": "sgd-nesterov-onecycle",
                        },
                        exist_ok=True,
                    )
                    records.append(rec)
                    added.add(rec.id)
                    log.info("%s: accuracy %.4f, %.1f s", name, acc, time.perf_counter() - t0)
                    bar.update()
    finally:
        bar.close()
    return ResNetZooBuild(tuple(records), frozenset(added), time.perf_counter() - start)


__all__ = [
    "BATCH_SIZE",
    "DEPTHS",
    "EPOCHS",
    "EXTRA_WIDTHS",
    "LR",
    "MNIST_LIMIT",
    "SEEDS",
    "TASKS_DIGITS_ONLY",
    "TASKS_WITH_MNIST",
    "TRAIN_LIMIT",
    "WIDTHS",
    "ResNetZooBuild",
    "build_resnet_zoo",
    "default_resnet_tasks",
    "limit_train_set",
    "member_name",
    "resnet_spec",
    "train_resnet",
]
