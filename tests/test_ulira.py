from __future__ import annotations

import numpy as np
import torch

from oblivio.evaluation.ulira import log_likelihood_ratio, logit_confidence, ulira


def test_logit_confidence_is_log_odds_of_the_true_label() -> None:
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0], [40.0, 0.0, 0.0]])
    labels = torch.tensor([0, 2, 0])
    p = logits.double().softmax(1).gather(1, labels[:, None])[:, 0]
    expected = (p / (1 - p)).log().numpy()
    phi = logit_confidence(logits, labels)
    np.testing.assert_allclose(phi[:2], expected[:2], rtol=1e-9)
    assert np.isfinite(phi[2]) and phi[2] > 39  # p_y rounds to 1 in float64; phi does not


def shadows(rng: np.random.Generator, shift: float, n: int = 400, k: int = 8):
    """phi of n examples under k "in" and k "out" models plus a held-out pair: each example has
    its own difficulty, "in" models see it ``shift`` higher."""
    base = rng.normal(0, 2, n)
    draw = lambda s, m=k: base + s + rng.normal(0, 1, (m, n))  # noqa: E731
    return draw(shift), draw(0.0), draw(shift, 1)[0], draw(0.0, 1)[0]


def test_attack_separates_unlearned_from_retrained_when_it_can() -> None:
    rng = np.random.default_rng(0)
    phi_in, phi_out, held_in, held_out = shadows(rng, shift=2.0)
    strong = ulira(phi_in, phi_out, held_in, held_out, target=held_in)
    assert strong["ulira_auc"] > 0.85 and strong["ulira_balanced_acc"] > 0.75
    # the target is scored, not a shadow: a retrained-looking target is rarely called "in"
    assert strong["ulira_target_member_rate"] > 0.7
    assert ulira(phi_in, phi_out, held_in, held_out, target=held_out)[
        "ulira_target_member_rate"] < 0.3
    phi_in, phi_out, held_in, held_out = shadows(rng, shift=0.0)
    chance = ulira(phi_in, phi_out, held_in, held_out)
    assert abs(chance["ulira_auc"] - 0.5) < 0.08 and abs(chance["ulira_balanced_acc"] - 0.5) < 0.08


def test_likelihood_ratio_sign_and_variance_floor() -> None:
    phi_in, phi_out = np.full((4, 3), 5.0), np.zeros((4, 3))  # zero spread: floored, not 1/0
    llr = log_likelihood_ratio(phi_in, phi_out, np.array([5.0, 0.0, 2.5]))
    assert llr[0] > 0 > llr[1] and abs(llr[2]) < 1e-6 and np.isfinite(llr).all()
