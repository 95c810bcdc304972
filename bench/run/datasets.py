"""The run's data sets: each loaded once, under its protocol, with a label unique within the run;
a suite's set that is absent replaced by announced synthetic data; the same files never twice."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from bench.run.options import RunOptions
from bench.suites import DataSpec, Suite, default_spec, synthetic
from ncf_core import DataError
from ncf_core.data import DATASETS, Interactions, Split, available, load, resolve_path, unknown_source
from ncf_core.tasks import task_of

Log = Callable[[str], None]


def kind_of(source: str) -> str:
    """What a source holds: a registered set's name, or "ncf" for the paper's files."""
    if source in DATASETS:
        return source
    resolved = resolve_path(source)
    if resolved is None:
        raise unknown_source(source)
    return resolved[0]


def spec_for(source: str, suite: Suite) -> DataSpec:
    """A data set named on the command line, by name or path, under the suite's protocol for its kind:
    the suite's own spec for that kind, else its kind's default with the suite's model and training
    settings for that task (a path to ML-1M files in ``full`` runs at 64 factors; in ``smoke``, a
    smoke run's epochs, whatever the data)."""
    kind = kind_of(source)
    own = next((s for s in suite.datasets if s.source == kind and s.stands_in_for is None), None)
    if own is not None:
        return replace(own, source=source)
    base = default_spec(kind)
    templates = {s.task: s for s in reversed(suite.datasets)}  # the suite's first set of each task
    template = templates.get(base.task)
    if template is not None:
        base = replace(base, model=template.model, train=template.train, refit=template.refit, search=template.search)
    return replace(base, source=source)


def location(source: str, data_dir: Path | None) -> str:
    """The file that makes ``source`` a data set (its marker), resolved: one set named by its
    registered name and by its folder's path is one set."""
    if source in DATASETS:
        spec = DATASETS[source]
        if spec.folder is None:
            return source
        return str((Path(data_dir or ".") / spec.folder / spec.marker).resolve())
    kind, path = resolve_path(source) or (None, Path(source))
    marker = Path(str(path) + ".train.rating") if kind == "ncf" else path / (DATASETS[kind].marker if kind else "")
    return str(marker.resolve())


def unique_labels(specs: list[DataSpec], data_dir: Path | None = None) -> list[DataSpec]:
    """Give data sets whose paths end alike (``a/p`` and ``b/p``) labels that tell them apart;
    the same data set twice (by path, or once by name and once by path) is an error."""
    seen: dict[tuple[str, str], str] = {}
    for spec in specs:
        where = location(spec.source, data_dir)
        if (where, spec.task) in seen:
            first = seen[(where, spec.task)]
            raise DataError("--datasets", f"{spec.source} is given twice" if first == spec.source else
                            f"{first} and {spec.source} are the same data set")
        seen[(where, spec.task)] = spec.source
    out = list(specs)
    for depth in range(2, 64):
        labels = [(s.label, s.task) for s in out]
        clashes = {i for i, lab in enumerate(labels) if labels.count(lab) > 1}
        if not clashes:
            return out
        for i in clashes:
            parts = Path(out[i].source).resolve().parts if out[i].source not in DATASETS else (out[i].source,)
            out[i] = replace(out[i], name="/".join(parts[-depth:]).lstrip("/") or out[i].source)
    raise DataError("--datasets", "cannot tell the data sets apart by their paths")


def obtain(names: list[str], opts: RunOptions, log: Log) -> None:
    """Fetch the public sets among ``names`` into ``--data-dir`` (checksummed, resumable), or stop with
    one line naming the command that fetches them and what the others need."""
    from ncf_core.data.fetch import SOURCES, fetch

    public = [n for n in names if n in SOURCES]
    private = [n for n in names if n not in SOURCES]
    where = opts.data_dir
    inside = next((d for d in DATASETS.values() if where is not None and d.marker and (where / d.marker).is_file()),
                  None)
    if inside is not None:  # ../shared/data/ml-100k: one folder too deep
        raise DataError(where, f"holds {inside.marker} itself: --data-dir is the folder that holds "
                               f"{inside.folder}/ (give {where.parent})")
    if where is not None and public and not opts.offline and not opts.planning and not private:
        for name in public:
            log(f"fetching {name} into {where} ({SOURCES[name].note}); --offline refuses")
            try:
                fetch(SOURCES[name], where, mirror=opts.mirror)
            except DataError as err:
                raise DataError(name, f"could not be fetched ({err}); `python -m bench data fetch {name} "
                                      f"--data-dir {where}` retries, resuming") from None
        return
    reasons = []
    if public:
        command = f"python -m bench data fetch {' '.join(public)} --data-dir {where or 'DATA'}"
        why = ("--offline" if opts.offline else "no --data-dir to fetch into" if where is None else
               "--plan downloads nothing" if opts.planning else "not fetched")
        them = "it" if len(public) == 1 else "them"
        reasons.append(f"{', '.join(public)} not found ({why}): `{command}` downloads {them}")
    for name in private:
        folder = (where or Path("DATA")) / (DATASETS[name].folder or name)
        reasons.append(f"{name} needs a Kaggle account: put its files in {folder}")
    raise DataError(where or "--data-dir", "; ".join(reasons) + "; or leave them out with --datasets, or run "
                                           "synthetic stand-ins with --synthetic")


def resolve_datasets(suite: Suite, opts: RunOptions, log: Log) -> list[tuple[DataSpec, Interactions | Split]]:
    """Load each data set once. A registered set missing from ``--data-dir`` is fetched when it is
    public (not with ``--offline``), replaced by labelled synthetic data only when the user asks
    (``--synthetic``), and otherwise a one-line error that says how to get it."""
    specs = [spec_for(s, suite) for s in opts.datasets] if opts.datasets else list(suite.datasets)
    specs = unique_labels(specs, opts.data_dir)
    missing = [s.source for s in specs if s.source in DATASETS and not available(s.source, opts.data_dir)]
    if missing and not opts.synthetic:
        obtain(missing, opts, log)
    loaded = []
    for spec in specs:
        if spec.source in missing and opts.synthetic:
            log(f"STAND-IN: {spec.source} not found under {opts.data_dir or 'no --data-dir'}; synthetic "
                f"{spec.task} data runs in its place (--synthetic), labelled synthetic-for-{spec.source}")
            spec = replace(synthetic(spec.task, n_users=1000, n_items=400, epochs=spec.train.epochs),
                           name=f"synthetic-for-{spec.source}", stands_in_for=spec.source)
        if opts.epochs is not None:
            spec = replace(spec, train=replace(spec.train, epochs=opts.epochs), epochs_fixed=True)
        if opts.refit is not None:
            spec = replace(spec, refit=opts.refit)
        if opts.all_rows and "max_rows" in dict(spec.options):
            spec = replace(spec, options=tuple(o for o in spec.options if o[0] != "max_rows"),
                           name=f"{spec.label}-all-rows")
        data = load(spec.source, data_dir=opts.data_dir, task=spec.task, strict=opts.strict_files,
                    **dict(spec.options))
        spec = replace(spec, fingerprint=data.fingerprint())
        if isinstance(data, Split):  # the paper's files: their negatives are what the record says
            spec = replace(spec, n_eval_negatives=int(data.test_negatives.shape[1]),
                           anomalies=tuple(a.line() for a in data.anomalies))
            for line in spec.anomalies:
                log(f"{spec.label}: {line}")
        loaded.append((spec, data))
    if not loaded:
        raise DataError(opts.data_dir or "--data-dir", "no data set of the suite was found")
    return loaded


def training_pairs(spec: DataSpec, data: Interactions | Split) -> int:
    """Examples in one epoch at the protocol's defaults: a size to schedule and budget memory by."""
    rows = len(data.train) if isinstance(data, Split) else len(data)
    return rows * task_of(spec.task).examples_per_row(spec.train.n_negatives)
