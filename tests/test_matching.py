import math

import pytest
import torch
import torch.nn.functional as F

from sola.adapt.adapter import SoLaAdapter
from sola.adapt.matching import SimilarityMatching, similarity_map, target_map
from sola.core.config import MatchingConfig, gathered_positions


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_target_map_values():
    target = target_map(8, 16.0)
    assert target.shape == (8, 8)
    assert torch.all(torch.diagonal(target) == 1)
    assert target[0, 1].item() == pytest.approx(sigmoid(16), abs=1e-7)
    assert target[0, 2].item() == pytest.approx(sigmoid(4), abs=1e-7)
    assert target[0, 2].item() == pytest.approx(0.98201379, abs=1e-7)
    assert target[0, 7].item() == pytest.approx(sigmoid(16 / 49), abs=1e-7)
    assert target[0, 7].item() == pytest.approx(0.58091, abs=1e-5)
    assert torch.equal(target, target.T)


def test_gathered_positions_reference():
    assert gathered_positions(MatchingConfig()) == [4, 6, 8, 10, 12, 14, 16, 18]


def test_similarity_map_formula_and_clamp():
    z = F.normalize(torch.randn(2, 5, 7), dim=-1)
    p = torch.randn(2, 5, 7)
    predicted = similarity_map(z, p, eps=1e-5)
    cos = F.cosine_similarity(z[:, :, None, :], p[:, None, :, :], dim=-1)
    torch.testing.assert_close(predicted, ((1 + cos) / 2).clamp(1e-5, 1 - 1e-5))
    same = similarity_map(z, z.clone(), eps=1e-5)
    assert torch.all(torch.diagonal(same, dim1=1, dim2=2) == 1 - 1e-5)


def test_stop_gradient_is_on_the_unprojected_side():
    z = F.normalize(torch.randn(1, 4, 6), dim=-1).requires_grad_(True)
    p = torch.randn(1, 4, 6, requires_grad=True)
    similarity_map(z, p).sum().backward()
    assert z.grad is None or torch.all(z.grad == 0)
    assert p.grad is not None and p.grad.abs().sum() > 0
    # P is asymmetric: P_ij uses z_i and p_j.
    predicted = similarity_map(z.detach(), p.detach())
    assert not torch.allclose(predicted, predicted.transpose(1, 2))


def test_loss_is_bce_over_every_entry_and_only_projected_path_trains_adapter():
    torch.manual_seed(0)
    adapter = SoLaAdapter(12, hidden_dim=16)
    with torch.no_grad():
        adapter.alpha.fill_(0.2)
    model = SimilarityMatching(adapter, MatchingConfig(projector_dim=16))
    windows = torch.randn(3, 23, 12)
    loss = model(windows)
    adapted = adapter(windows)[:, 4:19:2]
    z = F.normalize(adapted, dim=-1)
    predicted = similarity_map(z, model.projector(z))
    manual = -(
        model.target * predicted.log() + (1 - model.target) * (1 - predicted).log()
    ).mean()
    torch.testing.assert_close(loss, manual)
    # With the projector frozen to identity-free zero output except through z, gradients reach the adapter
    # only via p = projector(z): zeroing the projector's last layer cuts every adapter gradient.
    with torch.no_grad():
        model.projector[2].weight.zero_()
        model.projector[2].bias.fill_(0.1)
    model.zero_grad()
    model(windows).backward()
    assert all(p.grad is None or torch.all(p.grad == 0) for p in adapter.parameters())


def test_projector_is_not_part_of_the_adapter():
    model = SimilarityMatching(SoLaAdapter(8, hidden_dim=4), MatchingConfig())
    assert not any(name.startswith("projector") for name in model.adapter.state_dict())
    assert model.projector[0].in_features == 8 and model.projector[0].out_features == 512
