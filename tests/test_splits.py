import numpy as np

from ncf_core.data import split_for_seed, synthetic
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


def test_eval_negatives_are_never_positives():
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
    train, test = leave_one_out(d, np.random.default_rng(0))
    assert train.users.tolist() == [0, 1] and test.items.tolist() == [1]
