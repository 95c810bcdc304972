"""Published settings, by name, for ``bench run --params NAME``: a study's result someone else ran.

Rendle, Krichene, Zhang and Anderson (RecSys 2020), "Neural Collaborative Filtering vs. Matrix
Factorization Revisited", trained MF on the NCF paper's own files with the commands their code's
README publishes (google-research, ``dot_vs_learned_similarity``); ``RENDLE_2020`` holds those
values as published. ``rendle_mf`` maps them onto this harness's MF, which is their model: a dot
product plus user, item and global biases, where their ``embedding_dim`` counts the bias column
("the first dimension will be used for the bias"), logistic loss, sampled negatives, SGD whose
every example steps with the full learning rate (``reduction="sum"``) and whose L2 term acts on
the rows an example touches (``l2``), embeddings initialised N(0, stddev).

Where this harness differs, and why: their SGD takes one example at a time; here the examples of a
batch of ``BATCH`` are summed into one step (the same expected step; at their learning rates the
difference is of second order, and one example a step would take days). Their negatives are drawn
uniformly from all items; here from the items the user has not rated in training, as the NCF code
draws them. Epochs are chosen on the validation item and the model refit (this harness's protocol),
where they report the test metrics after all 256.
"""

from __future__ import annotations

from typing import Any

RENDLE_2020: dict[str, dict[str, float | int]] = {
    "ml-1m": {"epochs": 256, "embedding_dim": 16, "regularization": 0.005, "negatives": 8,
              "learning_rate": 0.002, "stddev": 0.1},
    "pinterest-20": {"epochs": 256, "embedding_dim": 16, "regularization": 0.01, "negatives": 10,
                     "learning_rate": 0.007, "stddev": 0.1},
}
BATCH = 256


def rendle_mf(published: dict[str, float | int]) -> dict[str, dict[str, Any]]:
    """Their command-line values as this harness's MF settings (module docstring)."""
    return {
        "model": {"n_factors": int(published["embedding_dim"]) - 1, "init_std": float(published["stddev"]),
                  "use_item_features": False},
        "train": {"optimizer": "sgd", "reduction": "sum", "lr": float(published["learning_rate"]),
                  "momentum": 0.0, "weight_decay": 0.0, "l2": float(published["regularization"]),
                  "n_negatives": int(published["negatives"]), "epochs": int(published["epochs"]),
                  "patience": None, "batch_size": BATCH},
    }


PRESETS: dict[str, dict[str, Any]] = {
    f"rendle2020-{data}": {
        "source": "Rendle et al. 2020, MF on the NCF paper's files (google-research dot_vs_learned_similarity)",
        "published": values, "task": "ranking", "variants": {"mf": rendle_mf(values)},
    }
    for data, values in RENDLE_2020.items()
}
