"""Training losses: minimal for right logits, large for wrong ones, the papers' weights, deep supervision on the
engine's real network, and a tiny network that overfits a toy case under each loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from kidneytumorseg.networks import build_network, plan_network
from kidneytumorseg_training.losses import (
    LOSSES,
    DecayingDeepSupervisionLoss,
    DeepSupervisionLoss,
    ExpLogLoss,
    RegionLoss,
    build_loss,
    deep_supervision_weights,
    regions_from_labels,
)

NAMES = ["dice_ce", "exp_log", "focal_dice", "regions"]


# Tiny networks run far slower with two threads on a busy machine (the fixture is in Testing/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _toy(shape: tuple[int, int, int] = (8, 24, 24)) -> tuple[torch.Tensor, torch.Tensor]:
    """A kidney holding a tumor and a cyst; the image is the label plus noise. Returns (1,1,*shape), (1,*shape)."""
    s, p, l_ = torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in shape), indexing="ij")
    cs, cp, cl = (n / 2 for n in shape)
    label = torch.zeros(shape, dtype=torch.long)
    label[((s - cs) / (0.44 * shape[0])) ** 2 + ((p - cp) / (0.375 * shape[1])) ** 2
          + ((l_ - cl) / (0.33 * shape[2])) ** 2 < 1] = 1
    label[(s - cs) ** 2 + (p - cp + shape[1] / 6) ** 2 + (l_ - cl) ** 2 < 9] = 2
    label[(s - cs) ** 2 + (p - cp - shape[1] / 6) ** 2 + (l_ - cl) ** 2 < 9] = 3
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    return (label.float() + 0.2 * noise)[None, None], label[None]


def _logits_for(name: str, target: torch.Tensor, margin: float) -> torch.Tensor:
    """Logits that say ``target`` with a large margin (negative margin: confidently wrong)."""
    if name == "regions":
        return margin * (2 * regions_from_labels(target) - 1)
    predicted = target if margin > 0 else (target + 1) % 4
    return abs(margin) * F.one_hot(predicted, 4).permute(0, 4, 1, 2, 3).float()


def _dice_per_channel(prediction: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    axes = (0, *range(2, prediction.ndim))
    return 2 * (prediction * reference).sum(axes) / (prediction.sum(axes) + reference.sum(axes))


@pytest.mark.parametrize("name", NAMES)
def test_right_logits_give_near_minimal_loss_and_wrong_ones_a_large_one(name: str) -> None:
    _, target = _toy()
    loss = build_loss(name)
    right = loss(_logits_for(name, target, 20.0), target)
    wrong = loss(_logits_for(name, target, -20.0), target)
    assert 0 <= float(right) < 0.03
    assert float(wrong) > 1.0


@pytest.mark.parametrize("name", NAMES)
def test_gradients_flow_to_the_logits(name: str) -> None:
    _, target = _toy()
    logits = torch.randn(1, 3 if name == "regions" else 4, *target.shape[1:], requires_grad=True)
    build_loss(name)(logits, target).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_dice_ce_matches_nnunet_formula() -> None:
    torch.manual_seed(0)
    logits, target = torch.randn(2, 4, 4, 5, 6), torch.randint(0, 4, (2, 4, 5, 6))
    probs, onehot = logits.softmax(1), F.one_hot(target, 4).permute(0, 4, 1, 2, 3).float()
    for batch_dice in (False, True):
        axes = (0, 2, 3, 4) if batch_dice else (2, 3, 4)
        tp = (probs * onehot).sum(axes)[..., 1:]
        total = (probs.sum(axes) + onehot.sum(axes))[..., 1:]
        expected = F.cross_entropy(logits, target) + 1 - ((2 * tp + 1e-5) / (total + 1e-5)).mean()
        assert torch.allclose(build_loss("dice_ce", batch_dice=batch_dice)(logits, target), expected, atol=1e-6)


def test_exp_log_uses_zhao_zeng_weights() -> None:
    """KiTS19 (Zhao & Zeng 2019, eq. 1-3): 0.4 / 0.6 Dice weights, gamma 0.3; 0.28 / 0.28 / 0.44 CE weights."""
    torch.manual_seed(1)
    logits, target = torch.randn(1, 3, 4, 4, 4), torch.randint(0, 3, (1, 4, 4, 4))
    probs, onehot = logits.softmax(1), F.one_hot(target, 3).permute(0, 4, 1, 2, 3).float()
    dice = (2 * (probs * onehot).sum((0, 2, 3, 4)) + 1) / ((probs + onehot).sum((0, 2, 3, 4)) + 1)
    nll = -logits.log_softmax(1).gather(1, target[:, None])[:, 0]
    ce = [nll[target == c].mean() for c in range(3)]
    expected = (0.4 * (-math.log(dice[1])) ** 0.3 + 0.6 * (-math.log(dice[2])) ** 0.3
                + 0.28 * ce[0] + 0.28 * ce[1] + 0.44 * ce[2])
    assert torch.allclose(ExpLogLoss()(logits, target), torch.as_tensor(expected), atol=1e-5)
    # four classes: the cyst is weighted like the tumor, weights renormalised to sum 1
    logits4, target4 = torch.randn(1, 4, 4, 4, 4), torch.randint(0, 4, (1, 4, 4, 4))
    explicit = ExpLogLoss(dice_weights=(0.4, 0.6, 0.6), ce_weights=(0.28, 0.28, 0.44, 0.44))
    assert torch.allclose(ExpLogLoss()(logits4, target4), explicit(logits4, target4))
    with pytest.raises(ValueError, match="dice_weights"):
        ExpLogLoss(dice_weights=(1.0, 1.0))(logits4, target4)


def test_regions_from_labels_are_the_kits_regions() -> None:
    regions = regions_from_labels(torch.tensor([[0, 1, 2, 3]]))
    assert regions.shape == (1, 3, 4) and regions.dtype == torch.float32
    assert regions[0].tolist() == [[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 1, 0]]
    with pytest.raises(ValueError, match="3 output channels"):
        RegionLoss()(torch.randn(1, 4, 2, 2, 2), torch.zeros(1, 2, 2, 2, dtype=torch.long))


def test_targets_are_checked() -> None:
    loss = build_loss("dice_ce")
    with pytest.raises(ValueError, match="integer"):
        loss(torch.randn(1, 4, 2, 2, 2), torch.zeros(1, 2, 2, 2))
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        loss(torch.randn(1, 4, 2, 2, 2), torch.full((1, 2, 2, 2), 4))
    with pytest.raises(ValueError, match="expected logits"):
        loss(torch.randn(1, 4, 2, 2, 2), torch.zeros(1, 2, 2, 3, dtype=torch.long))


def test_deep_supervision_weights_halve_and_normalise_with_the_coarsest_at_zero() -> None:
    weights = deep_supervision_weights(5)
    assert weights[-1] == 0.0 and math.isclose(sum(weights), 1.0)
    assert all(math.isclose(weights[i + 1], weights[i] / 2) for i in range(3))
    assert deep_supervision_weights(1) == [1.0] and deep_supervision_weights(2) == [1.0, 0.0]
    with pytest.raises(ValueError):
        deep_supervision_weights(0)


def test_deep_supervision_downsamples_the_target_by_nearest_neighbour() -> None:
    seen: list[torch.Tensor] = []

    class Recorder(torch.nn.Module):
        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            seen.append(target)
            return logits.sum() * 0

    target = torch.randint(0, 4, (2, 8, 16, 16))
    outputs = [torch.randn(2, 4, 8, 16, 16), torch.randn(2, 4, 4, 8, 8), torch.randn(2, 4, 2, 4, 4)]
    DeepSupervisionLoss(Recorder(), 3)(outputs, target)
    assert len(seen) == 2  # the coarsest level has weight 0 and is skipped
    assert torch.equal(seen[0], target) and torch.equal(seen[1], target[:, 1::2, 1::2, 1::2])
    assert seen[1].dtype == target.dtype
    with pytest.raises(ValueError, match="num_levels=3"):
        DeepSupervisionLoss(Recorder(), 2)(outputs, target)


@pytest.mark.parametrize("name", NAMES)
def test_deep_supervision_on_the_engine_network(name: str) -> None:
    torch.manual_seed(0)
    config = plan_network((16, 32, 32), (3, 2, 2), base_features=4, deep_supervision=True,
                          num_classes=3 if name == "regions" else 4)
    net = build_network(config)
    image, target = _toy((16, 32, 32))
    outputs = net(image)
    assert isinstance(outputs, list) and len(outputs) >= 2
    loss = DeepSupervisionLoss(build_loss(name), len(outputs))(outputs, target)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.any() for p in net.heads[0].parameters())
    coarsest = list(net.heads[len(outputs) - 1].parameters())
    assert all(p.grad is None or not p.grad.any() for p in coarsest)  # weight 0


@pytest.mark.parametrize("name", NAMES)
def test_sgd_overfits_a_toy_case_under_each_loss(name: str) -> None:
    """A learned model must beat chance: a tiny U-Net reaches Dice > 0.9 on every class (region) it trains on."""
    torch.manual_seed(0)
    image, target = _toy()
    net = build_network(plan_network(tuple(target.shape[1:]), (1, 1, 1), base_features=8, deep_supervision=True,
                                     num_classes=3 if name == "regions" else 4))
    loss_fn = DeepSupervisionLoss(build_loss(name), len(net(image)))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    losses = []
    for _ in range(100 if name == "regions" else 60):  # region channels overlap: slower to separate
        optimizer.zero_grad()
        loss = loss_fn(net(image), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    net.deep_supervision = False
    with torch.no_grad():
        logits = net(image)
    if name == "regions":
        prediction, reference = (logits > 0).float(), regions_from_labels(target)
    else:
        prediction = F.one_hot(logits.argmax(1), 4).permute(0, 4, 1, 2, 3)[:, 1:].float()
        reference = F.one_hot(target, 4).permute(0, 4, 1, 2, 3)[:, 1:].float()
    dice = _dice_per_channel(prediction, reference)
    assert (dice > 0.9).all(), f"{name}: Dice per class {dice.tolist()}"


def test_build_loss_names_the_valid_losses() -> None:
    assert sorted(LOSSES) == sorted(NAMES)
    assert isinstance(build_loss("exp_log", gamma_dice=0.5), ExpLogLoss)
    with pytest.raises(ValueError, match="dice_ce, exp_log, focal_dice, regions") as error:
        build_loss("dice")
    assert "'dice'" in str(error.value)


def test_decaying_deep_supervision_weights_follow_the_schedule():
    torch.manual_seed(0)
    outputs = [torch.randn(2, 4, 8, 8, 8), torch.randn(2, 4, 4, 4, 4), torch.randn(2, 4, 2, 2, 2)]
    target = torch.randint(0, 4, (2, 8, 8, 8))
    base = LOSSES["dice_ce"]()
    loss = DecayingDeepSupervisionLoss(base, 3, initial=0.33, factor=0.8, every_epochs=15)
    single = DeepSupervisionLoss(base, 1)
    levels = [base(outputs[0], target)] + [
        base(o, F.interpolate(target[:, None].float(), size=o.shape[2:], mode="nearest-exact")[:, 0].long())
        for o in outputs[1:]]
    for epoch, weight in ((0, 0.33), (14, 0.33), (15, 0.33 * 0.8), (31, 0.33 * 0.64)):
        loss.set_epoch(epoch)
        assert loss.weights == pytest.approx([1.0, weight, weight])
        expected = levels[0] + weight * (levels[1] + levels[2])
        assert float(loss(outputs, target)) == pytest.approx(float(expected), rel=1e-5)
    assert float(single(outputs[:1], target)) == pytest.approx(float(levels[0]), rel=1e-6)
    with pytest.raises(ValueError, match="factor"):
        DecayingDeepSupervisionLoss(base, 3, factor=1.5)
