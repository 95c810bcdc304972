"""The seed write-up's protocol on the real anime data: GMF and NeuMF must beat the
user-mean + item-mean baseline on RMSE (the write-up's own code did not)."""

import pytest
import torch

from ncf_core import ModelConfig, TrainConfig
from ncf_core.baselines.simple import fit_baseline
from ncf_core.data import load, split_for_seed
from ncf_core.engine.seeding import seeded_model
from ncf_core.engine.train import fit
from ncf_core.evaluate import Evaluator
from tests.conftest import DATA_DIR, requires_data


@requires_data
@pytest.mark.slow
def test_gmf_and_neumf_beat_user_item_mean_on_anime():
    torch.set_num_threads(2)
    data = load("anime", data_dir=DATA_DIR, task="rating", max_rows=100_000)
    split = split_for_seed(data, "rating", seed=0)
    evaluator = Evaluator(split, "test", "cpu")
    baseline = evaluator.evaluate(fit_baseline("user-item-mean", split.train)).metrics["rmse"]
    cfg = ModelConfig(use_item_features=True)
    for name in ("gmf", "neumf"):
        model = seeded_model(name, cfg, split, seed=0)
        fit(model, split, TrainConfig(task="rating", epochs=10), seed=0)
        rmse = evaluator.evaluate(model).metrics["rmse"]
        assert rmse < baseline, (name, rmse, baseline)


@requires_data
def test_all_rows_reads_every_anime_rating_under_its_own_label():
    """The seed protocol stops at 100,000 rows; --all-rows, by name or by path, reads them all."""
    from bench.run.datasets import resolve_datasets
    from bench.run.options import RunOptions
    from bench.suites import SUITES

    for source in ("anime", str(DATA_DIR / "anime")):
        opts = RunOptions(data_dir=DATA_DIR, datasets=(source,), all_rows=True)
        [(spec, data)] = resolve_datasets(SUITES["quick"], opts, log=lambda _: None)
        assert spec.label == "anime-all-rows" and "max_rows" not in dict(spec.options)
        assert len(data) > 300_000  # 520,609 rows, 100,666 of them -1, some without item features
