"""The CUDA paths, where a GPU is present (CI has none; `.ci/gpu-check` runs these on a lent one)."""

import dataclasses

import pytest
import torch

from ncf_core import ModelConfig, TrainConfig
from ncf_core.data import split_for_seed, synthetic
from ncf_core.engine.optim import LazyAdam
from ncf_core.engine.seeding import seeded_model
from ncf_core.engine.train import fit, fit_stacked
from ncf_core.evaluate import Evaluator
from tests.conftest import requires_cuda

pytestmark = requires_cuda
CFG = ModelConfig(n_factors=4, mlp_layers=(16, 8), use_item_features=True)
SEEDS = [3, 4, 5]


@pytest.fixture(scope="module")
def splits():
    data = synthetic.generate(120, 80, 15, seed=3, task="ranking")
    return [split_for_seed(data, "ranking", s, n_eval_negatives=20) for s in SEEDS]


@pytest.mark.parametrize("sparse", [False, True])
def test_stacked_training_on_cuda_equals_each_seed_alone(sparse, splits):
    cfg = TrainConfig(task="ranking", epochs=2, batch_size=64, lr=0.01, sparse=sparse)
    alone = [fit(seeded_model("neumf", CFG, sp, s, "cuda", sparse), sp, cfg, "cuda", seed=s)
             for sp, s in zip(splits, SEEDS)]
    together = fit_stacked([seeded_model("neumf", CFG, sp, s, "cuda", sparse) for sp, s in zip(splits, SEEDS)],
                           splits, cfg, "cuda", seeds=SEEDS)
    for a, b in zip(alone, together):
        assert [e.train_loss for e in b.epochs] == pytest.approx([e.train_loss for e in a.epochs], rel=1e-4)


@pytest.mark.parametrize("sparse", [False, True])
def test_trials_with_their_own_negatives_and_batch_size_stack_on_cuda_as_each_alone(sparse, splits):
    """A stack's members with their own streams (Layout) on CUDA: the step counts, sparse rows and
    prefix forward on device tensors give each member's own training."""
    cfgs = [TrainConfig(task="ranking", epochs=2, batch_size=b, n_negatives=k, lr=lr, sparse=sparse)
            for k, b, lr in ((1, 64, 0.01), (4, 128, 0.03), (2, 100, 0.005))]
    split = splits[0]
    alone = [fit(seeded_model("neumf", CFG, split, 7, "cuda", sparse), split, c, "cuda", seed=7) for c in cfgs]
    together = fit_stacked([seeded_model("neumf", CFG, split, 7, "cuda", sparse) for _ in cfgs], [split] * 3, cfgs,
                           "cuda", seeds=[7] * 3)
    for a, b in zip(alone, together):
        assert [e.train_loss for e in b.epochs] == pytest.approx([e.train_loss for e in a.epochs], rel=1e-4)
        assert [e.valid_metric for e in b.epochs] == pytest.approx([e.valid_metric for e in a.epochs], abs=1e-3)


@pytest.mark.parametrize("engine", [{"compile": True}, {"compile": True, "amp": True}])
def test_cuda_graphs_and_bf16_train_like_the_eager_step(engine, splits):
    cfg = TrainConfig(task="ranking", epochs=3, batch_size=100, lr=0.01)
    eager = fit(seeded_model("neumf", CFG, splits[0], 1, "cuda"), splits[0], cfg, "cuda", seed=1)
    fast = fit(seeded_model("neumf", CFG, splits[0], 1, "cuda"), splits[0], dataclasses.replace(cfg, **engine),
               "cuda", seed=1)
    tol = 0.05 if engine.get("amp") else 1e-3
    assert [e.train_loss for e in fast.epochs] == pytest.approx([e.train_loss for e in eager.epochs], rel=tol)
    assert fast.epochs[-1].train_loss < fast.epochs[0].train_loss


def test_lazy_adam_on_cuda_with_every_row_is_adam():
    torch.manual_seed(0)
    a = torch.nn.Embedding(30, 4, sparse=True).cuda()
    b = torch.nn.Embedding(30, 4).cuda()
    b.load_state_dict(a.state_dict())
    opts = LazyAdam([a.weight], lr=0.01), torch.optim.Adam([b.weight], lr=0.01, fused=True)
    for _ in range(4):
        ids = torch.cat([torch.randperm(30), torch.randint(30, (10,))]).cuda()
        for opt, table in zip(opts, (a, b)):
            opt.zero_grad()
            table(ids).pow(2).sum().backward()
            opt.step()
    torch.testing.assert_close(a.weight, b.weight, rtol=1e-6, atol=1e-7)


def test_evaluation_on_cuda_matches_cpu(splits):
    model = seeded_model("neumf", CFG, splits[0], 2)
    on_cpu = Evaluator(splits[0], "test", "cpu", k=10).evaluate(model).metrics
    on_gpu = Evaluator(splits[0], "test", "cuda", k=10).evaluate(model.cuda()).metrics
    assert on_gpu == pytest.approx(on_cpu, abs=0.02)  # a near-tie may rank differently on the GPU
