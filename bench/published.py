"""Published results on the NCF paper's own files, as plain data, for the summary's "published vs
here" table. Every number is copied from the table its ``source`` names; none is derived.

Dacrema, Boglio, Cremonesi and Jannach (TOIS 2021), "A Troubling Analysis of Reproducibility and
Progress in Recommender Systems Research", appendix Table 55: the NCF paper's leave-one-out split
and its 99 sampled negatives per test item, HR@10 and NDCG@10, every method tuned by them on a
validation split carved from the training data (Bayesian search) and then trained on all
training data. NeuMF there is He et al.'s own code (pretrained, fine-tuned with SGD).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    dataset: str  # the harness's label of the file set it was measured on
    variant: str  # the harness's variant that runs the same method
    metric: str  # the harness's column (sampled hr@10 / ndcg@10: the NCF protocol's)
    value: float
    source: str  # paper, table, setting


DACREMA_2021 = "Dacrema et al. 2021 (TOIS), Table 55: leave-one-out, 99 sampled negatives, tuned by the authors"
_TABLE_55 = {  # method: ((ML-1M HR@10, NDCG@10), (Pinterest HR@10, NDCG@10))
    "baseline-popularity": ((0.4533, 0.2542), (0.2740, 0.1409)),
    "itemknn": ((0.6694, 0.3979), (0.8762, 0.5628)),
    "rp3beta": ((0.6758, 0.4011), (0.8796, 0.5685)),
    "ials": ((0.7109, 0.4382), (0.8761, 0.5590)),
    "ease": ((0.7192, 0.4494), (0.8684, 0.5604)),
    "neumf-pre-sgd": ((0.7093, 0.4349), (0.8777, 0.5576)),
}
PUBLISHED: list[Published] = [
    Published(dataset, variant, metric, values[d][m], DACREMA_2021)
    for variant, values in _TABLE_55.items()
    for d, dataset in enumerate(("ncf-ml-1m", "ncf-pinterest-20"))
    for m, metric in enumerate(("hr@10", "ndcg@10"))
]


def published_for(dataset: str) -> list[Published]:
    return [p for p in PUBLISHED if p.dataset == dataset]
