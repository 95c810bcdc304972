import math

import pytest
import torch

from ncf_core import metrics


def test_rating_metrics_by_hand():
    pred = torch.tensor([0.5, 0.7, 0.2, 0.9])
    target = torch.tensor([0.4, 0.8, 0.2, 0.6])
    out = metrics.rating_metrics(pred, target)
    # errors 0.1, -0.1, 0, 0.3 ; target mean 0.5 ; SST = .01+.09+.09+.01 = .2 ; SSE = .11
    assert out["mae"] == pytest.approx(0.5 / 4)
    assert out["rmse"] == pytest.approx(math.sqrt(0.11 / 4))
    assert out["r2"] == pytest.approx(1 - 0.11 / 0.2)


def test_rating_metrics_agree_with_scikit_learn():
    """An independent reference on random data, not only the hand-made case."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    gen = torch.Generator().manual_seed(1)
    target, pred = torch.rand(500, generator=gen), torch.rand(500, generator=gen)
    out = metrics.rating_metrics(pred, target)
    y, p = target.double().numpy(), pred.double().numpy()
    assert out["mae"] == pytest.approx(mean_absolute_error(y, p), rel=1e-12)
    assert out["rmse"] == pytest.approx(math.sqrt(mean_squared_error(y, p)), rel=1e-12)
    assert out["r2"] == pytest.approx(r2_score(y, p), rel=1e-12)


def test_sampled_ranking_by_hand():
    scores = torch.tensor([
        [0.9, 0.1, 0.2, 0.3],  # positive first: rank 0
        [0.5, 0.6, 0.1, 0.7],  # two negatives above: rank 2
        [0.1, 0.2, 0.3, 0.4],  # last: rank 3
        [0.5, 0.5, 0.1, 0.1],  # tie counts against the model: rank 1
    ])
    out = metrics.sampled_ranking(scores, k=2)
    assert out["hr@2"].tolist() == [1, 0, 0, 1]
    assert out["ndcg@2"].tolist() == pytest.approx([1.0, 0.0, 0.0, 1 / math.log2(3)])


def test_constant_scores_earn_nothing():
    out = metrics.sampled_ranking(torch.zeros(5, 100), k=10)
    assert out["hr@10"].sum() == 0


def test_nan_scores_rank_last():
    scores = torch.tensor([[float("nan"), 0.1, 0.2], [0.3, float("nan"), 0.1]])
    assert metrics.sampled_ranking(scores, k=1)["hr@1"].tolist() == [0.0, 1.0]
    relevant = torch.tensor([[True, False, False], [True, False, False]])
    assert metrics.full_ranking(scores, relevant, k=1)["full_hr@1"].tolist() == [0.0, 1.0]


def test_full_ranking_ties_count_against_the_model():
    """A constant scorer earns nothing; a relevant item tied with an irrelevant one comes after it."""
    relevant = torch.zeros(4, 50, dtype=torch.bool)
    relevant[torch.arange(4), torch.tensor([0, 7, 20, 49])] = True
    out = metrics.full_ranking(torch.zeros(4, 50), relevant, k=10)
    assert all(float(v.sum()) == 0 for v in out.values())
    scores = torch.tensor([[0.5, 0.5, 0.1, 0.0]])  # relevant item 1 tied with item 0: position 2
    rel = torch.tensor([[False, True, False, False]])
    assert metrics.full_ranking(scores, rel, k=1)["full_hr@1"].item() == 0.0
    assert metrics.full_ranking(scores, rel, k=2)["full_ndcg@2"].item() == pytest.approx(1 / math.log2(3))
    both = torch.tensor([[False, True, True, False]])  # two relevant tied: the earlier one first
    scores = torch.tensor([[0.0, 0.5, 0.5, 0.9]])
    out = metrics.full_ranking(scores, both, k=3)
    idcg = 1 + 1 / math.log2(3)
    assert out["full_ndcg@3"].item() == pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / idcg)


def test_full_ranking_by_hand():
    inf = float("-inf")
    scores = torch.tensor([[0.9, 0.8, 0.1, inf, 0.5], [0.1, 0.2, 0.3, 0.4, 0.5]])
    relevant = torch.tensor([[False, True, False, False, True], [True, False, False, False, False]])
    out = metrics.full_ranking(scores, relevant, k=2)
    # user 0: top2 = items 0, 1 -> one hit at position 2 of two relevant
    assert out["full_hr@2"].tolist() == [1.0, 0.0]
    assert out["full_recall@2"].tolist() == [0.5, 0.0]
    idcg = 1 + 1 / math.log2(3)
    assert out["full_ndcg@2"].tolist() == pytest.approx([(1 / math.log2(3)) / idcg, 0.0])


@pytest.mark.parametrize("chunk", [7, 1024])
def test_full_ranking_evaluation_matches_brute_force(chunk, tiny_ranking):
    """Evaluator's chunked, masked full ranking against a per-user loop over every item."""
    import numpy as np

    from ncf_core import ModelConfig
    from ncf_core.engine.seeding import seeded_model
    from ncf_core.evaluate import Evaluator, score

    split, k = tiny_ranking, 5
    model = seeded_model("gmf", ModelConfig(n_factors=4), split, 3)
    with torch.no_grad():  # spread the scores: no ties among the top k
        model.user.weight.normal_(generator=torch.Generator().manual_seed(0))
    got = Evaluator(split, "test", "cpu", k=k)._full_ranking(model, chunk=chunk)
    users = np.unique(split.test.users)
    all_scores = score(model, torch.arange(split.n_users)[:, None].expand(-1, split.n_items),
                       torch.arange(split.n_items).expand(split.n_users, -1)).numpy()
    seen = {(u, i) for part in (split.train, split.valid) for u, i in zip(part.users, part.items)}
    for row, u in enumerate(users):
        held = set(split.test.items[split.test.users == u])
        ranked = [i for i in np.argsort(-all_scores[u], kind="stable") if (u, i) not in seen][:k]
        gains = [1.0 if i in held else 0.0 for i in ranked]
        dcg = sum(g / math.log2(pos + 2) for pos, g in enumerate(gains))
        idcg = sum(1 / math.log2(pos + 2) for pos in range(min(len(held), k)))
        assert got[f"full_hr@{k}"][row] == float(any(gains))
        assert got[f"full_recall@{k}"][row] == pytest.approx(sum(gains) / len(held))
        assert got[f"full_ndcg@{k}"][row] == pytest.approx(dcg / idcg)
    assert 0 < float(got[f"full_hr@{k}"].mean()) < 1  # the check is not trivially all-miss or all-hit
