import dataclasses
import shutil

import pytest
import torch

from ncf_core import ModelConfig, TrainConfig
from ncf_core.engine.history import Diverged
from ncf_core.engine.seeding import seeded_model
from ncf_core.engine.train import fit

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


def test_dropout_runs_repeat_whatever_ran_before(tiny_rating):
    """Dropout masks come from torch's global generator; a run must not depend on its state."""
    cfg_m = dataclasses.replace(CFG, dropout=0.3)
    runs = []
    for _ in range(2):
        torch.rand(1000)  # someone else used the global generator in between
        model = seeded_model("mlp", cfg_m, tiny_rating, 5)
        runs.append([e.train_loss for e in fit(model, tiny_rating, TrainConfig(epochs=2), seed=5).epochs])
    assert runs[0] == runs[1]
    before = torch.random.get_rng_state()
    fit(seeded_model("mlp", cfg_m, tiny_rating, 5), tiny_rating, TrainConfig(epochs=1), seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)  # and it is left as it was


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


def test_a_finite_blow_up_is_divergence_not_success(tiny_ranking):
    """Adam at lr 1e6 drives MF's BCE to ~3e12 without a NaN: stored as `ok` before."""
    from ncf_core.tasks import TASKS

    assert TASKS["ranking"].diverged(6e12) and TASKS["ranking"].diverged(float("inf"))
    assert not TASKS["ranking"].diverged(0.69) and not TASKS["rating"].diverged(0.25)
    model = seeded_model("mf", CFG, tiny_ranking, 0)
    with pytest.raises(Diverged, match="training loss is .*e\\+"):
        fit(model, tiny_ranking, TrainConfig(task="ranking", epochs=2, lr=1e6), seed=0)


def test_config_is_frozen_and_validated():
    cfg = TrainConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ValueError):
        ModelConfig(mlp_layers=(15, 8))
    with pytest.raises(ValueError, match="compile"):
        TrainConfig(compile=True, sparse=True)
    with pytest.raises(ValueError, match="weight_decay"):
        TrainConfig(sparse=True, optimizer="sgd", weight_decay=1e-4)


@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="torch.compile on CPU needs a C++ compiler")
@pytest.mark.parametrize("name", ["gmf", "neumf"])
def test_compiled_training_matches_eager(name, tiny_ranking):
    """torch.compile changes how a step runs, not what it computes."""
    cfg = TrainConfig(task="ranking", epochs=2, batch_size=100)
    h_eager = fit(seeded_model(name, CFG, tiny_ranking, 1), tiny_ranking, cfg, seed=1)
    h_comp = fit(seeded_model(name, CFG, tiny_ranking, 1), tiny_ranking, dataclasses.replace(cfg, compile=True),
                 seed=1)
    for a, b in zip(h_eager.epochs, h_comp.epochs, strict=True):
        assert b.train_loss == pytest.approx(a.train_loss, rel=1e-4)
        assert b.valid_metric == pytest.approx(a.valid_metric, rel=1e-3, abs=1e-4)


def test_bf16_autocast_still_learns(tiny_rating):
    cfg = TrainConfig(task="rating", epochs=4, batch_size=64, lr=0.01)
    h32 = fit(seeded_model("mlp", CFG, tiny_rating, 0), tiny_rating, cfg, seed=0)
    h16 = fit(seeded_model("mlp", CFG, tiny_rating, 0), tiny_rating, dataclasses.replace(cfg, amp=True), seed=0)
    assert h16.epochs[-1].train_loss < h16.epochs[0].train_loss
    assert h16.epochs[-1].train_loss != h32.epochs[-1].train_loss  # bf16 did run
    assert h16.best_value == pytest.approx(h32.best_value, rel=0.05)


def test_per_example_sgd_with_l2_is_rendles_update():
    """Rendle et al. 2020's mf_simple.py steps each example as w += lr * (g * other - reg * w) on the
    rows it touches, biases included (g = label - sigmoid(prediction)). With reduction="sum" a batch
    of examples on distinct rows makes exactly those steps, each from the batch's starting weights."""
    import numpy as np

    from ncf_core.data import Interactions
    from ncf_core.data.splits import Split
    from ncf_core.engine.optim import make_optimizer
    from ncf_core.engine.train import train_steps

    interactions = Interactions.from_codes(np.array([0, 1]), np.array([2, 3]), np.ones(2), n_users=3, n_items=5)
    split = Split("ranking", interactions, interactions, interactions)
    model = seeded_model("mf", ModelConfig(n_factors=3, init_std=0.1), split, 0)
    with torch.no_grad():  # non-zero biases, so that their regularisation shows
        model.user_bias.weight.uniform_(-0.2, 0.2)
        model.item_bias.weight.uniform_(-0.2, 0.2)
        model.bias.fill_(0.05)
    w = {k: v.detach().double().clone() for k, v in model.state_dict().items()}
    lr, reg = 0.05, 0.3
    cfg = TrainConfig(task="ranking", optimizer="sgd", lr=lr, l2=reg, reduction="sum", batch_size=2)
    users, items, labels = torch.tensor([0, 1]), torch.tensor([2, 4]), torch.tensor([1.0, 0.0])
    train_steps(model, make_optimizer(model, cfg, torch.device("cpu")), cfg, users, items, labels)
    want = {k: v.clone() for k, v in w.items()}
    for u, i, y in zip(users.tolist(), items.tolist(), labels.tolist()):
        pred = w["bias"][0] + w["user_bias.weight"][u, 0] + w["item_bias.weight"][i, 0] + \
            w["user.weight"][u] @ w["item.embedding.weight"][i]
        g = y - torch.sigmoid(pred)
        want["user.weight"][u] += lr * (g * w["item.embedding.weight"][i] - reg * w["user.weight"][u])
        want["item.embedding.weight"][i] += lr * (g * w["user.weight"][u] - reg * w["item.embedding.weight"][i])
        want["user_bias.weight"][u] += lr * (g - reg * w["user_bias.weight"][u])
        want["item_bias.weight"][i] += lr * (g - reg * w["item_bias.weight"][i])
        want["bias"] += lr * (g - reg * w["bias"])
    for name, value in model.state_dict().items():
        assert torch.allclose(value.double(), want[name], atol=1e-6), name
    assert not torch.allclose(model.state_dict()["bias"].double(), w["bias"])


@pytest.mark.parametrize("name, stacked, optimizer", [("gmf", False, "adam"), ("neumf", False, "adam"),
                                                     ("neumf", True, "adam"), ("mlp", True, "adam"),
                                                     ("neumf", True, "sgd")])
def test_dense_gradients_built_from_the_batchs_rows_are_autograds_bit_for_bit(tiny_ranking, monkeypatch, name,
                                                                             stacked, optimizer):
    """A dense optimizer's embedding gradients come from the rows into reused buffers (no fresh zero
    table a step): the same weights, bit for bit, as autograd's dense embedding backward, with Adam or
    momentum SGD, weight decay and dropout; and the tables are left dense."""
    from ncf_core.engine import gradients
    from ncf_core.engine.train import fit_stacked

    model_cfg = dataclasses.replace(CFG, dropout=0.2)
    cfgs = [TrainConfig(task="ranking", epochs=3, batch_size=64, lr=lr, weight_decay=1e-4, optimizer=optimizer,
                        momentum=0.9 if optimizer == "sgd" else 0.0) for lr in (0.01, 0.003)]

    densified = gradients.densified
    monkeypatch.setattr(gradients, "DENSIFY_MIN", 0)  # the tiny tables here: the rows' path all the same

    def trained(rows: bool) -> list[torch.nn.Module]:
        monkeypatch.setattr(gradients, "densified", densified if rows else (lambda model, cfg, device: False))
        models = [seeded_model(name, model_cfg, tiny_ranking, 7) for _ in cfgs]
        if stacked:
            fit_stacked(models, [tiny_ranking] * 2, cfgs, seeds=[7, 7])
        else:
            for m, c in zip(models, cfgs):
                fit(m, tiny_ranking, c, seed=7)
        assert not any(t.sparse for m in models for t in m.modules() if isinstance(t, torch.nn.Embedding))
        return models

    built, made = [], gradients.DenseFromRows
    monkeypatch.setattr(gradients, "DenseFromRows", lambda model: built.append(1) or made(model))
    for reference, got in zip(trained(False), trained(True), strict=True):
        for key, value in reference.state_dict().items():
            assert torch.equal(got.state_dict()[key], value), key
    assert built
