"""Published NCF files read as the reference evaluator reads them: quirks counted, reported and scored once."""

from __future__ import annotations

import heapq
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bench.__main__ import main
from ncf_core import DataError
from ncf_core.data import load
from ncf_core.data.anomalies import PAD
from ncf_core.evaluate import Evaluator
from tests.conftest import ml1m_like

TRAIN = "".join(f"{u}\t{i}\t1\t{t}\n" for u, items in enumerate([[0, 1, 2], [0, 2, 3], [0, 1, 3], [1, 2, 3], [8, 9]])
                for t, i in enumerate(items))  # user 4 has no test row: items 8 and 9 are known
TEST = "0\t4\t1\t9\n1\t7\t1\t9\n2\t6\t1\t9\n3\t5\t1\t9\n"
# Line 2 lists its test item 7 among its negatives (as line 13 of the published ML-1M file lists 844);
# line 3 repeats negative 4, and its negative 0 is a training positive of user 2.
NEGATIVES = ("(0,4)\t5\t6\t7\t8\t9\n(1,7)\t4\t7\t5\t8\t9\n(2,6)\t4\t4\t8\t9\t0\n(3,5)\t4\t6\t7\t8\t9\n")


def _files(folder: Path, negatives: str = NEGATIVES, stem: str = "p") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.train.rating").write_text(TRAIN)
    (folder / f"{stem}.test.rating").write_text(TEST)
    (folder / f"{stem}.test.negative").write_text(negatives)
    return folder / stem


class Table(nn.Module):
    """Fixed, distinct scores: what a trained model would give, without training."""

    def __init__(self, scores: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("scores", torch.from_numpy(scores))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.scores[users, items]


def reference_hr_ndcg(scores: np.ndarray, user: int, test_item: int, negatives: list[int], k: int):
    """He et al.'s evaluate.py: negatives plus the test item in one dict keyed by item, top k by score."""
    by_item = {item: scores[user, item] for item in [*negatives, test_item]}
    top = heapq.nlargest(k, by_item, key=by_item.get)
    if test_item not in top:
        return 0.0, 0.0
    return 1.0, math.log(2) / math.log(top.index(test_item) + 2)


def test_quirky_rows_are_scored_as_the_reference_scores_them(tmp_path):
    split = load(_files(tmp_path))
    assert split.test_negatives.tolist() == [[5, 6, 7, 8, 9], [4, 5, 8, 9, PAD], [4, 8, 9, 0, PAD],
                                             [4, 6, 7, 8, 9]]
    kinds = {a.kind: (a.rows, a.occurrences, a.first_line) for a in split.anomalies}
    assert kinds == {"the test item is among the row's negatives": (1, 1, 2), "a negative is repeated": (1, 1, 3),
                     "a negative is a positive of the user in p.train.rating": (1, 1, 3)}
    # the test item of user 1 scores above one of its listed negatives and below the others: naive
    # reading with pessimistic ties would count the listed copy of 7 as a tie against it
    scores = np.random.default_rng(5).permutation(40).reshape(4, 10).astype(np.float64)
    evaluation = Evaluator(split, "test", "cpu", k=3).evaluate(Table(scores), full=False)
    raw = [line.split("\t") for line in NEGATIVES.splitlines()]
    for row, (user, item) in enumerate([(0, 4), (1, 7), (2, 6), (3, 5)]):
        negatives = [int(x) for x in raw[row][1:]]
        hr, ndcg = reference_hr_ndcg(scores, user, item, negatives, 3)
        assert evaluation.per_user["hr@3"][row] == hr
        assert evaluation.per_user["ndcg@3"][row] == pytest.approx(ndcg, abs=1e-12)


def test_untouched_rows_keep_their_metrics(tmp_path):
    clean = NEGATIVES.replace("(1,7)\t4\t7\t5", "(1,7)\t4\t6\t5").replace("(2,6)\t4\t4", "(2,6)\t4\t5")
    scores = np.random.default_rng(1).permutation(40).reshape(4, 10).astype(np.float64)
    quirky = Evaluator(load(_files(tmp_path / "a")), "test", "cpu", k=3).evaluate(Table(scores), full=False)
    plain_split = load(_files(tmp_path / "b", clean))
    plain = Evaluator(plain_split, "test", "cpu", k=3).evaluate(Table(scores), full=False)
    assert [a.kind for a in plain_split.anomalies] == ["a negative is a positive of the user in p.train.rating"]
    for name in ("hr@3", "ndcg@3"):
        assert quirky.per_user[name][[0, 3]].tolist() == plain.per_user[name][[0, 3]].tolist()


@pytest.mark.parametrize(("negatives", "message"), [
    (NEGATIVES, "line 2: negative 7 equals the test item"),
    (NEGATIVES.replace("(1,7)\t4\t7", "(1,7)\t4\t6"), "line 3: negative 4 is repeated"),
    (NEGATIVES.replace("(1,7)\t4\t7", "(1,7)\t4\t6").replace("\t4\t4\t8\t9\t0", "\t4\t5\t8\t9\t0"),
     "line 3: negative 0 is a positive of the user in p.train.rating"),
    ("(0,4)\t5\t6\n(1,7)\t4\t5\t8\n(2,6)\t4\t5\t8\n(3,5)\t4\t6\t7\n", "line 1: has 2 negatives, other lines 3"),
    (NEGATIVES.replace("(1,7)\t4\t7", "(1,7)\t4\t6").replace("(2,6)\t4\t4\t8\t9\t0", "(2,6)\t4\t10\t8\t9\t5"),
     "line 3: negative 10 is an item no rating file holds"),
])
def test_strict_files_refuse_each_quirk_naming_file_and_line(tmp_path, negatives, message):
    prefix = _files(tmp_path, negatives)
    with pytest.raises(DataError) as err:
        load(prefix, strict=True)
    assert str(err.value) == f"{prefix}.test.negative: {message} (--strict-files)"
    assert load(prefix).anomalies  # read as the reference reads it without --strict-files


def test_a_repeated_test_user_and_an_unknown_negative_are_counted_not_silent(tmp_path):
    """Both are read as the reference reads them (every test row scored on its own; a negative
    kept as a negative), and each is reported with its file and first line."""
    folder = tmp_path / "d"
    prefix = _files(folder, NEGATIVES.replace("(3,5)\t4\t6", "(3,5)\t4\t12") + "(1,6)\t4\t5\t8\t9\t0\n")
    (folder / "p.test.rating").write_text(TEST + "1\t6\t1\t9\n")
    split = load(prefix)
    lines = [a.line() for a in split.anomalies]
    assert "p.test.rating: 1 of 5 rows: a user has more than one test row (first at line 5); each row scored " \
           "on its own, as the reference scores it" in lines
    assert "p.test.negative: 1 of 5 rows: a negative is an item no rating file holds (first at line 4); kept " \
           "as a negative, scored from an embedding no training step moves" in lines
    assert split.n_items == 13 and split.test.users.tolist() == [0, 1, 2, 3, 1]
    with pytest.raises(DataError, match=r"p\.test\.rating: line 5: user 1 has a second test row \(--strict-files\)"):
        load(prefix, strict=True)


def test_a_full_run_on_quirky_files_reports_them_in_all_four_places(tmp_path, capsys):
    data = tmp_path / "data"
    ml1m_like(data / "ncf", "ml-1m")
    assert main(["data", "list", "--data-dir", str(data)]) == 0
    listed = capsys.readouterr().out
    assert "ml-1m.test.negative: 1 of 40 rows: the test item is among the row's negatives (first at line 13)" in listed
    out = tmp_path / "run"
    args = ["run", "--suite", "full", "--data-dir", str(data), "--datasets", "ncf-ml-1m", "--variants", "mf,gmf",
            "--seeds", "2", "--epochs", "1", "--out", str(out)]
    assert main(args) == 0
    terminal = capsys.readouterr().err
    assert "1 of 40 rows: a negative is repeated (first at line 5)" in terminal
    manifest = json.loads((out / "manifest.json").read_text())["file_anomalies"]["ncf-ml-1m"]
    assert any("the test item is among the row's negatives (first at line 13)" in line for line in manifest)
    summary = (out / "report" / "summary.md").read_text()
    assert summary.index("Published files of ncf-ml-1m") < summary.index("## ")
    assert "a negative is repeated (first at line 5)" in summary

    strict = tmp_path / "strict"
    assert main([*args[:-1], str(strict), "--strict-files"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {data / 'ncf' / 'ml-1m.test.negative'}: line 5: negative {_repeated(data)} is repeated " \
                  "(--strict-files)"
    assert not strict.exists()


def _repeated(data: Path) -> int:
    row = (data / "ncf" / "ml-1m.test.negative").read_text().splitlines()[4].split("\t")
    return int(row[3])


def test_pinterest_runs_end_to_end_under_the_same_rules(tmp_path):
    data = tmp_path / "data"
    ml1m_like(data / "ncf", "pinterest-20", seed=3)
    out = tmp_path / "run"
    assert main(["run", "--suite", "full", "--data-dir", str(data), "--datasets", "ncf-pinterest-20",
                 "--variants", "mf,gmf,mlp,neumf-pre-sgd", "--seeds", "2", "--epochs", "1", "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    assert {r["status"] for r in records} == {"ok"}
    assert {r["dataset"] for r in records} == {"ncf-pinterest-20"}
    assert "ncf-pinterest-20" in json.loads((out / "manifest.json").read_text())["file_anomalies"]


# The commands Rendle et al. 2020's code publishes for its MF on the NCF paper's files, as printed.
RENDLE_COMMANDS = {
    "rendle2020-ml-1m": "python mf_simple.py --data Data/ml-1m --epochs 256 --embedding_dim 16 "
                        "--regularization 0.005 --negatives 8 --learning_rate 0.002 --stddev 0.1",
    "rendle2020-pinterest-20": "python mf_simple.py --data Data/pinterest-20 --epochs 256 --embedding_dim 16 "
                               "--regularization 0.01 --negatives 10 --learning_rate 0.007 --stddev 0.1",
}


@pytest.mark.parametrize("name", sorted(RENDLE_COMMANDS))
def test_the_rendle_preset_holds_the_published_command(name, tmp_path):
    from bench.params import TunedParams

    words = RENDLE_COMMANDS[name].split()
    flags = {words[i].removeprefix("--"): words[i + 1] for i in range(2, len(words), 2)}
    mf = TunedParams.load([name]).for_variant("mf", "any-ranking-set", "ranking")
    model, train = mf["model"], mf["train"]
    # their embedding_dim counts the bias column: the dot product has one factor fewer
    assert model["n_factors"] == int(flags["embedding_dim"]) - 1
    assert model["init_std"] == float(flags["stddev"])
    assert train["l2"] == float(flags["regularization"])
    assert train["n_negatives"] == int(flags["negatives"])
    assert train["lr"] == float(flags["learning_rate"])
    assert train["epochs"] == int(flags["epochs"])
    assert (train["optimizer"], train["reduction"], train["momentum"], train["weight_decay"]) == ("sgd", "sum", 0, 0)
    assert TunedParams.load([name]).for_variant("mf", "anime", "rating") == {}  # a ranking protocol's settings


def test_a_preset_runs_mf_as_rendle_trained_it(tmp_path):
    data = tmp_path / "data"
    prefix = ml1m_like(data / "ncf", "ml-1m")
    out = tmp_path / "run"
    assert main(["run", "--suite", "full", "--datasets", str(prefix), "--variants", "mf,gmf", "--seeds", "2",
                 "--epochs", "2", "--params", "rendle2020-ml-1m", "--out", str(out)]) == 0
    records = {(r["variant"], r["seed"]): r for r in map(json.loads, (out / "trials.jsonl").read_text().splitlines())}
    mf = records[("mf", 0)]["config"]
    assert (mf["model"]["n_factors"], mf["model"]["init_std"]) == (15, 0.1)
    assert (mf["train"]["l2"], mf["train"]["lr"], mf["train"]["reduction"], mf["train"]["n_negatives"]) == \
        (0.005, 0.002, "sum", 8)
    assert mf["train"]["epochs"] == 2  # --epochs wins over the preset's 256
    assert records[("gmf", 0)]["config"]["model"]["n_factors"] == 64  # the preset is MF's only


def test_the_plan_assumes_the_epochs_rendles_mf_space_pins():
    """Before, --plan costed a full-suite MF study at the suite's epochs, though every trial of
    Rendle's space trains up to 256 epochs with patience 16."""
    from bench.search import RENDLE_EPOCHS, RENDLE_PATIENCE, pinned_training
    from bench.variants import VARIANTS

    assert pinned_training(VARIANTS["mf"], "ranking", "rendle") == {"epochs": RENDLE_EPOCHS,
                                                                   "patience": RENDLE_PATIENCE}
    assert pinned_training(VARIANTS["gmf"], "ranking", "rendle") == {}
    assert pinned_training(VARIANTS["mf"], "ranking", "ncf") == {}
    from dataclasses import replace

    from bench.estimate.work import _pinned
    from bench.suites import SUITES

    spec = SUITES["full"].datasets[2]
    assert (_pinned(spec, "mf", spec.train).epochs, _pinned(spec, "mf", spec.train).patience) == (256, 16)
    fixed = replace(spec, train=replace(spec.train, epochs=3), epochs_fixed=True)  # --epochs 3 wins
    assert (_pinned(fixed, "mf", fixed.train).epochs, _pinned(fixed, "mf", fixed.train).patience) == (3, 16)


def test_the_plan_counts_the_epochs_successive_halving_leaves():
    """Played out by Optuna's rule (a trial goes on if among the best len // 3 of its rung so far, at
    least the best), members judged in the order asked: a study's first trial goes the distance;
    one at a time at 10 epochs, the second only when it is the better (half the time); a budget of
    3 below a stack of 5 at 4 epochs: the second and third 3 more epochs when better than those
    before them (1/2, 1/3); stacks of 2 at 3 epochs: trials 1, 2, 3 go on when best so far."""
    from bench.estimate.work import study_epochs

    assert study_epochs("halving", 2, 1, 10) == pytest.approx(10 + 1 + 9 / 2, abs=0.2)
    assert study_epochs("halving", 3, 5, 4) == pytest.approx(4 + (1 + 3 / 2) + (1 + 3 / 3), abs=0.2)
    assert study_epochs("halving", 4, 2, 3) == pytest.approx(4 + 2 * (1 + 1 / 2 + 1 / 3 + 1 / 4), abs=0.2)
    assert study_epochs("halving", 1, 1, 7) == 7  # alone: never pruned
    assert study_epochs("median", 10, 4, 20) == pytest.approx(0.7 * 10 * 20)


def test_the_plan_times_a_study_at_settings_drawn_from_its_space():
    """Rendle's MF space reaches 192 factors and 10 negatives: the plan probes draws from it, the
    same draws every time, each one a valid config."""
    from bench.configs import overridden
    from bench.search import space_draws
    from bench.suites import SUITES
    from bench.variants import VARIANTS

    spec = SUITES["full"].datasets[2]
    draws = space_draws(VARIANTS["mf"], "ranking", "rendle", 4)
    assert draws == space_draws(VARIANTS["mf"], "ranking", "rendle", 4)
    assert len({(d["model"]["n_factors"], d["train"]["n_negatives"]) for d in draws}) > 1
    for d in draws:
        model, train = overridden(spec, spec.model, spec.train, d)
        assert 8 <= model.n_factors <= 192 and 1 <= train.n_negatives <= 10 and train.epochs == 256
