import dataclasses

import pytest
import torch

from ncf_core import ModelConfig, TrainConfig
from ncf_core.train import Diverged, fit, seeded_model

CFG = ModelConfig(n_factors=4, mlp_layers=(16, 8))


def _run(split, seed, task="rating", **kw):
    model = seeded_model("neumf", CFG, split, seed)
    history = fit(model, split, TrainConfig(task=task, epochs=3, batch_size=64, **kw), seed=seed)
    return model, history


@pytest.mark.parametrize("task", ["rating", "ranking"])
def test_same_seed_same_numbers_on_cpu(task, tiny_rating, tiny_ranking):
    split = tiny_rating if task == "rating" else tiny_ranking
    (m1, h1), (m2, h2), (m3, h3) = (_run(split, s, task) for s in (7, 7, 8))
    assert [e.train_loss for e in h1.epochs] == [e.train_loss for e in h2.epochs]
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    assert [e.train_loss for e in h1.epochs] != [e.train_loss for e in h3.epochs]


def test_callback_sees_every_epoch_and_can_stop_training(tiny_rating):
    seen = []

    class Stop(Exception):
        pass

    def on_epoch(stats):
        seen.append(stats.epoch)
        if stats.epoch == 2:
            raise Stop

    model = seeded_model("gmf", CFG, tiny_rating, 0)
    with pytest.raises(Stop):
        fit(model, tiny_rating, TrainConfig(epochs=5), seed=0, on_epoch=on_epoch)
    assert seen == [1, 2]


def test_best_epoch_weights_are_restored(tiny_rating):
    model = seeded_model("gmf", CFG, tiny_rating, 0)
    history = fit(model, tiny_rating, TrainConfig(epochs=6, lr=0.05), seed=0)
    from ncf_core.evaluate import Evaluator

    _, rmse = Evaluator(tiny_rating, "valid", "cpu").loss_and_metric(model)
    assert rmse == pytest.approx(min(e.valid_metric for e in history.epochs), rel=1e-6)
    assert history.best_value == pytest.approx(rmse, rel=1e-6)


def test_patience_stops_early(tiny_rating):
    model = seeded_model("gmf", CFG, tiny_rating, 0)
    # a huge SGD step ruins the model after epoch 1, so validation never improves again
    history = fit(model, tiny_rating, TrainConfig(epochs=20, lr=5.0, optimizer="sgd", patience=2),
                  seed=0)
    assert len(history.epochs) < 20
    assert len(history.epochs) - history.best_epoch == 2


def test_nan_loss_is_reported_as_divergence(tiny_rating):
    model = seeded_model("mlp", CFG, tiny_rating, 0)
    with torch.no_grad():
        model.out.weight.fill_(float("nan"))
    with pytest.raises(Diverged):
        fit(model, tiny_rating, TrainConfig(epochs=2), seed=0)


def test_config_is_frozen_and_validated():
    cfg = TrainConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ValueError):
        ModelConfig(mlp_layers=(15, 8))
