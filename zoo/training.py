"""Training, fine-tuning and evaluating classifiers (used to build zoos and to fine-tune what zoo returns).

Measured on 2 CPU cores: stacking a population of tiny CNNs (vmap over functional_call, or grouped
convolutions) was no faster than training them one after another, so members train one at a time.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from zoo.datasets import as_dataset
from zoo.errors import ConfigError, DatasetError


@dataclass(frozen=True)
class Curve:
    """Accuracy measured during fine-tuning: ``steps[i]`` optimizer steps gave ``accuracy[i]``."""

    steps: tuple[int, ...]
    accuracy: tuple[float, ...]

    def steps_to(self, target: float) -> int | None:
        """The first measured step count whose accuracy reached ``target``, or None."""
        return next((s for s, a in zip(self.steps, self.accuracy) if a >= target), None)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)`` (eval mode, no gradients)."""
    was = model.training
    model.eval()
    correct = sum(
        int((model(xb).argmax(1) == yb).sum()) for xb, yb in zip(x.split(batch_size), y.split(batch_size))
    )
    model.train(was)
    return correct / max(1, len(y))


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    seed: int = 0,
    lr: float = 3e-3,
    batch_size: int = 64,
    weight_decay: float = 0.0,
) -> nn.Module:
    """Plain Adam training of one classifier; deterministic for a given seed. Returns the model (eval
    mode)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=g).split(batch_size):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def fine_tune(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int,
    eval_x: torch.Tensor,
    eval_y: torch.Tensor,
    eval_every: int = 10,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = False,
) -> tuple[nn.Module, Curve]:
    """Train ``model`` (a copy) for ``steps`` Adam steps, measuring accuracy on ``(eval_x, eval_y)`` as it
    goes.

    The curve starts at step 0 (the accuracy of the model as given).
    """
    model = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    curve_s, curve_a = [0], [accuracy(model, eval_x, eval_y)]
    order = torch.randperm(len(y), generator=g)
    pos = 0
    for step in tqdm(range(1, steps + 1), desc="fine-tune", unit="step", leave=False, disable=not progress):
        if pos + batch_size > len(y):
            order, pos = torch.randperm(len(y), generator=g), 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
        model.train()
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % eval_every == 0 or step == steps:
            curve_s.append(step)
            curve_a.append(accuracy(model, eval_x, eval_y))
    return model.eval(), Curve(tuple(curve_s), tuple(curve_a))


def fine_tune_module(
    module: nn.Module,
    data: Any,
    *,
    epochs: int = 3,
    lr: float = 1e-3,
    batch_size: int = 64,
    eval_data: Any = None,
    seed: int = 0,
    progress: bool = True,
) -> tuple[nn.Module, Curve]:
    """Fine-tune a copy of ``module`` (e.g. ``Provision.module``) on ``data`` for a few epochs; a progress bar
    shows.

    ``data`` and ``eval_data`` are anything :func:`zoo.as_dataset` reads (an ``ImageDataset``,
    ``(images, labels)``, a torch ``Dataset``, an image folder, ``"digits"``). Accuracy is measured before
    training and after every epoch on ``eval_data`` (default: the training data itself, which says how well
    it fits, not how well it generalises). Training runs on the module's device; ``module`` is left as it
    was. Returns the tuned copy (eval mode) and its :class:`Curve` (``steps`` are optimizer steps).

    Example::

        p = zoo.retrieve_or_generate("cnn-tiny", "digits")
        tuned, curve = zoo.fine_tune_module(p.module, train_set, epochs=3, eval_data=test_set)
        print(curve.accuracy)
    """
    if epochs < 1 or batch_size < 1:
        raise ConfigError(f"epochs and batch_size must be at least 1 (got {epochs}, {batch_size})")
    train_ds = as_dataset(data)
    eval_ds = as_dataset(eval_data) if eval_data is not None else train_ds
    for name, ds in (("training", train_ds), ("evaluation", eval_ds)):
        if not len(ds.labels):
            raise DatasetError(f"the {name} data hold no samples")
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    batch = min(batch_size, train_ds.num_samples)
    per_epoch = max(
        1, train_ds.num_samples // batch
    )  # full batches: fine_tune reshuffles before a partial one
    return fine_tune(
        module,
        train_ds.images.to(device),
        train_ds.labels.to(device),
        steps=epochs * per_epoch,
        eval_x=eval_ds.images.to(device),
        eval_y=eval_ds.labels.to(device),
        eval_every=per_epoch,
        lr=lr,
        batch_size=batch,
        seed=seed,
        progress=progress,
    )
