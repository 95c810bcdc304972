"""The one pretraining cache: the GMF and MLP a pretrained NeuMF starts from.

Looked up in memory (trained earlier in this process, or handed over by the unit that trained
them), then in the run folder's checkpoints, and only then trained. Seeded units and studies both
use it, keyed by data set, task, device, seed, model and a fingerprint of the settings they were
trained with, so a NeuMF never starts from a GMF or MLP trained under other settings (e.g. the
defaults instead of the tuned ones). ``pretrained_neumfs`` is the one place a pretrained NeuMF is
built.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from bench import layout
from bench.suites import DataSpec
from ncf_core import ModelConfig, TrainConfig
from ncf_core.data import Split
from ncf_core.engine.history import History
from ncf_core.engine.seeding import seeded_model
from ncf_core.engine.train import fit_group
from ncf_core.models import neumf_from_pretrained

# (models, splits, train config, device, seeds) -> one outcome per model, trained in place
Trainer = Callable[[list[torch.nn.Module], list[Split], TrainConfig, str, list[int]], list[History | Exception]]


def train_stacked(models: list[torch.nn.Module], splits: list[Split], cfg: TrainConfig, device: str,
                  seeds: list[int]) -> list[History | Exception]:
    return fit_group(models, splits, cfg, device, seeds)[0]


def fingerprint(model_cfg: ModelConfig, train_cfg: TrainConfig) -> str:
    text = json.dumps({"model": asdict(model_cfg), "train": asdict(train_cfg)}, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


class PretrainCache:
    def __init__(self, checkpoints: Path | None = None) -> None:
        self.checkpoints = Path(checkpoints) if checkpoints is not None else None
        self.memory: dict[str, torch.nn.Module] = {}

    @staticmethod
    def key(spec: DataSpec, device: str, seed: int, name: str, model_cfg: ModelConfig, train_cfg: TrainConfig) -> str:
        """A checkpoint's name: its data set (label and the data's own fingerprint: other rows under
        the same label never serve it), device, seed, model and settings."""
        settings = fingerprint(model_cfg, train_cfg) + spec.fingerprint
        digest = hashlib.sha256(settings.encode()).hexdigest()[:10] if spec.fingerprint else settings
        return f"{layout.file_label(spec.label)}-{spec.task}-{device}-seed{seed}-{name}-{digest}"

    def put(self, key: str, model: torch.nn.Module) -> None:
        """Keep a trained GMF or MLP (in memory and, with a run folder, as an atomic checkpoint)."""
        self.memory[key] = model
        if self.checkpoints is not None:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            path = self.checkpoints / f"{key}.pt"
            tmp = path.with_suffix(f".{os.getpid()}.tmp")  # workers may share the folder
            torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
            tmp.replace(path)

    def _load(self, key: str, model: torch.nn.Module) -> bool:
        path = None if self.checkpoints is None else self.checkpoints / f"{key}.pt"
        if path is None or not path.is_file():
            return False
        try:
            model.load_state_dict(torch.load(path, map_location="cpu"))
        except (RuntimeError, EOFError, OSError, ValueError):  # a damaged checkpoint: train again
            return False
        self.memory[key] = model
        return True

    def models(self, name: str, spec: DataSpec, splits: dict[int, Split], seeds: list[int], device: str,
               model_cfg: ModelConfig, train_cfg: TrainConfig,
               trainer: Trainer = train_stacked) -> dict[int, torch.nn.Module]:
        """``name`` (gmf or mlp) for each seed: from memory, checkpoint, or trained now by ``trainer``."""
        keys = {s: self.key(spec, device, s, name, model_cfg, train_cfg) for s in seeds}
        missing = []
        for s in seeds:
            if keys[s] in self.memory:
                continue
            model = seeded_model(name, model_cfg, splits[s], s, device, train_cfg.sparse)
            if not self._load(keys[s], model):
                missing.append((s, model))
        if missing:
            outcomes = trainer([m for _, m in missing], [splits[s] for s, _ in missing], train_cfg, device,
                               [s for s, _ in missing])
            for (s, model), outcome in zip(missing, outcomes):
                if isinstance(outcome, Exception):
                    raise RuntimeError(f"pretraining {name} for seed {s}: {outcome}")
                self.put(keys[s], model)
        return {s: self.memory[keys[s]] for s in seeds}


def pretrained_neumf(gmf: torch.nn.Module, mlp: torch.nn.Module, cfg: ModelConfig, split: Split,
                     sparse: bool = False) -> torch.nn.Module:
    feats = split.train.item_features
    feats_t = None if feats is None else torch.from_numpy(feats)
    return neumf_from_pretrained(gmf, mlp, cfg, split.n_users, split.n_items, feats_t, sparse)


def pretrained_neumfs(cache: PretrainCache, spec: DataSpec, splits: dict[int, Split], seeds: list[int],
                      device: str, cfgs: list[ModelConfig], sparse: bool,
                      bases: dict[str, tuple[ModelConfig, TrainConfig]]) -> list[torch.nn.Module]:
    """A NeuMF per entry of ``seeds`` (a seed may repeat: tuning trials share one), each from its seed's
    GMF and MLP as trained with ``bases`` (their own, perhaps tuned, settings), with its own config."""
    trained = {name: cache.models(name, spec, splits, sorted(set(seeds)), device, *bases[name])
               for name in bases}
    gmf, mlp = (trained[name] for name in bases)
    return [pretrained_neumf(gmf[s], mlp[s], cfg, splits[s], sparse).to(device) for s, cfg in zip(seeds, cfgs)]
