"""MF's written-out step must train what autograd and the optimizer train: per model, per stacked
member with its own learning rate and l2, for both reductions, with plain SGD (rows only) and with
the dense optimizers; and stay out of the way of everything it does not cover."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import ncf_core.engine.train as train
from ncf_core import ModelConfig, TrainConfig
from ncf_core.data import split_for_seed, synthetic
from ncf_core.engine.mf_step import mf_step
from ncf_core.engine.optim import make_optimizer
from ncf_core.engine.seeding import seeded_model
from ncf_core.engine.train import fit, fit_stacked

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def split():
    return split_for_seed(synthetic.generate(120, 80, 15, seed=3, task="ranking"), "ranking", 0, n_eval_negatives=20)


OPTIMIZERS = {"sgd": {}, "adam": {"optimizer": "adam", "reduction": "mean", "weight_decay": 1e-3},
              "momentum": {"momentum": 0.9, "weight_decay": 1e-4}}


def _cfgs(reduction: str, **change) -> list[TrainConfig]:
    return [TrainConfig(**{"task": "ranking", "epochs": 3, "batch_size": 64, "optimizer": "sgd", "lr": lr, "l2": l2,
                           "reduction": reduction, **change}) for lr, l2 in ((0.05, 1e-2), (0.01, 0.0), (0.1, 1e-3))]


@pytest.mark.parametrize("reduction, optimizer", [("sum", "sgd"), ("mean", "sgd"), ("mean", "adam"),
                                                  ("mean", "momentum")])
@pytest.mark.parametrize("stacked", [False, True])
def test_the_written_out_step_trains_what_autograd_trains(split, monkeypatch, reduction, optimizer, stacked):
    """In float64, so that what is compared is the arithmetic, not float32's rounding (autograd's
    path still scores the loss in float32, ``logits.float()``: up to ~1e-7 of a weight once Adam
    has normalised the gradient, where a wrong term or scale moves it by ~1e-3)."""
    cfgs = [dataclasses.replace(c, **OPTIMIZERS[optimizer]) for c in _cfgs(reduction)]
    if optimizer == "adam":
        cfgs = [dataclasses.replace(c, lr=c.lr / 10) for c in cfgs]
    used = []

    def trained(written_out: bool) -> list[tuple[torch.nn.Module, list[float]]]:
        def step(*args):
            made = mf_step(*args) if written_out else None
            used.append(made is not None)
            return made

        monkeypatch.setattr(train, "mf_step", step)
        models = [seeded_model("mf", ModelConfig(n_factors=4, init_std=0.1), split, 7).double() for _ in cfgs]
        if stacked:
            histories = fit_stacked(models, [split] * 3, cfgs, seeds=[7] * 3)
        else:
            histories = [fit(m, split, c, seed=7) for m, c in zip(models, cfgs)]
        return [(m, [e.train_loss for e in h.epochs]) for m, h in zip(models, histories)]

    autograd, written = trained(False), trained(True)
    assert used and all(used[len(used) // 2:]) and not any(used[:len(used) // 2])
    for (ref, ref_losses), (got, got_losses) in zip(autograd, written, strict=True):
        assert got_losses == pytest.approx(ref_losses, rel=1e-6)
        for key, value in ref.state_dict().items():
            torch.testing.assert_close(got.state_dict()[key], value, rtol=1e-6, atol=1e-6, msg=key)
    before = seeded_model("mf", ModelConfig(n_factors=4, init_std=0.1), split, 7).double()
    assert not torch.equal(written[0][0].user.weight, before.user.weight)  # it trained


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_stacked_member_equals_the_member_trained_alone(split, optimizer):
    """float32, as trials run: each member's rows move by its own lr and l2 only."""
    cfgs = _cfgs("sum") if optimizer == "sgd" else _cfgs("mean", optimizer="adam")
    alone = [seeded_model("mf", ModelConfig(n_factors=8), split, 7) for _ in cfgs]
    histories = [fit(m, split, c, seed=7) for m, c in zip(alone, cfgs)]
    together = [seeded_model("mf", ModelConfig(n_factors=8), split, 7) for _ in cfgs]
    stacked = fit_stacked(together, [split] * 3, cfgs, seeds=[7] * 3)
    for a, h, t, hs in zip(alone, histories, together, stacked):
        assert [e.train_loss for e in hs.epochs] == pytest.approx([e.train_loss for e in h.epochs], rel=1e-6)
        for key, value in a.state_dict().items():
            torch.testing.assert_close(t.state_dict()[key], value, rtol=1e-5, atol=1e-7, msg=key)
    assert len({h.epochs[-1].train_loss for h in histories}) == 3


@pytest.mark.parametrize("model, change", [
    ("gmf", {}), ("mf", {"optimizer": "adam", "sparse": True}), ("mf", {"amp": True}), ("mf", {"task": "rating"}),
    ("mf", "item features"),
])
def test_anything_else_keeps_autograd(split, model, change):
    cfg = dataclasses.replace(_cfgs("sum")[0], **(change if isinstance(change, dict) else {}))
    features = torch.rand(split.n_items, 3) if change == "item features" else None
    from ncf_core.models import build

    net = build(model, ModelConfig(n_factors=4, use_item_features=features is not None), split.n_users,
                split.n_items, features, cfg.sparse)
    assert mf_step(net, make_optimizer(net, cfg, CPU), cfg, cfg.l2) is None
    plain = build("mf", ModelConfig(n_factors=4), split.n_users, split.n_items)
    base = _cfgs("sum")[0]
    assert mf_step(plain, make_optimizer(plain, base, CPU), base, base.l2) is not None
