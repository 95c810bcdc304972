"""Loaders: real files when present, and one-line errors on bad input."""

from pathlib import Path

import numpy as np
import pytest

from ncf_core import DataError
from ncf_core.data import anime, load, split_for_seed
from tests.conftest import DATA_DIR, requires_data


@requires_data
def test_anime_seed_protocol_real_files():
    data = load("anime", data_dir=DATA_DIR, task="rating", max_rows=100_000)
    assert 80_000 < len(data) < 100_000  # -1 rows dropped from the first 100k
    assert data.target.min() >= 0.1 and data.target.max() <= 1.0
    names = data.feature_names
    assert "log_episodes" in names and "type_TV" in names and "genre_Action" in names
    assert not any(n.startswith("genre_ ") for n in names)  # genres split and stripped
    assert data.item_features.shape == (data.n_items, len(names))


@requires_data
def test_anime_ranking_keeps_watched_but_unrated():
    rated = load("anime", data_dir=DATA_DIR, task="rating", max_rows=20_000, features=False)
    watched = load("anime", data_dir=DATA_DIR, task="ranking", max_rows=20_000, features=False)
    assert len(watched) == 20_000 > len(rated)


@requires_data
def test_movielens_100k_real_files():
    data = load("ml-100k", data_dir=DATA_DIR, features=True)
    assert (len(data), data.n_users, data.n_items) == (100_000, 943, 1682)
    assert data.item_features.shape == (1682, 19)
    split = split_for_seed(data, "ranking", 0)
    assert len(split.test) == 943 and split.test_negatives.shape == (943, 99)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_ncf_files_use_the_given_negatives(tmp_path):
    _write(tmp_path / "p.train.rating", "0\t0\t5\t1\n0\t1\t4\t2\n1\t2\t3\t1\n1\t0\t3\t2\n")
    _write(tmp_path / "p.test.rating", "0\t3\t5\t3\n1\t4\t1\t3\n")
    _write(tmp_path / "p.test.negative", "(0,3)\t5\t6\n(1,4)\t6\t5\n")
    data = load(tmp_path / "p")
    assert data.test_negatives.tolist() == [[5, 6], [6, 5]]
    split = split_for_seed(data, "ranking", 0, n_eval_negatives=2)
    assert split.test_negatives.tolist() == [[5, 6], [6, 5]]
    assert len(split.train) == 2 and len(split.valid) == 2


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"rating.csv": "user_id,anime_id\n1,2\n"}, "missing columns"),
        ({"rating.csv": "user_id,anime_id,rating\n1,2,great\n"}, "non-numeric rating 'great'"),
        ({"rating.csv": "user_id,anime_id,rating\n"}, "no rows"),
        ({"rating.csv": "user_id,anime_id,rating\n1,2,11\n"}, "not -1 or 1-10"),
        ({"rating.csv": "user_id,anime_id,rating\n1,2,-1\n"}, "no usable ratings"),
        ({}, "file not found"),
    ],
)
def test_anime_bad_input_names_file_and_problem(tmp_path, files, message):
    for name, text in files.items():
        _write(tmp_path / name, text)
    with pytest.raises(DataError) as err:
        anime.load(tmp_path, task="rating", features=False)
    text = str(err.value)
    assert message in text and "\n" not in text
    assert str(tmp_path / "rating.csv") in text


def test_ncf_unknown_user_in_test_file(tmp_path):
    _write(tmp_path / "p.train.rating", "0\t0\t5\t1\n1\t1\t4\t2\n")
    _write(tmp_path / "p.test.rating", "7\t1\t5\t3\n")
    _write(tmp_path / "p.test.negative", "(7,1)\t0\n")
    with pytest.raises(DataError, match=r"p\.test\.rating: unknown user id 7"):
        load(tmp_path / "p")


def test_ncf_negatives_must_match_test_rows(tmp_path):
    _write(tmp_path / "p.train.rating", "0\t0\t5\t1\n1\t1\t4\t2\n")
    _write(tmp_path / "p.test.rating", "0\t1\t5\t3\n")
    _write(tmp_path / "p.test.negative", "(1,1)\t0\n")
    with pytest.raises(DataError, match="do not match"):
        load(tmp_path / "p")


def test_unknown_source(tmp_path):
    with pytest.raises(DataError, match="neither a registered"):
        load(tmp_path / "nothing-here")


def test_synthetic_is_deterministic_and_sized():
    from ncf_core.data import synthetic

    a, b = synthetic.generate(300, 90, seed=4), synthetic.generate(300, 90, seed=4)
    assert np.array_equal(a.keys(), b.keys()) and np.array_equal(a.target, b.target)
    assert a.n_users == 300 and a.n_items == 90 and a.item_features.shape[0] == 90
    assert not np.array_equal(a.keys(), synthetic.generate(300, 90, seed=5).keys())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("user_id,anime_id,rating\n1.5,2,7\n1,2,8\n", "user_id 1.5 at data row 1 is not an integer id"),
        ("user_id,anime_id,rating\n1,2,7\n18446744073709551616,2,8\n", "user_id 18446744073709551616 at data row 2"),
        ("user_id,anime_id,rating\n1,inf,7\n", "anime_id inf at data row 1 is not an integer id"),
        ("user_id,anime_id,rating\n1,2,nan\n", "non-numeric rating nan at data row 1"),
    ],
)
def test_ids_are_whole_numbers_within_int64(tmp_path, text, message):
    _write(tmp_path / "rating.csv", text)
    with pytest.raises(DataError) as err:
        anime.load(tmp_path, task="rating", features=False)
    assert message in str(err.value) and "np.float64" not in str(err.value)


def test_movielens_file_shape_problems_are_named(tmp_path):
    import gzip

    folder = tmp_path / "ml"
    folder.mkdir()
    _write(folder / "u.data", "1\t2\t3\n1\t3\t4\n")
    with pytest.raises(DataError, match="expected 4 fields per line, found 3"):
        load(folder)
    (folder / "u.data").write_bytes(gzip.compress(b"1\t2\t3\t4\n"))
    with pytest.raises(DataError, match="u.data: is gzip-compressed: unpack it first"):
        load(folder)


def _ncf(tmp_path: Path, train: str, test: str, negative: str) -> Path:
    _write(tmp_path / "p.train.rating", train)
    _write(tmp_path / "p.test.rating", test)
    _write(tmp_path / "p.test.negative", negative)
    return tmp_path / "p"


TRAIN = "0\t0\t5\t1\n0\t1\t4\t2\n1\t2\t3\t1\n1\t0\t3\t2\n"


@pytest.mark.parametrize(
    ("test", "negative", "message"),
    [
        ("0\t3\t5\t3\n1\t4\t1\t3\n", "(0,3)\t5\t-3\n(1,4)\t6\t5\n", r"p\.test\.negative: negative item id -3 on"),
        ("0\t1\t5\t3\n1\t4\t1\t3\n", "(0,1)\t5\t6\n(1,4)\t6\t5\n", r"p\.test\.rating: line 1: the test pair is also"),
        ("0\t3\t5\t3\n1\t1099511627776\t1\t3\n", "(0,3)\t5\t6\n(1,1099511627776)\t6\t5\n",
         r"p\.test\.rating: item id 1099511627776 for 7 distinct items"),
    ],
)
def test_ncf_files_that_would_give_wrong_numbers_are_refused(tmp_path, test, negative, message):
    with pytest.raises(DataError, match=message):
        load(_ncf(tmp_path, TRAIN, test, negative))
