"""Every model, through one shared set of checks (a mixin in the style of implicit's tests)."""

import dataclasses

import pytest
import torch

from ncf_core import ModelConfig, TrainConfig
from ncf_core.engine.seeding import seeded_model
from ncf_core.engine.train import fit
from ncf_core.evaluate import Evaluator
from ncf_core.models import GMF, MLP, MODELS, neumf_from_pretrained

CFG = ModelConfig(n_factors=8, mlp_layers=(32, 16, 8))


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("features", [False, True])
def test_forward_returns_one_logit_per_pair(name, features, tiny_rating, device):
    model = seeded_model(name, ModelConfig(use_item_features=features), tiny_rating, seed=0, device=device)
    users, items = torch.tensor([0, 1, 2], device=device), torch.tensor([3, 4, 5], device=device)
    out = model(users, items)
    assert out.shape == (3,) and out.dtype == torch.float32 and out.device.type == device


@pytest.mark.parametrize("name", sorted(MODELS))
def test_each_model_overfits_a_tiny_set(name, tiny_rating, device):
    """Trained long on 1.4k ratings, training RMSE must fall well below the spread of the target."""
    split = dataclasses.replace(tiny_rating, valid=tiny_rating.train)  # keep the last epochs
    model = seeded_model(name, CFG, split, seed=0, device=device)
    fit(model, split, TrainConfig(task="rating", epochs=60, batch_size=64, lr=0.01), device, seed=0)
    train_eval = Evaluator(split, "train", device).evaluate(model).metrics
    spread = float(split.train.target.std())
    assert train_eval["rmse"] < 0.5 * spread, (train_eval, spread)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_ranking_beats_chance(name, tiny_ranking, device):
    model = seeded_model(name, CFG, tiny_ranking, seed=0, device=device)
    fit(model, tiny_ranking, TrainConfig(task="ranking", epochs=15, batch_size=128, lr=0.005), device, seed=0)
    hr = Evaluator(tiny_ranking, "test", device).evaluate(model, full=False).metrics["hr@10"]
    assert hr > 10 / 21 + 0.1  # chance is 10 of 21 candidates


@pytest.mark.parametrize("alpha", [0.5, 0.2])
@pytest.mark.parametrize("features", [False, True])
def test_pretrained_neumf_is_alpha_mix_of_gmf_and_mlp(alpha, features, tiny_rating):
    cfg = ModelConfig(n_factors=8, mlp_layers=(32, 16, 8), alpha=alpha, use_item_features=features)
    gmf = seeded_model("gmf", cfg, tiny_rating, seed=1)
    mlp = seeded_model("mlp", cfg, tiny_rating, seed=2)
    train_cfg = TrainConfig(task="rating", epochs=2, batch_size=64)
    fit(gmf, tiny_rating, train_cfg, seed=1)
    fit(mlp, tiny_rating, train_cfg, seed=2)
    assert isinstance(gmf, GMF) and isinstance(mlp, MLP)
    feats = torch.from_numpy(tiny_rating.train.item_features)
    neumf = neumf_from_pretrained(gmf, mlp, cfg, tiny_rating.n_users, tiny_rating.n_items, feats)
    users = torch.randint(tiny_rating.n_users, (500,))
    items = torch.randint(tiny_rating.n_items, (500,))
    gmf.eval(), mlp.eval(), neumf.eval()
    expected = alpha * gmf(users, items) + (1 - alpha) * mlp(users, items)
    torch.testing.assert_close(neumf(users, items), expected, rtol=1e-5, atol=1e-6)
    assert expected.std() > 1e-3  # the identity is not trivially met by constant outputs


@pytest.mark.parametrize("features", [False, True])
@pytest.mark.parametrize("name", ["mf", "gmf", "mlp", "neumf"])
def test_a_models_grid_is_its_forward_on_every_pair(name, features):
    """Full ranking scores users x items at once through each model's grid: it must be the forward."""
    from ncf_core.evaluate import grid, score
    from ncf_core.models import build

    feats = torch.rand(30, 5)
    model = build(name, ModelConfig(n_factors=4, mlp_layers=(16, 8, 4), dropout=0.3, use_item_features=features),
                  20, 30, feats)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    users, items = torch.tensor([3, 0, 7, 19]), torch.arange(30)
    expected = score(model, users[:, None].expand(-1, 30), items.expand(4, -1))
    torch.testing.assert_close(grid(model, users, items), expected, rtol=1e-5, atol=1e-6)
    assert hasattr(model, "grid")
