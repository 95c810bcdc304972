"""The variants a suite compares, as plain data. A new variant is one line in VARIANTS."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    """``pretrained`` NeuMF starts from the GMF and MLP of the same seed, fine-tuned with ``optimizer``."""

    name: str
    model: str  # a key of ncf_core.models.MODELS
    pretrained: bool = False
    optimizer: str = "adam"


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("mf", "mf"),
        Variant("gmf", "gmf"),
        Variant("mlp", "mlp"),
        Variant("neumf", "neumf"),
        Variant("neumf-pre-adam", "neumf", pretrained=True, optimizer="adam"),
        Variant("neumf-pre-sgd", "neumf", pretrained=True, optimizer="sgd"),
    )
}
ALL_VARIANTS = tuple(VARIANTS)
PRETRAIN_BASES = ("gmf", "mlp")  # what a pretrained NeuMF starts from


def chain_rank(name: str) -> int:
    """Scheduling priority: the pretraining bases, then the pretrained variants that wait for them
    (the long chains), then everything nothing waits for."""
    chain = PRETRAIN_BASES + tuple(v for v in VARIANTS if VARIANTS[v].pretrained)
    return chain.index(name) if name in chain else len(chain)

BASELINE = "baseline-"  # a trial's variant name for a reference predictor: baseline-<ncf_core.baselines name>
