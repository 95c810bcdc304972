"""Members: tuning trials with their own learning rates, weight decays, momenta, dropout rates and
initialisations trained as one stacked module must each be the trial trained alone."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from ncf_core import ModelConfig, TrainConfig
from ncf_core.data import split_for_seed, synthetic
from ncf_core.engine import rowadam
from ncf_core.engine.optim import FusedAdam, LazyAdam, MemberSGD, make_optimizer, plain_sgd
from ncf_core.engine.seeding import seeded_model
from ncf_core.engine.stacked import stack, unstack
from ncf_core.engine.train import fit, fit_stacked

CPU = torch.device("cpu")
SETTINGS = [dict(lr=0.01, weight_decay=0.0, momentum=0.0), dict(lr=0.003, weight_decay=1e-3, momentum=0.9),
            dict(lr=0.05, weight_decay=1e-2, momentum=0.5)]


def _models(name="mlp", **kw):
    torch.manual_seed(0)
    from ncf_core.models import build

    return [build(name, ModelConfig(n_factors=4, mlp_layers=(16, 8)), 10, 12, **kw) for _ in SETTINGS]


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_per_member_settings_step_like_separate_optimizers(optimizer):
    """Same gradients in, same weights out: each member's block steps as its own optimizer would
    (bit for bit: each member's blocks go through the same kernel with its own settings)."""
    cfgs = [TrainConfig(optimizer=optimizer, **kw) for kw in SETTINGS]
    alone = _models()
    stacked = stack(alone)
    member_opts = make_optimizer(stacked, cfgs, CPU)
    assert isinstance(member_opts[0], FusedAdam if optimizer == "adam" else MemberSGD)
    own_opts = [make_optimizer(m, c, CPU) for m, c in zip(alone, cfgs)]
    ghost = copy.deepcopy(stacked)  # holds the stacked gradients as weights, so that unstack splits them
    gen = torch.Generator().manual_seed(1)
    for _ in range(4):
        with torch.no_grad():
            for p, g in zip(stacked.parameters(), ghost.parameters()):
                p.grad = torch.randn(p.shape, generator=gen)
                g.copy_(p.grad)
        for s, (model, opts) in enumerate(zip(alone, own_opts)):
            grads = unstack(ghost, s)
            for name, p in model.named_parameters():
                p.grad = grads[name].contiguous().clone()
            for o in opts:
                o.step()
        for o in member_opts:
            o.step()
    for s, model in enumerate(alone):
        for key, value in unstack(stacked, s).items():
            assert torch.equal(value, model.state_dict()[key]), (s, key)
        assert not torch.equal(unstack(stacked, s)["out.weight"], unstack(stacked, (s + 1) % 3)["out.weight"])


@pytest.mark.parametrize("kernel", [True, False])
def test_lazy_adam_steps_each_member_with_its_own_lr_and_weight_decay(kernel, monkeypatch):
    if kernel:
        pytest.importorskip("numba")
    else:
        monkeypatch.setattr(rowadam, "AVAILABLE", False)
    cfgs = [TrainConfig(sparse=True, **{k: v for k, v in kw.items() if k != "momentum"}) for kw in SETTINGS]
    alone = _models("mf", sparse=True)
    stacked = stack(alone)
    member_opts = make_optimizer(stacked, cfgs, CPU)
    assert isinstance(member_opts[1], LazyAdam) and len(member_opts[1].member_lr) == 3
    own_opts = [make_optimizer(m, c, CPU) for m, c in zip(alone, cfgs)]
    gen = torch.Generator().manual_seed(2)
    for _ in range(4):
        users, items = torch.randint(10, (3, 16), generator=gen), torch.randint(8, (3, 16), generator=gen)
        for model, opts, u, i in zip(alone, own_opts, users, items):
            for o in opts:
                o.zero_grad()
            model(u, i).pow(2).sum().backward()
            for o in opts:
                o.step()
        for o in member_opts:
            o.zero_grad()
        stacked(users, items).pow(2).sum().backward()
        for o in member_opts:
            o.step()
    for s, model in enumerate(alone):
        for key, value in unstack(stacked, s).items():
            torch.testing.assert_close(value, model.state_dict()[key], rtol=1e-5, atol=1e-7, msg=f"{s} {key}")
        assert torch.equal(unstack(stacked, s)["user.weight"][10:], model.user.weight[10:])  # never in a batch


def _alone_and_stacked(name, models_cfg, cfgs, split, sparse, pruned):
    """Each trial trained alone, then all as one stack, trial ``pruned`` stopped after epoch 2:
    [(model, history) alone], the stacked models, their histories."""
    def prune(member, stats):
        return not (member == pruned and stats.epoch == 2)

    alone = []
    for m, (mc, c) in enumerate(zip(models_cfg, cfgs)):
        model = seeded_model(name, mc, split, 7, sparse=sparse)
        alone.append((model, fit(model, split, c, seed=7, on_epoch=lambda st, m=m: prune(m, st))))
    together = [seeded_model(name, mc, split, 7, sparse=sparse) for mc in models_cfg]
    return alone, together, fit_stacked(together, [split] * len(cfgs), cfgs, seeds=[7] * len(cfgs), on_epoch=prune)


def _each_as_alone(alone, together, histories, rel, abs_):
    """Every epoch's loss (to ``abs_``, relative) and validation value, and the final weights, of each
    stacked trial as alone."""
    for (model, history), stacked_history, stacked_model in zip(alone, histories, together):
        assert stacked_history.best_epoch == history.best_epoch
        for e1, e2 in zip(history.epochs, stacked_history.epochs, strict=True):
            assert e2.train_loss == pytest.approx(e1.train_loss, rel=abs_)
            assert e2.valid_metric == pytest.approx(e1.valid_metric, rel=rel, abs=abs_)
        for key, value in model.state_dict().items():
            torch.testing.assert_close(stacked_model.state_dict()[key], value, rtol=rel, atol=abs_, msg=key)


@pytest.fixture(scope="module")
def split():
    return split_for_seed(synthetic.generate(120, 80, 15, seed=3, task="ranking"), "ranking", 0, n_eval_negatives=20)


@pytest.mark.parametrize("own_streams", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
def test_a_stacked_trial_equals_the_trial_trained_alone_pruned_or_not(split, sparse, own_streams):
    """Three tuning trials of one structure on one split and seed: their own lr, weight decay, l2,
    dropout and initialisation (and, ``own_streams``, negatives and batch size: in float32, where
    lazy Adam takes its compiled kernel); trial 1 is pruned after epoch 2 and leaves the stack."""
    models_cfg = [ModelConfig(n_factors=4, mlp_layers=(16, 8), dropout=p, init_std=std)
                  for p, std in ((0.1, 0.01), (0.3, 0.05), (0.2, 0.02))]
    cfgs = [TrainConfig(task="ranking", epochs=4, batch_size=64, lr=lr, weight_decay=wd, l2=l2, sparse=sparse)
            for lr, wd, l2 in ((0.01, 0.0, 0.0), (0.03, 1e-4, 1e-3), (0.005, 1e-3, 0.0))]
    if sparse:
        cfgs = [dataclasses.replace(c, weight_decay=0.0) for c in cfgs]
    if own_streams:
        cfgs = [dataclasses.replace(c, n_negatives=k, batch_size=b) for c, k, b in zip(cfgs, (1, 4, 2), (64, 128, 100))]

    alone, together, histories = _alone_and_stacked("neumf", models_cfg, cfgs, split, sparse, pruned=1)
    assert [len(h.epochs) for h in histories] == [4, 2, 4]
    _each_as_alone(alone, together, histories, 1e-4, 1e-5)
    assert len({round(h.epochs[1].train_loss, 6) for h in histories}) == 3  # three trials, not one thrice


@pytest.fixture
def float64():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("name", ["mf", "gmf", "mlp", "neumf"])
def test_members_of_different_widths_train_as_each_alone(name, sparse, float64):
    """Trials that differ in factors and layer widths share a stack, padded to the widest: each
    must be the trial trained alone (its padding stays zero), also once the widest is pruned and
    the others are restacked, and with item features (NeuMF's embedding and projection hold GMF
    then MLP columns, each part padded in place). In float64, so that the only difference float
    rounding makes (bmm against mm: ~1e-5 in float32, enough to flip a rank) is far below the
    tolerance: a padded weight that moved or a misplaced part would show at ~1e-3."""
    data = synthetic.generate(120, 80, 15, seed=3, task="ranking")
    split = split_for_seed(data, "ranking", 0, n_eval_negatives=20)
    models_cfg = [ModelConfig(n_factors=f, mlp_layers=layers, dropout=p, use_item_features=True)
                  for f, layers, p in ((4, (16, 8), 0.1), (8, (32, 16), 0.3), (2, (8, 4), 0.2))]
    cfgs = [TrainConfig(task="ranking", epochs=4, batch_size=64, lr=lr, sparse=sparse) for lr in (0.01, 0.03, 0.005)]

    alone, together, histories = _alone_and_stacked(name, models_cfg, cfgs, split, sparse, pruned=1)
    assert [len(h.epochs) for h in histories] == [4, 2, 4]
    _each_as_alone(alone, together, histories, 1e-9, 1e-9)


def test_padding_sits_in_each_part_and_unstacks_to_the_members_own_shapes(split):
    """NeuMF's user table is GMF columns then MLP columns: a narrower member's parts must each be
    padded in place (not both at the end), and unstack must give back its own tensors exactly."""
    narrow, wide = (seeded_model("neumf", ModelConfig(n_factors=f, mlp_layers=(2 * h, h)), split, 0)
                    for f, h in ((2, 3), (4, 8)))
    stacked = stack([narrow, wide])
    rows = stacked.user.weight.detach().view(2, -1, 4 + 8)[0]
    torch.testing.assert_close(rows[:, :2], narrow.user.weight.detach()[:, :2])
    torch.testing.assert_close(rows[:, 4:7], narrow.user.weight.detach()[:, 2:])
    assert not rows[:, 2:4].any() and not rows[:, 7:].any()
    for s, model in enumerate((narrow, wide)):
        state = unstack(stacked, s)
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    users, items = torch.randint(split.train.n_users, (2, 30)), torch.randint(split.train.n_items, (2, 30))
    expected = torch.stack([m(u, i) for m, u, i in zip((narrow, wide), users, items)])
    torch.testing.assert_close(stacked(users, items), expected, rtol=1e-5, atol=1e-6)


def test_members_of_different_depths_or_dropout_layers_are_refused(split):
    """Padding widens layers, it cannot add one: a depth, or a dropout layer one member lacks, is refused."""
    for layers, dropouts in (([(16, 8), (16, 8, 4)], [0.1, 0.1]), ([(16, 8), (16, 8)], [0.1, 0.0])):
        models = [seeded_model("mlp", ModelConfig(mlp_layers=t, dropout=d), split, 0) for t, d in zip(layers, dropouts)]
        with pytest.raises(ValueError, match="share their layers"):
            stack(models)


def test_members_must_share_their_structure(split):
    models = [seeded_model("gmf", ModelConfig(n_factors=4), split, 0) for _ in range(2)]
    cfgs = [TrainConfig(task="ranking", epochs=1), TrainConfig(task="ranking", epochs=1, optimizer="sgd")]
    with pytest.raises(ValueError, match="optimizer"):
        fit_stacked(models, [split] * 2, cfgs, seeds=[0, 0])


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("name", ["mf", "gmf", "mlp", "neumf"])
def test_members_with_their_own_negatives_and_batch_size_train_as_each_alone(name, sparse, optimizer, float64):
    """Trials with their own negatives per positive and batch size share a stack: each takes its own
    steps on its own batches (a short last batch as alone, no steps once its examples are spent), so
    each must be the trial trained alone, also once one is pruned and the rest restacked, and whatever
    the optimizer: Adam's bias correction counts the member's own steps, lazy Adam moves the rows of
    the member's batch only, dropout draws the member's rows only. In float64 (see above): a member
    that stepped once too often, or on another's rows, would show at ~1e-3."""
    split = split_for_seed(synthetic.generate(120, 80, 15, seed=3, task="ranking"), "ranking", 0, n_eval_negatives=20)
    models_cfg = [ModelConfig(n_factors=f, mlp_layers=layers, dropout=p)
                  for f, layers, p in ((4, (16, 8), 0.1), (8, (32, 16), 0.3), (4, (16, 8), 0.2))]
    streams = ((1, 64), (4, 256), (2, 100))  # (negatives, batch size): 1588 positives -> 50, 25 and 48 steps
    sgd = optimizer == "sgd"
    cfgs = [TrainConfig(task="ranking", epochs=4, batch_size=b, n_negatives=k, lr=lr, sparse=sparse, l2=l2,
                        optimizer=optimizer, reduction="sum" if sgd else "mean")
            for (k, b), lr, l2 in zip(streams, (0.01, 0.03, 0.005) if not sgd else (1e-3, 3e-4, 2e-3),
                                      (0.0, 1e-3, 1e-2))]

    alone, together, histories = _alone_and_stacked(name, models_cfg, cfgs, split, sparse, pruned=0)
    assert [len(h.epochs) for h in histories] == [2, 4, 4]
    assert [h.epochs[0].samples for h in histories] == [len(split.train) * (1 + k) for k, _ in streams]
    _each_as_alone(alone, together, histories, 1e-9, 1e-9)
    assert len({round(h.epochs[0].train_loss, 6) for h in histories}) == 3


@pytest.mark.parametrize("stacked", [False, True])
def test_plain_sgd_steps_rows_only_and_equals_the_dense_step(split, monkeypatch, stacked):
    """Plain SGD trains with sparse embedding gradients (``plain_sgd``): it must give the dense
    step, per member with its own lr, and leave the models' tables as it found them. In float64:
    in float32 a rounding difference that flips one ReLU moves a few rows by ~lr x a gradient
    (seen on an Intel Xeon, not on an AMD EPYC), which no tolerance separates from a wrong step."""
    import ncf_core.engine.train as train

    cfgs = [TrainConfig(task="ranking", epochs=3, batch_size=64, optimizer="sgd", lr=lr, l2=l2, reduction="sum")
            for lr, l2 in ((0.01, 1e-3), (0.003, 0.0), (0.02, 1e-2))]
    assert plain_sgd(cfgs) and not plain_sgd(dataclasses.replace(cfgs[0], momentum=0.5))

    def trained(rows: bool) -> list[tuple[torch.nn.Module, list[float]]]:
        monkeypatch.setattr(train, "plain_sgd", plain_sgd if rows else (lambda c: False))
        models = [seeded_model("neumf", ModelConfig(n_factors=4, mlp_layers=(16, 8)), split, 7).double()
                  for _ in cfgs]
        if stacked:
            histories = fit_stacked(models, [split] * 3, cfgs, seeds=[7] * 3)
        else:
            histories = [fit(m, split, c, seed=7) for m, c in zip(models, cfgs)]
        assert not any(t.sparse for m in models for t in m.modules() if isinstance(t, torch.nn.Embedding))
        return [(m, [e.train_loss for e in h.epochs]) for m, h in zip(models, histories)]

    for (dense, dense_losses), (rows, row_losses) in zip(trained(False), trained(True), strict=True):
        assert row_losses == pytest.approx(dense_losses, rel=1e-12)
        for key, value in dense.state_dict().items():
            torch.testing.assert_close(rows.state_dict()[key], value, rtol=1e-10, atol=1e-14, msg=key)


def test_member_sgd_on_sparse_rows_moves_each_member_by_its_own_lr():
    alone = _models("mf", sparse=True)
    stacked = stack(alone)
    lrs = [0.1, 0.01, 0.5]
    opt = MemberSGD(list(stacked.parameters()), lr=lrs, momentum=[0.0] * 3, weight_decay=[0.0] * 3)
    before = [unstack(stacked, s)["user.weight"].clone() for s in range(3)]
    users, items = torch.tensor([[1, 1, 2]] * 3), torch.tensor([[0, 3, 3]] * 3)
    stacked(users, items).sum().backward()
    grad = stacked.user.weight.grad.to_dense().view(3, 10, -1)
    opt.step()
    for s, lr in enumerate(lrs):
        after = unstack(stacked, s)["user.weight"]
        torch.testing.assert_close(after, before[s] - lr * grad[s])
        assert torch.equal(after[3:], before[s][3:])  # rows no example touched stay put
