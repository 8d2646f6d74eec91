"""Class-conditional heads: a network's classifier generated from the condition's labelled examples.

IGPG conditions on a dataset embedding pooled from a few labelled images per class (arXiv 2504.02012,
Sec. 3). The prior turns that vector into a whole network, and a token prior has no way to know which
output row a class of an unseen task belongs to: a network for a new class order, a new class subset or
new inputs needs a classifier it never saw. A :class:`ClassHead` generates that classifier from the same
per-class examples: it runs them through the generated body (every layer but the classifier), takes each
class's mean feature (its prototype, as in imprinted weights, Qi et al., CVPR 2018, and prototypical
networks, Snell et al., NeurIPS 2017) and sets the classifier to the Gaussian discriminant of those
prototypes with a shared, shrunk covariance (linear discriminant analysis with Ledoit-Wolf-style
shrinkage towards a scaled identity), scaled to the norm of the classifier rows it replaces:

    S = (1 - lam) * Sigma + lam * (tr(Sigma) / d) * I,   w_c = S^-1 mu_c,   b_c = -1/2 mu_c^T S^-1 mu_c,

where ``mu_c`` (shape ``(d,)``) is class ``c``'s prototype and ``Sigma`` the pooled within-class
covariance of the features; every ``(w_c, b_c)`` is then multiplied by one factor that gives the rows the
Frobenius norm of the decoded classifier's rows (predictions unchanged; logits keep a trained network's scale
for fine-tuning and weight-space distances). Output rows of classes the examples do not have get zero weights
and a bias below every logit of the examples (never predicted). The shrinkage ``lam`` is the one setting;
:func:`fit_shrinkage` chooses it on the training zoo (each checkpoint's own body and data), never on the
tasks it is used for.

Which layer is the classifier comes from the family's slot descriptors (role ``classifier``, the last
linear layer in every built-in family); a family whose classifier is not an ``nn.Linear`` gets no class head
(:func:`classifier_module` returns None) and keeps its decoded one.
"""

from __future__ import annotations

import copy
import logging
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from zoo import ArchSpec, get_family
from zoo.datasets import ImageDataset

log = logging.getLogger(__name__)

SHRINKAGE_GRID = (0.01, 0.03, 0.1, 0.3, 0.6, 0.9)  # what fit_shrinkage tries


@dataclass(frozen=True)
class ClassHead:
    """How a generator makes a classifier from labelled examples (see the module docs).

    ``per_class`` examples of each class (drawn with ``seed`` by :meth:`ImageDataset.sample_per_class`,
    as the dataset encoders draw theirs) build it; ``shrinkage`` is ``lam`` in [0, 1]; ``choose``: when a
    network already has a classifier (decoded from tokens), keep whichever of the two is more accurate on
    held-back examples (:meth:`choose_for`), so a task the prior knows keeps its memorised classifier.
    """

    shrinkage: float = 0.1
    per_class: int = 32
    seed: int = 0
    choose: bool = True

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> ClassHead:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})  # type: ignore[arg-type]

    # -- the pieces ---------------------------------------------------------------------------------
    def examples(self, data: ImageDataset, *, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``per_class`` images of every class of ``data`` and their labels: ``(n, C, H, W)`` float32 and
        ``(n,)`` int64."""
        idx = torch.cat(data.sample_per_class(self.per_class, self.seed if seed is None else seed))
        return data.images[idx], data.labels[idx]

    def weights(
        self, feats: torch.Tensor, labels: torch.Tensor, rows: int, norm: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The discriminant classifier of features ``(n, d)`` with labels ``(n,)`` in ``0..rows-1``:
        weight ``(rows, d)`` and bias ``(rows,)``, float32.

        ``norm``: the Frobenius norm the present classes' weight rows are scaled to (with their biases, which
        leaves every prediction unchanged), e.g. that of the classifier it replaces, so the logits keep a
        trained network's scale for fine-tuning and weight-space distances; None keeps the discriminant's own
        scale. Rows of absent classes get zero weights and a bias below every logit of the examples by their
        whole logit range (never predicted on them, nor on inputs like them)."""
        f = feats.double()
        d = f.shape[1]
        present = sorted(int(c) for c in labels.unique())
        means = torch.stack([f[labels == c].mean(0) for c in present])  # (K, d)
        resid = f - means[torch.searchsorted(torch.tensor(present), labels)]
        cov = resid.T @ resid / max(1, len(f) - len(present))
        scale = float(cov.diagonal().mean()) or 1.0
        cov = (1 - self.shrinkage) * cov + (self.shrinkage * scale + 1e-6 * scale + 1e-12) * torch.eye(d)
        w = torch.linalg.solve(cov, means.T).T  # (K, d): S^-1 mu_c
        b = -0.5 * (w * means).sum(1)
        if norm is not None and norm > 0 and float(w.norm()) > 0:
            factor = norm / float(w.norm())
            w, b = w * factor, b * factor
        logits = f @ w.T + b  # (n, K)
        spread = float(logits.max() - logits.min()) or 1.0
        weight = torch.zeros(rows, d, dtype=torch.float64)
        bias = torch.full((rows,), float(logits.max(1).values.min()) - spread, dtype=torch.float64)
        weight[present], bias[present] = w, b
        return weight.float(), bias.float()

    def apply(
        self, module: nn.Module, spec: ArchSpec, images: torch.Tensor, labels: torch.Tensor
    ) -> nn.Module:
        """A copy of ``module`` whose classifier is made from ``images`` ``(n, C, H, W)`` and ``labels``
        ``(n,)``; ``module`` itself when its family has no linear classifier or the labels do not fit its
        outputs."""
        name = classifier_module(module, spec)
        if name is None:
            return module
        lin = module.get_submodule(name)
        assert isinstance(lin, nn.Linear)
        if int(labels.max()) >= lin.out_features:
            log.warning(
                "class head: %d classes do not fit %d outputs; keeping the decoded classifier",
                int(labels.max()) + 1,
                lin.out_features,
            )
            return module
        present = labels.unique()
        norm = float(lin.weight.detach()[present].norm())  # the decoded classifier's scale, for those rows
        weight, bias = self.weights(features(module, name, images), labels, lin.out_features, norm)
        out = copy.deepcopy(module)
        head = out.get_submodule(name)
        with torch.no_grad():
            head.weight.copy_(weight)  # type: ignore[operator]
            if head.bias is not None:  # type: ignore[union-attr]
                head.bias.copy_(bias)  # type: ignore[union-attr,operator]
        return out

    def choose_for(self, module: nn.Module, spec: ArchSpec, data: ImageDataset) -> tuple[nn.Module, bool]:
        """``module`` with its classifier made from ``data``'s examples, or ``module`` as it is when its own
        classifier is at least as accurate on held-back examples.

        ``2 * per_class`` images of each class are drawn (seed ``seed``); the first half of each class's draw
        (rounded up) builds the class head, the rest is held back, so neither classifier is scored on what
        made it. A class with a single image only builds; with nothing held back at all the class head is
        used. Without ``choose``, always the class head, from ``per_class`` images of each class. Data
        whose images the network cannot take (another channel count or size than ``spec``'s input) keep
        the decoded classifier, with a warning. The returned network carries a ``generation_note`` (str)
        saying which classifier it has, which provision adds to its reason. Returns (network, whether the
        class head was used)."""
        if not self.fits(spec, data):
            return module, False
        if self.choose:
            build, held = self.split(data)
            x, y = data.images[build], data.labels[build]
        else:
            (x, y), held = self.examples(data), torch.zeros(0, dtype=torch.int64)
        made = self.apply(module, spec, x, y)
        if made is module:
            return module, False
        classes = len(y.unique())
        if self.choose and len(held):
            hx, hy = data.images[held], data.labels[held]
            own, new = _accuracy(module, hx, hy), _accuracy(made, hx, hy)
            if new < own:
                module.generation_note = (  # type: ignore[assignment]
                    f"kept its decoded classifier ({own:.3f} on {len(held)} held-back examples, against "
                    f"{new:.3f} for one made from the dataset's examples)"
                )
                return module, False
            made.generation_note = (  # type: ignore[assignment]
                f"its classifier was made from {len(y)} examples of the dataset's {classes} classes "
                f"(class head: {new:.3f} on {len(held)} held-back examples, the decoded one {own:.3f})"
            )
        else:
            made.generation_note = (  # type: ignore[assignment]
                f"its classifier was made from {len(y)} examples of the dataset's {classes} classes "
                "(class head)"
            )
        return made, True

    def split(self, data: ImageDataset) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices of ``data`` that build the class head and those held back to score it: per class,
        ``2 * per_class`` images drawn with ``seed``, the first half (rounded up) builds. Disjoint."""
        build, held = [], []
        for idx in data.sample_per_class(2 * self.per_class, self.seed):
            cut = (len(idx) + 1) // 2
            build.append(idx[:cut])
            held.append(idx[cut:])
        return torch.cat(build), torch.cat(held)

    def fits(self, spec: ArchSpec, data: ImageDataset) -> bool:
        """Whether ``data``'s images are what ``spec`` takes (when its family says: ``input_shape``); a
        warning names both shapes when they are not."""
        want = get_family(spec.family).input_shape(spec)
        if _takes(spec, data):
            return True
        log.warning(
            "class head: the dataset's images are %s but %s takes %s; keeping the decoded classifier",
            "x".join(map(str, data.image_shape)),
            spec.name,
            "x".join(map(str, want)),
        )
        return False


def _takes(spec: ArchSpec, data: ImageDataset) -> bool:
    """Whether ``data``'s images have the input shape ``spec``'s family gives (True when it gives none)."""
    want = get_family(spec.family).input_shape(spec)
    return want is None or tuple(data.image_shape) == tuple(want)


def classifier_module(module: nn.Module, spec: ArchSpec) -> str | None:
    """The module name of ``spec``'s classifier (the slot whose descriptor role is ``classifier.weight``)
    when it is an ``nn.Linear`` in ``module``; else None."""
    desc = [d for d in get_family(spec.family).descriptors(spec) if d.role == "classifier.weight"]
    if not desc:
        return None
    name = desc[-1].name.rsplit(".", 1)[0]
    try:
        sub = module.get_submodule(name)
    except AttributeError:
        return None
    return name if isinstance(sub, nn.Linear) else None


@torch.no_grad()
def features(module: nn.Module, classifier: str, images: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    """What ``module`` feeds its classifier (module name ``classifier``) for ``images``: ``(n, d)``."""
    got: list[torch.Tensor] = []
    hook = module.get_submodule(classifier).register_forward_hook(
        lambda _m, inputs, _out: got.append(inputs[0].detach().flatten(1).float())
    )
    was = module.training
    module.eval()
    try:
        for start in range(0, len(images), batch):
            module(images[start : start + batch])
    finally:
        hook.remove()
        module.train(was)
    return torch.cat(got)


@torch.no_grad()
def _accuracy(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    was = module.training
    module.eval()
    try:
        return float((module(x).argmax(1) == y).float().mean())
    finally:
        module.train(was)


def fit_shrinkage(
    pairs: Iterable[tuple[nn.Module, ArchSpec, ImageDataset]],
    *,
    grid: Sequence[float] = SHRINKAGE_GRID,
    per_class: int = 32,
    held_back: int = 1000,
) -> tuple[ClassHead, dict[float, float]]:
    """The shrinkage that serves the training zoo best: for every (network, its spec, the data it was trained
    on), the class head is built from ``per_class`` examples per class and scored on up to ``held_back``
    other images of that data; the ``lam`` of ``grid`` with the best mean accuracy wins (ties: the larger).

    Pairs whose network has no linear classifier, or whose data it cannot take (another input shape than
    the family's ``input_shape``), are left out. Returns (the :class:`ClassHead`, ``{lam: mean accuracy}``).
    Raises ``ValueError`` when no pair is left to fit on.
    """
    scores: dict[float, list[float]] = {lam: [] for lam in grid}
    for module, spec, data in pairs:
        name = classifier_module(module, spec)
        if name is None or not _takes(spec, data):
            continue  # no linear classifier, or data it cannot take (registered at another size)
        head = ClassHead(per_class=per_class)
        picks = torch.cat(data.sample_per_class(per_class, head.seed))
        rest = torch.ones(len(data.labels), dtype=torch.bool)
        rest[picks] = False
        others = torch.nonzero(rest).flatten()[:held_back]
        if not len(others):
            continue
        feats = features(module, name, data.images[picks])
        test = features(module, name, data.images[others])
        rows = module.get_submodule(name).out_features  # type: ignore[union-attr]
        for lam in grid:
            w, b = ClassHead(shrinkage=lam).weights(feats, data.labels[picks], int(rows))  # type: ignore[arg-type]
            pred = (test @ w.T + b).argmax(1)
            scores[lam].append(float((pred == data.labels[others]).float().mean()))
    if not any(scores.values()):
        raise ValueError("no network with a linear classifier and data to fit a class head on")
    means = {lam: statistics.mean(v) for lam, v in scores.items()}
    best = max(grid, key=lambda lam: (round(means[lam], 4), lam))
    log.info(
        "class head: shrinkage %.2f (mean held-back accuracy %s over %d networks)",
        best,
        ", ".join(f"{lam}: {a:.3f}" for lam, a in means.items()),
        len(scores[grid[0]]),
    )
    return ClassHead(shrinkage=best, per_class=per_class), means


__all__ = ["SHRINKAGE_GRID", "ClassHead", "classifier_module", "features", "fit_shrinkage"]
