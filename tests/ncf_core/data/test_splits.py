import numpy as np
import pytest
from scipy import stats

from ncf_core.data import negatives, split_for_seed, synthetic
from ncf_core.data.interactions import Interactions
from ncf_core.data.splits import leave_one_out


def test_leave_one_out_holds_latest_and_never_leaks():
    data = synthetic.generate(200, 100, 12, seed=1, task="ranking")
    split = split_for_seed(data, "ranking", seed=5, n_eval_negatives=50)
    train_keys = set(split.train.keys())
    assert not train_keys & set(split.test.keys())
    assert not train_keys & set(split.valid.keys())
    assert not set(split.valid.keys()) & set(split.test.keys())
    assert len(np.unique(split.test.users)) == len(split.test)
    # the held-out test item is the user's latest interaction
    for u, t in zip(split.test.users[:50], split.test.timestamps[:50]):
        assert t >= data.timestamps[data.users == u].max()
    assert len(split.train) + len(split.valid) + len(split.test) == len(data)


@pytest.mark.parametrize("exhaustive_cells", [negatives.EXHAUSTIVE_CELLS, 0])  # 0: by rejection
def test_eval_negatives_are_never_positives(exhaustive_cells, monkeypatch):
    monkeypatch.setattr(negatives, "EXHAUSTIVE_CELLS", exhaustive_cells)
    data = synthetic.generate(150, 60, 20, seed=2, task="ranking")
    split = split_for_seed(data, "ranking", seed=0, n_eval_negatives=30)
    positives = set(data.keys())
    for part, neg in ((split.test, split.test_negatives), (split.valid, split.valid_negatives)):
        keys = part.users[:, None] * data.n_items + neg
        assert not positives & set(keys.ravel())
        assert all(len(set(row)) == row.size for row in neg)  # distinct per user


def test_same_seed_same_split_other_seed_other():
    data = synthetic.generate(100, 50, 10, seed=0, task="rating")
    a, b, c = (split_for_seed(data, "rating", s) for s in (3, 3, 4))
    assert np.array_equal(a.test.keys(), b.test.keys())
    assert not np.array_equal(a.test.keys(), c.test.keys())


def test_ratio_split_is_a_partition_with_validation_from_train():
    data = synthetic.generate(100, 50, 10, seed=0, task="rating")
    split = split_for_seed(data, "rating", 0)
    n = len(data)
    assert len(split.test) == round(0.2 * n)
    assert len(split.train) + len(split.valid) + len(split.test) == n
    rows = lambda d: set(zip(d.users, d.items, d.timestamps))  # noqa: E731
    assert not rows(split.train) & rows(split.test)
    assert not rows(split.valid) & rows(split.test)


def test_single_interaction_users_stay_in_train():
    d = Interactions.from_codes([0, 1, 1], [0, 0, 1], [1, 1, 1], timestamps=[5, 1, 2])
    train, test = leave_one_out(d)
    assert train.users.tolist() == [0, 1] and test.items.tolist() == [1]


def test_leave_one_out_test_item_is_the_same_for_every_seed():
    """Ties at the latest timestamp (415 of ml-100k's users have them) do not move with the seed:
    the last of them in file order is held out."""
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(60), 8)
    items = np.concatenate([rng.choice(150, 8, replace=False) for _ in range(60)])
    ts = rng.integers(0, 3, len(users))  # many ties
    data = Interactions.from_codes(users, items, np.ones(len(users)), timestamps=ts, n_items=150)
    splits = [split_for_seed(data, "ranking", s, n_eval_negatives=20) for s in range(4)]
    for sp in splits[1:]:
        assert np.array_equal(sp.test.keys(), splits[0].test.keys())
        assert np.array_equal(sp.valid.keys(), splits[0].valid.keys())
    for u, i in zip(splits[0].test.users, splits[0].test.items):
        rows = np.flatnonzero(users == u)
        latest = rows[ts[rows] == ts[rows].max()]
        assert i == items[latest[-1]]
    assert not np.array_equal(splits[0].test_negatives, splits[1].test_negatives)  # those stay seeded


def test_repeated_pairs_do_not_leak_test_positives_into_training():
    users = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 1])
    items = np.array([0, 1, 2, 3, 0, 1, 2, 3, 3, 3])  # the latest pair of each user repeated earlier
    ts = np.array([1, 2, 3, 9, 1, 2, 3, 9, 0, 0])
    data = Interactions.from_codes(users, items, np.ones(10), timestamps=ts, n_items=30)
    split = split_for_seed(data, "ranking", 0, n_eval_negatives=5)
    assert split.test.items.tolist() == [3, 3]
    assert not set(split.test.keys()) & set(split.train.keys())
    assert len(split.train) + len(split.valid) + len(split.test) == 8
    rating = Interactions.from_codes(np.tile(np.arange(20), 10), np.repeat(np.arange(10), 20) % 7,
                                     np.linspace(0.1, 1, 200))
    split = split_for_seed(rating, "rating", 0)
    assert not set(split.test.keys()) & set(split.train.keys())


@pytest.mark.parametrize(("users", "n_items", "message"), [
    (np.arange(30), 200, "split is empty"),  # every user has one interaction
    (np.repeat(np.arange(10), 5), 60, "fewer than 99 items"),
])
def test_splits_that_cannot_work_say_why(users, n_items, message):
    items = np.concatenate([np.arange(c) for c in np.bincount(users)])
    data = Interactions.from_codes(users, items, np.ones(len(users)), n_items=n_items)
    with pytest.raises(ValueError, match=message):
        split_for_seed(data, "ranking", 0)


@pytest.mark.parametrize("sampler", [negatives._exhaustive, negatives._by_rejection])
def test_eval_negatives_are_uniform_over_the_non_positives(sampler):
    n_items, positives = 20, np.array([0, 3, 4, 9, 17])  # user 0's positives
    users = np.zeros(6000, dtype=np.int64)
    out = sampler(users, positives, n_items, 3, np.random.default_rng(0), 1024)
    assert not np.isin(out, positives).any()
    assert (np.sort(out, axis=1)[:, 1:] != np.sort(out, axis=1)[:, :-1]).all()  # distinct per row
    counts = np.bincount(out.ravel(), minlength=n_items)[np.setdiff1d(np.arange(n_items), positives)]
    assert stats.chisquare(counts).pvalue > 1e-3


def test_rejection_falls_back_for_users_with_almost_every_item():
    n_items = 300
    dense = 0 * n_items + np.arange(5, n_items)  # user 0 leaves only items 0..4
    sparse = 1 * n_items + np.arange(3)
    users = np.array([0, 1, 0, 1])
    out = negatives._by_rejection(users, np.concatenate([dense, sparse]), n_items, 5,
                                  np.random.default_rng(1), 1024)
    assert sorted(out[0]) == sorted(out[2]) == [0, 1, 2, 3, 4]
    assert not np.isin(out[[1, 3]], [0, 1, 2]).any()
