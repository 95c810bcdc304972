"""The variants a suite compares, as plain data. A new variant is one line in VARIANTS.

Besides the NCF models, the tuned reference baselines of the field's critiques (EASE^R, iALS,
ItemKNN, RP3β: ``ncf_core.baselines.REFERENCES``) are variants: selected, tuned, stored, tested and
tabled like any other, on the ranking task (they score implicit feedback only)."""

from __future__ import annotations

from dataclasses import dataclass

from ncf_core.baselines import REFERENCES
from ncf_core.tasks import task_of


@dataclass(frozen=True)
class Variant:
    """``pretrained`` NeuMF starts from the GMF and MLP of the same seed, fine-tuned with ``optimizer``.
    A ``reference`` is fitted in closed form or by its own solver, not trained by epochs."""

    name: str
    model: str  # a key of ncf_core.models.MODELS, or of ncf_core.baselines.REFERENCES for a reference
    pretrained: bool = False
    optimizer: str = "adam"
    reference: bool = False

    def applies(self, task: str) -> bool:
        """Whether the variant runs on ``task``: the references rank implicit feedback only."""
        return not self.reference or task_of(task).implicit


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("mf", "mf"),
        Variant("gmf", "gmf"),
        Variant("mlp", "mlp"),
        Variant("neumf", "neumf"),
        Variant("neumf-pre-adam", "neumf", pretrained=True, optimizer="adam"),
        Variant("neumf-pre-sgd", "neumf", pretrained=True, optimizer="sgd"),
        *(Variant(name, name, reference=True) for name in REFERENCES),
    )
}
ALL_VARIANTS = tuple(VARIANTS)
NCF_VARIANTS = tuple(v for v in VARIANTS if not VARIANTS[v].reference)
REFERENCE_VARIANTS = tuple(v for v in VARIANTS if VARIANTS[v].reference)
PRETRAIN_BASES = ("gmf", "mlp")  # what a pretrained NeuMF starts from


def chain_rank(name: str) -> int:
    """Scheduling priority: the pretraining bases, then the pretrained variants that wait for them
    (the long chains), then everything nothing waits for."""
    chain = PRETRAIN_BASES + tuple(v for v in VARIANTS if VARIANTS[v].pretrained)
    return chain.index(name) if name in chain else len(chain)

BASELINE = "baseline-"  # a trial's variant name for a reference predictor: baseline-<ncf_core.baselines name>
