"""The evaluation protocol's baselines (zoo_demo.evaluation), through its public functions."""

from __future__ import annotations

import pytest
import torch

import zoo
from igpg.evaluation import aligned_distances, distances, flat_state, flat_weights
from zoo_demo.evaluation import with_noise


@pytest.fixture(scope="module")
def nets() -> list[torch.nn.Module]:
    spec = zoo.resolve_arch("cnn-tiny")
    out = []
    for seed in range(3):
        torch.manual_seed(seed)
        out.append(zoo.get_family("cnn").build(spec))
    return out


@pytest.mark.parametrize("distance", [0.05, 0.5])
def test_noise_sits_at_the_asked_distance_in_every_tensor(
    nets: list[torch.nn.Module], distance: float
) -> None:
    net = nets[0]
    noisy = with_noise(net, distance, torch.Generator().manual_seed(0))
    for key, t in net.state_dict().items():
        moved = noisy.state_dict()[key] - t
        assert float(moved.norm() / t.norm()) == pytest.approx(distance, rel=1e-4), key
    assert distances([noisy], flat_weights(net)[None])[0] == pytest.approx(distance, rel=1e-3)
    again = with_noise(net, distance, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(noisy.state_dict().values(), again.state_dict().values()))


def test_a_permuted_copy_of_a_training_checkpoint_is_at_distance_zero_modulo_permutation(
    nets: list[torch.nn.Module],
) -> None:
    spec = zoo.resolve_arch("cnn-tiny")
    ref, other = nets[0].state_dict(), nets[1].state_dict()
    perm = torch.tensor([3, 0, 7, 1, 6, 2, 5, 4])  # the first conv's 8 channels, reordered
    state = {k: v.clone() for k, v in ref.items()}
    state["features.0.weight"], state["features.0.bias"] = (
        ref["features.0.weight"][perm],
        ref["features.0.bias"][perm],
    )
    state["features.3.weight"] = ref["features.3.weight"][:, perm]
    copy = zoo.get_family("cnn").load(spec, state)
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(copy(x), nets[0](x), atol=1e-5)  # the same function
    assert distances([copy], flat_weights(nets[0])[None])[0] > 0.1  # far in raw weights ...
    assert aligned_distances([copy], [other, ref], spec)[0] == pytest.approx(0.0, abs=1e-6)  # ... a copy


def test_distances_do_not_depend_on_the_order_a_state_dict_was_read_in(nets: list[torch.nn.Module]) -> None:
    spec = zoo.resolve_arch("cnn-tiny")
    state = nets[0].state_dict()
    shuffled = {k: state[k] for k in sorted(state, reverse=True)}  # as a file may list its tensors
    assert distances([nets[0]], flat_state(shuffled)[None])[0] == 0.0
    assert aligned_distances([nets[0]], [shuffled], spec)[0] == pytest.approx(0.0, abs=1e-6)
