"""Seed stacking: S models trained as one must be S models trained alone, seed by seed."""

import copy
import dataclasses

import pytest
import torch

from ncf_core import ModelConfig, TrainConfig
from ncf_core.data import split_for_seed, synthetic
from ncf_core.engine import rowadam
from ncf_core.engine.history import Diverged
from ncf_core.engine.optim import FusedAdam, LazyAdam
from ncf_core.engine.seeding import seeded_model
from ncf_core.engine.stacked import stack, unstack
from ncf_core.engine.train import fit, fit_stacked
from ncf_core.evaluate import Evaluator
from ncf_core.models import MODELS

CFG = ModelConfig(n_factors=4, mlp_layers=(16, 8), use_item_features=True)
SEEDS = [3, 4, 5]


@pytest.fixture(scope="module")
def data():
    return {task: synthetic.generate(120, 80, 15, seed=3, task=task) for task in ("rating", "ranking")}


def _splits(data, task):
    return [split_for_seed(data[task], task, s, n_eval_negatives=20) for s in SEEDS]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_stacked_forward_and_unstack_match_each_model(name, tiny_rating):
    models = [seeded_model(name, CFG, tiny_rating, s) for s in SEEDS]
    stacked = stack(models)
    users = torch.randint(tiny_rating.n_users, (len(SEEDS), 50))
    items = torch.randint(tiny_rating.n_items, (len(SEEDS), 50))
    expected = torch.stack([m(u, i) for m, u, i in zip(models, users, items)])
    torch.testing.assert_close(stacked(users, items), expected, rtol=1e-5, atol=1e-6)
    for s, model in enumerate(models):
        state = unstack(stacked, s)
        assert state.keys() == model.state_dict().keys()
        for key, value in model.state_dict().items():
            assert torch.equal(state[key], value), key


@pytest.mark.parametrize("task", ["rating", "ranking"])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("name", ["mf", "neumf"])
def test_stacked_training_equals_training_each_seed_alone(name, task, sparse, data):
    """Same batches, negatives and steps per seed: only float rounding of bmm vs mm may differ."""
    splits = _splits(data, task)
    cfg = TrainConfig(task=task, epochs=3, batch_size=64, lr=0.01, sparse=sparse)
    alone = [seeded_model(name, CFG, sp, s, sparse=sparse) for sp, s in zip(splits, SEEDS)]
    histories = [fit(m, sp, cfg, seed=s) for m, sp, s in zip(alone, splits, SEEDS)]
    together = [seeded_model(name, CFG, sp, s, sparse=sparse) for sp, s in zip(splits, SEEDS)]
    stacked_histories = fit_stacked(together, splits, cfg, seeds=SEEDS)
    for h1, h2 in zip(histories, stacked_histories):
        assert h1.best_epoch == h2.best_epoch
        for e1, e2 in zip(h1.epochs, h2.epochs, strict=True):
            assert e2.train_loss == pytest.approx(e1.train_loss, rel=1e-4)
            assert e2.valid_metric == pytest.approx(e1.valid_metric, rel=1e-3, abs=1e-4)
    for m1, m2, sp in zip(alone, together, splits):
        for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
            torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4, msg=k)
        t1 = Evaluator(sp, "test", "cpu", k=10).evaluate(m1, full=False).metrics
        t2 = Evaluator(sp, "test", "cpu", k=10).evaluate(m2, full=False).metrics
        assert t2 == pytest.approx(t1, rel=1e-3, abs=1e-4)
    # the seeds differ from each other: stacking did not train one model three times
    assert len({round(h.epochs[-1].train_loss, 6) for h in stacked_histories}) == len(SEEDS)


@pytest.mark.parametrize("name", ["mlp", "neumf"])
def test_a_seed_with_dropout_trains_the_same_whatever_its_stack(name, data):
    """Each seed's dropout masks come from its own generator: seed 4 alone, stacked with [4, 5]
    and with [3, 4, 5] must give one result (before, masks came from the first seed's generator)."""
    cfg_m = dataclasses.replace(CFG, dropout=0.3)
    cfg = TrainConfig(task="rating", epochs=2, batch_size=64, lr=0.01)
    splits = dict(zip(SEEDS, _splits(data, "rating")))

    def run(group):
        models = [seeded_model(name, cfg_m, splits[s], s) for s in group]
        hist = fit_stacked(models, [splits[s] for s in group], cfg, seeds=group)[group.index(4)]
        return [e.valid_metric for e in hist.epochs], models[group.index(4)]

    alone_model = seeded_model(name, cfg_m, splits[4], 4)
    alone = [e.valid_metric for e in fit(alone_model, splits[4], cfg, seed=4).epochs]
    for group in ([4, 5], [3, 4, 5]):
        metrics, model = run(group)
        assert metrics == pytest.approx(alone, rel=1e-5), group
        for a, b in zip(alone_model.state_dict().values(), model.state_dict().values()):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    no_dropout = seeded_model(name, CFG, splits[4], 4)
    assert [e.valid_metric for e in fit(no_dropout, splits[4], cfg, seed=4).epochs] != pytest.approx(alone)


def test_a_diverging_seed_leaves_the_others_alone(data):
    splits = _splits(data, "rating")
    cfg = TrainConfig(task="rating", epochs=2, batch_size=64)
    models = [seeded_model("mlp", CFG, sp, s) for sp, s in zip(splits, SEEDS)]
    alone = seeded_model("mlp", CFG, splits[0], SEEDS[0])
    with torch.no_grad():
        models[1].out.weight.fill_(float("nan"))
    out = fit_stacked(models, splits, cfg, seeds=SEEDS)
    assert isinstance(out[1], Diverged)
    expected = fit(alone, splits[0], cfg, seed=SEEDS[0])
    assert [e.train_loss for e in out[0].epochs] == pytest.approx([e.train_loss for e in expected.epochs],
                                                                  rel=1e-5)
    assert all(torch.isfinite(p).all() for p in models[2].parameters())


def test_patience_runs_out_per_seed(data):
    splits = _splits(data, "rating")
    # a large step: each seed stops improving at its own epoch (3, 5 and 4 here)
    cfg = TrainConfig(task="rating", epochs=12, batch_size=64, lr=0.1, patience=2)
    alone = [fit(seeded_model("gmf", CFG, sp, s), sp, cfg, seed=s) for sp, s in zip(splits, SEEDS)]
    models = [seeded_model("gmf", CFG, sp, s) for sp, s in zip(splits, SEEDS)]
    together = fit_stacked(models, splits, cfg, seeds=SEEDS)
    assert [len(h.epochs) for h in together] == [len(h.epochs) for h in alone]
    assert len({len(h.epochs) for h in together}) > 1 and max(len(h.epochs) for h in together) < 12


def test_seeds_with_training_sets_of_different_sizes_stack_as_each_alone(tiny_rating):
    """A smaller training set runs out of batches first: its seed sits the last steps out."""
    splits = [tiny_rating, dataclasses.replace(tiny_rating, train=tiny_rating.train.subset(slice(0, 100)))]
    cfg = TrainConfig(epochs=2, batch_size=32)
    alone = [seeded_model("gmf", CFG, sp, s) for sp, s in zip(splits, (0, 1))]
    histories = [fit(m, sp, cfg, seed=s) for m, sp, s in zip(alone, splits, (0, 1))]
    together = [seeded_model("gmf", CFG, sp, s) for sp, s in zip(splits, (0, 1))]
    stacked = fit_stacked(together, splits, cfg, seeds=[0, 1])
    assert stacked[1].epochs[0].samples == 100 < stacked[0].epochs[0].samples
    for a, b, h, g in zip(alone, together, histories, stacked):
        assert [e.train_loss for e in g.epochs] == pytest.approx([e.train_loss for e in h.epochs], rel=1e-5)
        for key, value in a.state_dict().items():
            torch.testing.assert_close(b.state_dict()[key], value, rtol=1e-4, atol=1e-6, msg=key)


def _step_pair(tables, ids, step):
    a, b = tables
    ((a(ids) ** 2).sum() + (b(ids).sin() * (step + 1)).sum()).backward()


def test_lazy_adam_with_every_row_in_every_batch_is_adam():
    """Duplicate ids are summed, and tables that share ids share one ``unique``: still Adam."""
    torch.manual_seed(0)
    sparse = [torch.nn.Embedding(30, 4, sparse=True) for _ in range(2)]
    dense = [torch.nn.Embedding(30, 4) for _ in range(2)]
    for a, b in zip(sparse, dense):
        b.load_state_dict(a.state_dict())
    ours = LazyAdam([t.weight for t in sparse], lr=0.01, weight_decay=1e-3)
    ref = torch.optim.Adam([t.weight for t in dense], lr=0.01, weight_decay=1e-3)
    for step in range(6):
        ids = torch.cat([torch.randperm(30), torch.randint(30, (10,))])
        for opt, tables in ((ours, sparse), (ref, dense)):
            opt.zero_grad()
            _step_pair(tables, ids, step)
            opt.step()
    for a, b in zip(sparse, dense):
        torch.testing.assert_close(a.weight, b.weight, rtol=1e-6, atol=1e-7)


def test_lazy_adam_leaves_rows_outside_the_batch_alone():
    torch.manual_seed(0)
    tables = [torch.nn.Embedding(30, 4, sparse=True) for _ in range(2)]
    start = tables[0].weight.detach().clone()
    opt = LazyAdam([t.weight for t in tables], lr=0.01)
    for step in range(4):
        opt.zero_grad()
        _step_pair(tables, torch.randint(25, (25,)), step)  # rows 25..29 never in a batch
        opt.step()
    moved = (tables[0].weight != start).any(1)
    assert not moved[25:].any() and moved[:25].sum() >= 20
    assert (opt.state[tables[0].weight]["exp_avg"][25:] == 0).all()


def _lazy_run(steps=5):
    """Two tables that share ids (as MF's embedding and bias do), duplicates in every batch."""
    torch.manual_seed(1)
    tables = [torch.nn.Embedding(500, 12, sparse=True), torch.nn.Embedding(500, 1, sparse=True)]
    start = [t.weight.detach().clone() for t in tables]
    opt = LazyAdam([t.weight for t in tables], lr=0.05, weight_decay=1e-2)
    for step in range(steps):
        ids = torch.randint(400, (1500,))  # ~ 3 repeats per row; rows 400..499 never seen
        opt.zero_grad()
        _step_pair(tables, ids, step)
        opt.step()
    return tables, opt, start


def test_cpu_row_kernel_is_the_torch_path_of_lazy_adam(monkeypatch):
    pytest.importorskip("numba")
    kernel_tables, kernel_opt, start = _lazy_run()
    assert kernel_opt._slots, "the CPU kernel did not run"
    for slot in kernel_opt._slots.values():
        assert (slot == -1).all()  # scratch left as found, or the next step would mix rows up
    monkeypatch.setattr(rowadam, "AVAILABLE", False)
    torch_tables, torch_opt, _ = _lazy_run()
    assert not torch_opt._slots
    for a, b, a0 in zip(kernel_tables, torch_tables, start):
        torch.testing.assert_close(a.weight, b.weight, rtol=1e-5, atol=1e-7)
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(kernel_opt.state[a.weight][key], torch_opt.state[b.weight][key],
                                       rtol=1e-5, atol=1e-7)
        assert torch.equal(a.weight[400:], a0[400:]) and not torch.equal(a.weight[:400], a0[:400])
        assert (kernel_opt.state[a.weight]["exp_avg_sq"][400:] == 0).all()


def test_fused_adam_is_torch_adam_bit_for_bit():
    torch.manual_seed(0)
    ours, ref = (torch.nn.Sequential(torch.nn.Embedding(20, 6), torch.nn.Linear(6, 1)) for _ in range(2))
    ref.load_state_dict(ours.state_dict())
    opts = FusedAdam(ours.parameters(), lr=0.01, weight_decay=1e-3), \
        torch.optim.Adam(ref.parameters(), lr=0.01, weight_decay=1e-3, fused=True)
    for step in range(7):
        ids = torch.randint(20, (16,))
        for opt, model in zip(opts, (ours, ref)):
            opt.zero_grad()
            # step 4 leaves the output layer without a gradient: its step count falls behind
            (model[0](ids).sum() if step == 4 else model(ids).pow(2).sum()).backward()
            opt.step()
    for a, b in zip(ours.parameters(), ref.parameters()):
        assert torch.equal(a, b)
    steps = [float(opts[0].state[p]["step"]) for p in ours.parameters()]
    assert steps == [float(opts[1].state[p]["step"]) for p in ref.parameters()] == [7, 6, 6]


def _adam_pair():
    torch.manual_seed(0)
    ours, ref = (torch.nn.Linear(6, 3) for _ in range(2))
    ref.load_state_dict(ours.state_dict())
    return (ours, FusedAdam(ours.parameters(), lr=0.01)), (ref, torch.optim.Adam(ref.parameters(), lr=0.01,
                                                                                   fused=True))


def _steps(pairs, n, seed):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(8, 6, generator=gen)
        for model, opt in pairs:
            opt.zero_grad()
            model(x).pow(2).sum().backward()
            opt.step()


def test_fused_adam_steps_the_loaded_state_after_load_state_dict():
    """Before, the cached lists kept stepping the pre-load tensors (a step count of 3 against 6)."""
    (ours, opt), (ref, ref_opt) = _adam_pair()
    _steps([(ours, opt), (ref, ref_opt)], 3, seed=1)
    saved, saved_weights = copy.deepcopy(ref_opt.state_dict()), copy.deepcopy(ref.state_dict())
    _steps([(ours, opt), (ref, ref_opt)], 3, seed=2)
    ours.load_state_dict(saved_weights)
    ref.load_state_dict(saved_weights)
    opt.load_state_dict(copy.deepcopy(saved))  # torch keeps a loaded step tensor as it is: one copy each
    ref_opt.load_state_dict(copy.deepcopy(saved))
    _steps([(ours, opt), (ref, ref_opt)], 3, seed=3)
    assert [float(opt.state[p]["step"]) for p in ours.parameters()] == [6.0, 6.0]
    for a, b in zip(ours.parameters(), ref.parameters()):
        assert torch.equal(a, b)


def test_fused_adam_moves_parameters_added_later_and_leaves_grad_scaling_to_the_scaler():
    (ours, opt), (ref, ref_opt) = _adam_pair()
    _steps([(ours, opt), (ref, ref_opt)], 2, seed=1)
    extra = torch.nn.Parameter(torch.ones(4))
    opt.add_param_group({"params": [extra]})
    before = extra.detach().clone()
    for _ in range(2):
        opt.zero_grad()
        (ours(torch.ones(2, 6)).sum() + extra.pow(2).sum()).backward()
        opt.step()
    assert not torch.equal(extra, before)
    assert not getattr(opt, "_step_supports_amp_scaling", False)
