"""Class heads (igpg.heads): classifiers made from a condition's labelled examples through a body."""

from __future__ import annotations

import pytest
import torch

import zoo
from igpg.heads import SHRINKAGE_GRID, ClassHead, classifier_module, fit_shrinkage
from zoo.datasets import load_digits
from zoo.training import accuracy
from zoo_demo.tinyzoo import train_member

SMALL_SPECS = {  # the smallest variant of every built-in family with a classifier of its own
    "cnn": ("cnn-tiny", {}),
    "resnet": ("resnet8", {"width": 4}),
    "vit": ("vit_tiny_patch16_224", {"depth": 1, "img_size": 32, "patch_size": 16, "num_classes": 10}),
}


@pytest.fixture(scope="module")
def digits() -> tuple[zoo.ImageDataset, zoo.ImageDataset]:
    return load_digits().resize(28).split(0.8, seed=0)


@pytest.fixture(scope="module")
def trained(digits: tuple[zoo.ImageDataset, zoo.ImageDataset]) -> torch.nn.Module:
    return train_member(digits[0], seed=0, steps=150)


def _relabelled(data: zoo.ImageDataset, order: tuple[int, ...]) -> zoo.ImageDataset:
    return data.select_classes(order)


@pytest.mark.parametrize("family", sorted(zoo.list_families()))
def test_every_family_with_a_linear_classifier_gets_a_class_head(family: str) -> None:
    if family not in SMALL_SPECS:
        pytest.skip(f"{family}: no classifier of its own (a LoRA adapts a base network)")
    name, settings = SMALL_SPECS[family]
    spec = zoo.resolve_arch(name, **settings)
    torch.manual_seed(0)
    net = zoo.get_family(family).build(spec).eval()
    where = classifier_module(net, spec)
    assert where is not None
    side = spec.config.get("img_size") or spec.config.get("input_size") or 32
    chans = spec.config.get("in_chans", 3)
    x = torch.rand(40, chans, side, side)
    y = torch.arange(40) % 4  # 4 of the outputs' classes
    headed = ClassHead().apply(net, spec, x, y)
    lin = headed.get_submodule(where)
    assert lin.weight.shape == net.get_submodule(where).weight.shape
    logits = headed(x).detach()
    assert torch.all(lin.weight[4:] == 0) and torch.all(lin.bias[4:] < logits[:, :4].max(1).values.min())
    assert int(logits.argmax(1).max()) < 4  # absent classes are never predicted
    decoded = net.get_submodule(where).weight.detach()[:4].norm()
    assert float(lin.weight.detach()[:4].norm()) == pytest.approx(float(decoded), rel=1e-5)  # its scale
    assert net.get_submodule(where) is not lin  # the input network is left as it was


def test_a_class_head_fits_a_class_order_the_network_never_saw(
    digits: tuple[zoo.ImageDataset, zoo.ImageDataset], trained: torch.nn.Module
) -> None:
    spec = zoo.resolve_arch("cnn-tiny")
    train, test = digits
    order = (9, 8, 7, 6, 5, 4, 3, 2, 1, 0)
    tr, te = _relabelled(train, order), _relabelled(test, order)
    own = accuracy(trained, te.images, te.labels)
    head = ClassHead()
    x, y = head.examples(tr)
    made = accuracy(head.apply(trained, spec, x, y), te.images, te.labels)
    assert own < 0.3 < 0.8 < made  # the decoded order is wrong for this task; the made one fits it
    chosen, used = head.choose_for(trained, spec, tr)
    build, _ = head.split(tr)
    again = head.apply(trained, spec, tr.images[build], tr.labels[build])
    assert used and accuracy(chosen, te.images, te.labels) == accuracy(again, te.images, te.labels) > 0.8
    assert "classifier was made from" in chosen.generation_note


def test_choose_for_keeps_the_better_classifier_on_held_back_examples(
    digits: tuple[zoo.ImageDataset, zoo.ImageDataset], trained: torch.nn.Module
) -> None:
    spec = zoo.resolve_arch("cnn-tiny")
    train, _ = digits
    head = ClassHead()
    build, held = head.split(train)
    assert not set(build.tolist()) & set(held.tolist())  # nothing is scored on what made it
    assert len(build) == 10 * head.per_class and len(held) == 10 * head.per_class
    hx, hy = train.images[held], train.labels[held]
    chosen, used = head.choose_for(trained, spec, train)
    made = head.apply(trained, spec, train.images[build], train.labels[build])
    best = max(accuracy(trained, hx, hy), accuracy(made, hx, hy))
    assert accuracy(chosen, hx, hy) == best
    assert (chosen is trained) == (not used) and chosen.generation_note
    always, used = ClassHead(choose=False).choose_for(trained, spec, train)
    assert used and always is not trained


def test_a_single_image_per_class_builds_and_nothing_is_held_back(trained: torch.nn.Module) -> None:
    spec = zoo.resolve_arch("cnn-tiny")
    tiny = load_digits().resize(28)
    one = tiny.subset(torch.cat(tiny.sample_per_class(1, 0)))  # one image of each class
    build, held = ClassHead().split(one)
    assert len(build) == 10 and len(held) == 0
    chosen, used = ClassHead().choose_for(trained, spec, one)  # nothing to choose on: the class head
    assert used and "(class head)" in chosen.generation_note


def test_images_the_network_cannot_take_keep_the_decoded_classifier(
    trained: torch.nn.Module, caplog: pytest.LogCaptureFixture
) -> None:
    spec = zoo.resolve_arch("cnn-tiny")
    raw = load_digits()  # 1x8x8: cnn-tiny takes 1x28x28
    rgb = zoo.as_dataset((torch.rand(40, 3, 28, 28), torch.arange(40) % 4))
    for data in (raw, rgb):
        chosen, used = ClassHead().choose_for(trained, spec, data)
        assert chosen is trained and not used
    assert "takes 1x28x28; keeping the decoded classifier" in caplog.text


def test_fit_shrinkage_picks_from_the_grid_deterministically(
    digits: tuple[zoo.ImageDataset, zoo.ImageDataset], trained: torch.nn.Module
) -> None:
    spec = zoo.resolve_arch("cnn-tiny")
    pairs = [(trained, spec, digits[0])]
    head, means = fit_shrinkage(pairs)
    again, means2 = fit_shrinkage(pairs)
    assert head == again and means == means2
    assert head.shrinkage in SHRINKAGE_GRID and set(means) == set(SHRINKAGE_GRID)
    assert means[head.shrinkage] == max(means.values())
    with pytest.raises(ValueError, match="no network with a linear classifier"):
        fit_shrinkage([])
    with pytest.raises(ValueError, match="no network with a linear classifier"):
        fit_shrinkage([(trained, spec, load_digits())])  # 8x8 images cnn-tiny cannot take: left out


def test_a_class_head_round_trips_through_a_stored_generator() -> None:
    head = ClassHead(shrinkage=0.3, per_class=16)
    assert ClassHead.from_dict(head.to_dict()) == head
    assert ClassHead.from_dict({**head.to_dict(), "from_a_newer_version": 1}) == head
