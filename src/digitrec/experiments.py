"""Experiments: a TOML file of runs -> ordinary run directories, each trained once, and one report comparing them.

A study from a seed report is a list of variants trained one after another and compared in a table
and with curves. An experiment file says so once::

    title = "Seed 003: a smaller network and L2 against overfitting"
    seeds = [0, 1, 2]                 # every run, unless it says otherwise
    [overrides]                       # recipe fields for every run
    epochs = 12
    [[run]]
    name = "original"
    model = "seed003-original"        # a preset or a registered architecture (every run names one, or a recipe)
    published = 99.31                 # the report's test accuracy, %, shown beside ours
    source = "seed 003, table 2"
    [[grid]]                          # every combination of the lists, one run each
    name = "{model}-lr{lr}"
    model = ["fast", "balanced"]
    overrides = { lr = [0.2, 0.4] }

Each run and seed trains into ``OUT/<run>/seed-<seed>``, a run directory like any other. A run
directory whose configuration, data checksum and library versions are what the file asks for is
not trained again: finished, it is kept; interrupted, it is resumed. One that differs is an error
until ``--force`` trains it again. A run that another experiment beside it has already trained to
the end, identically, is copied from there. What each run trains is decided by :func:`digitrec.plans.resolve`,
as for ``digitrec train``.
"""

from __future__ import annotations

import itertools
import math
import shutil
import statistics
import string
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from digitrec import plans, rundir
from digitrec.errors import DigitrecError
from digitrec.plans import Plan
from digitrec.recipes import Recipe, epochs_text

if TYPE_CHECKING:
    from digitrec.distributed import Group

TOP_KEYS = {"title", "description", "seeds", "data", "test", "watch", "overrides", "run", "grid", "notes"}
RUN_KEYS = {"name", "model", "recipe", "arguments", "overrides", "seeds", "data", "watch", "published", "published_on", "source"}
GRID_KEYS = RUN_KEYS - {"published", "published_on", "source"}
PUBLISHED_ON = ("test", "validation")
SAFE_NAME = set(string.ascii_letters + string.digits + "-_.")
# with the data's checksum and the library versions, what makes a run the same
IDENTITY = ("model", "arguments", "recipe", "data", "seed", "watch")


@dataclass(frozen=True)
class RunSpec:
    """One named variant of an experiment: what it trains, on which data, with which seeds, and the figure it is compared with."""

    name: str
    model: str
    plan: Plan  # its data too: the file's, or the model's own
    seeds: tuple[int, ...]
    published: float | None = None  # a report's test accuracy in %, shown beside ours
    source: str = ""  # where that figure comes from
    published_on: str = "test"  # the figure is a test accuracy, or a validation accuracy after the last epoch
    watch: str | None = None  # data whose test part is measured every epoch for the curves, choosing nothing

    @property
    def data(self) -> str:
        return self.plan.data


@dataclass(frozen=True)
class Experiment:
    path: Path
    title: str
    description: str
    test: str  # the data whose test part every run is evaluated on
    runs: tuple[RunSpec, ...]
    notes: str = ""

    @property
    def name(self) -> str:
        return self.path.stem


@dataclass
class Planned:
    """A run and seed of an experiment, where it trains, and what will happen to it."""

    spec: RunSpec
    seed: int
    run_dir: Path
    status: str  # "new", "finished", "resume", "differs" or "copy"
    done: int = 0  # epochs already trained
    detail: str = ""  # for "differs": what differs
    origin: Path | None = None  # for "copy": the identical finished run of another experiment

    @property
    def label(self) -> str:
        return f"{self.spec.name}/seed-{self.seed}"


# --- the file ------------------------------------------------------------------------------------

def load(path: str | Path) -> Experiment:
    """Read and check an experiment file; every problem is a one-line error naming the file and the key."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DigitrecError("no such experiment file", source) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DigitrecError(f"unreadable experiment file ({e.__class__.__name__}: {e})", source) from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise DigitrecError(f"not valid TOML ({e})", source) from None
    _known(table, TOP_KEYS, source, "")
    seeds = _seeds(table.get("seeds", [0]), source, "seeds")
    data = _data(table["data"], source, "data") if "data" in table else None  # None: each model's own (MNIST but for Kaggle's seeds)
    common = _table(table.get("overrides", {}), source, "overrides")
    watch = _data(table["watch"], source, "watch") if "watch" in table else None
    runs: list[RunSpec] = []
    for index, entry in enumerate(_tables(table.get("run", []), source, "run")):
        runs.append(_run(entry, source, f"run[{index}]", seeds, data, watch, common))
    for index, entry in enumerate(_tables(table.get("grid", []), source, "grid")):
        runs += _grid(entry, source, f"grid[{index}]", seeds, data, watch, common)
    if not runs:
        raise DigitrecError("no runs: give at least one [[run]] or [[grid]]", source)
    names = [run.name for run in runs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise DigitrecError(f"two runs are named {twice[0]!r}; every run needs its own name", source)
    texts = {key: _text(table.get(key, default), source, key)
             for key, default in (("title", path.stem), ("description", ""), ("notes", ""))}
    test = _data(table.get("test", "mnist"), source, "test")
    return Experiment(path, texts["title"], texts["description"], test, tuple(runs), texts["notes"])


def _known(table: dict[str, Any], keys: set[str], source: str, where: str) -> None:
    unknown = sorted(set(table) - keys)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise DigitrecError(f"unknown key {key!r}; expected {', '.join(sorted(keys))}", source)


def _text(value: Any, source: str, key: str) -> str:
    if not isinstance(value, str):
        raise DigitrecError(f"{key!r} must be a string, not {_kind(value)}", source)
    return value


def _data(value: Any, source: str, key: str) -> str:
    """A data spec, checked now (its kind, and that its file is there), so that a typo is named by its key before any training."""
    from digitrec.data import source_of

    try:
        source_of(_text(value, source, key))
    except DigitrecError as e:
        raise DigitrecError(f"{key!r} = {value!r}: {e.reason}", source) from None
    return value


def _table(value: Any, source: str, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DigitrecError(f"{key!r} must be a table, not {_kind(value)}", source)
    return value


def _tables(value: Any, source: str, key: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise DigitrecError(f"{key!r} must be an array of tables ([[{key}]]), not {_kind(value)}", source)
    return value


def _seeds(value: Any, source: str, key: str) -> tuple[int, ...]:
    if (not isinstance(value, list) or not value
            or not all(isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 for seed in value)):
        raise DigitrecError(f"{key!r} must be a list of whole numbers >= 0, like [0, 1, 2]", source)
    if len(set(value)) != len(value):
        raise DigitrecError(f"{key!r} names a seed twice", source)
    return tuple(value)


def _kind(value: Any) -> str:
    return {str: "a string", int: "a number", float: "a number", bool: "a boolean", list: "an array", dict: "a table"}.get(
        type(value), type(value).__name__)


def _run(entry: dict[str, Any], source: str, where: str, seeds: tuple[int, ...], data: str | None, watch: str | None,
         common: dict[str, Any]) -> RunSpec:
    _known(entry, RUN_KEYS, source, where)
    if "name" not in entry:
        raise DigitrecError(f"'{where}.name' is missing: every run needs a name (its folder)", source)
    name = _text(entry["name"], source, f"{where}.name")
    if not name or not set(name) <= SAFE_NAME or name.startswith("."):
        raise DigitrecError(f"'{where}.name' {name!r} must be letters, digits, '-', '_' or '.' (it names a folder)", source)
    if "model" not in entry and "recipe" not in entry:  # never a silent default: a study says what each run trains
        raise DigitrecError(f"'{where}.model' is missing: say what {name!r} trains (a preset such as {plans.DEFAULT!r}, "
                            "or an architecture: digitrec models lists them)", source)
    recipe = entry.get("recipe")
    if recipe is not None:
        recipe = _text(recipe, source, f"{where}.recipe")
    model = _text(entry["model"], source, f"{where}.model") if "model" in entry else None
    arguments = _table(entry["arguments"], source, f"{where}.arguments") if "arguments" in entry else None
    overrides = {**common, **_table(entry.get("overrides", {}), source, f"{where}.overrides")}
    run_data = _data(entry["data"], source, f"{where}.data") if "data" in entry else data
    published = entry.get("published")
    if published is not None and (isinstance(published, bool) or not isinstance(published, int | float) or not 0 <= published <= 100):
        raise DigitrecError(f"'{where}.published' must be an accuracy in % (0-100), not {published!r}", source)
    published_on = _text(entry.get("published_on", "test"), source, f"{where}.published_on")
    if published_on not in PUBLISHED_ON:
        raise DigitrecError(f"'{where}.published_on' must be test or validation, not {published_on!r}", source)
    try:
        plan = plans.resolve(model, recipe, data=run_data, arguments=arguments, **overrides)
    except DigitrecError as e:
        raise DigitrecError(f"'{where}' ({name}): {e}", source) from None
    except TypeError as e:  # a recipe field given a value of the wrong type
        raise DigitrecError(f"'{where}' ({name}): {e}", source) from None
    return RunSpec(name, model or recipe, plan, _seeds(entry.get("seeds", list(seeds)), source, f"{where}.seeds"),
                   float(published) if published is not None else None, _text(entry.get("source", ""), source, f"{where}.source"),
                   published_on, _data(entry["watch"], source, f"{where}.watch") if "watch" in entry else watch)


def _grid(entry: dict[str, Any], source: str, where: str, seeds: tuple[int, ...], data: str | None, watch: str | None,
          common: dict[str, Any]) -> list[RunSpec]:
    """Every combination of the grid's lists (``model``, ``recipe``, ``data`` and the overrides' values), one run each."""
    _known(entry, GRID_KEYS, source, where)
    axes: dict[str, list[Any]] = {}
    for key in ("model", "recipe", "data"):
        if key in entry:
            axes[key] = entry[key] if isinstance(entry[key], list) else [entry[key]]
    for key, values in _table(entry.get("overrides", {}), source, f"{where}.overrides").items():
        axes[f"overrides.{key}"] = values if isinstance(values, list) else [values]
    empty = [key for key, values in axes.items() if not values]
    if empty:
        raise DigitrecError(f"'{where}.{empty[0]}' is an empty list: the grid would hold no runs", source)
    template = _text(entry.get("name", "-".join(f"{{{key.removeprefix('overrides.')}}}" for key in axes) or "run"), source, f"{where}.name")
    runs = []
    for combination in itertools.product(*axes.values()):
        chosen = dict(zip(axes, combination, strict=True))
        fields = {key.removeprefix("overrides."): value for key, value in chosen.items()}
        try:
            name = template.format(**fields)
        except (KeyError, IndexError, ValueError) as e:
            raise DigitrecError(f"'{where}.name' {template!r} names {e}, which the grid does not vary", source) from None
        run = {"name": name, **{key: value for key, value in chosen.items() if not key.startswith("overrides.")},
               "overrides": {key.removeprefix("overrides."): value for key, value in chosen.items() if key.startswith("overrides.")}}
        for key in ("arguments", "seeds", "watch"):
            if key in entry:
                run[key] = entry[key]
        runs.append(_run(run, source, where, seeds, data, watch, common))
    return runs


# --- what is there, what will run --------------------------------------------------------------------

def plan(experiment: Experiment, out: str | Path) -> list[Planned]:
    """Each run and seed of ``experiment`` under ``out``, with what is already there: new, finished, to resume, or different.

    A new run that another experiment beside ``out`` has already trained, identically and to the end,
    is to be copied from there rather than trained again (status "copy", ``origin`` its directory).
    """
    from digitrec import checkpoint, training  # PyTorch: the library versions, and reading saved training state

    versions = checkpoint.library_versions()
    checksums: dict[str, str] = {}

    def checksum(data_spec: str) -> str:
        if data_spec not in checksums:
            from digitrec import data

            checksums[data_spec] = data.load(data_spec, "train").checksum
        return checksums[data_spec]

    def differences(run_dir: Path, spec: RunSpec, seed: int) -> list[str]:
        wanted = {"model": spec.plan.model, "arguments": spec.plan.arguments, "recipe": spec.plan.recipe,
                  "data": spec.data, "seed": seed, "watch": spec.watch}
        config = rundir.read_config(run_dir)
        differs = [key for key in IDENTITY if _recorded(config, key) != wanted[key]]
        if config.get("versions") != versions:
            differs.append(f"library versions ({_versions(config.get('versions'))} -> {_versions(versions)})")
        if not differs and (run_dir / rundir.FINAL).is_file():
            trained_on = checkpoint.read_metadata(run_dir / rundir.FINAL).get("data", {}).get("checksum")
            if trained_on != checksum(spec.data):
                differs.append("the data's checksum")
        return differs

    def trained_elsewhere(spec: RunSpec, seed: int) -> tuple[Path, int] | None:
        """A finished identical run of another experiment beside ``out``, and its epochs."""
        here = Path(out).resolve()
        for candidate in sorted(Path(out).parent.glob(f"*/*/seed-{seed}")):
            if (candidate.parents[1].resolve() != here and rundir.holds_run(candidate) and (candidate / rundir.FINAL).is_file()
                    and not differences(candidate, spec, seed)):
                epochs, finished = training.progress(candidate)
                if finished:
                    return candidate, epochs
        return None

    planned = []
    for spec in experiment.runs:
        for seed in spec.seeds:
            run_dir = Path(out) / spec.name / f"seed-{seed}"
            item = Planned(spec, seed, run_dir, "new")
            if rundir.holds_run(run_dir):
                differs = differences(run_dir, spec, seed)
                if differs:
                    item.status, item.detail = "differs", ", ".join(differs)
                else:
                    item.done, finished = training.progress(run_dir)
                    item.status = "finished" if finished else "resume"
            elif run_dir.is_dir() and any(run_dir.iterdir()):
                item.status, item.detail = "differs", "the folder holds files but no run"
            elif (found := trained_elsewhere(spec, seed)) is not None:
                item.status, (item.origin, item.done) = "copy", found
            planned.append(item)
    return planned


def _recorded(config: dict[str, Any], key: str) -> Any:
    """What a run's config.json says of ``key``; its recipe read as today's Recipe, so fields added since take their defaults."""
    if key != "recipe":
        return config.get(key)
    try:
        return Recipe.from_dict(config["recipe"])
    except (DigitrecError, KeyError, TypeError):
        return None


def _versions(versions: Any) -> str:
    return " ".join(f"{k} {v}" for k, v in versions.items()) if isinstance(versions, dict) else "none recorded"


def estimate_seconds(planned: list[Planned], measure: Callable[[Plan, str], float] | None = None) -> dict[str, float]:
    """Seconds each run still needs, from the epochs it has timed itself or a few steps measured on this machine."""
    from digitrec import training

    measure = measure or training.seconds_per_epoch
    per_epoch: dict[str, float] = {}
    estimates = {}
    for item in planned:
        trained = item.done if item.status == "resume" else 0
        remaining = 0 if item.status in ("finished", "copy") else item.spec.plan.recipe.epochs - trained
        history = rundir.read_history(item.run_dir) if item.status == "resume" else []
        key = item.spec.name
        if history:
            per_epoch[key] = statistics.median(row["seconds"] for row in history)
        if remaining and key not in per_epoch:
            per_epoch[key] = measure(item.spec.plan, item.spec.data)
        estimates[item.label] = remaining * per_epoch.get(key, 0.0)
    return estimates


# --- running it -------------------------------------------------------------------------------------

def run(experiment: Experiment, out: str | Path, report_dir: str | Path, *, force: bool = False, device: str = "auto",
        group: Group | None = None, progress: bool = True, log: Callable[[str], None] = print) -> Path | None:
    """Train what is not trained yet, evaluate what is not evaluated, and write the report; returns its HTML file.

    Under torchrun (``group``), the runs are shared out over the processes, each trained alone (run
    N by process N modulo their number, on a disk they all see); the leader writes the report and
    returns its file, the others None.
    """
    from digitrec import data, distributed, report, training

    group = group or distributed.ALONE
    planned = distributed.from_leader(group, lambda: plan(experiment, out))
    test_name = data.load(experiment.test, "test").name
    stale = [item for item in planned if item.status == "differs"]
    if stale and not force:
        item = stale[0]
        raise DigitrecError(f"holds a different run ({item.detail}); `--force` trains it again, or choose another --out", str(item.run_dir))
    for number, item in enumerate(planned, 1):
        if (number - 1) % group.size != group.rank:
            continue
        prefix = f"[{number}/{len(planned)}] {item.label}"
        if item.status == "finished":
            log(f"{prefix}: finished already ({epochs_text(item.done)}); kept")
        elif item.status == "copy":
            log(f"{prefix}: trained identically in {item.origin}; copied")
            shutil.copytree(item.origin, item.run_dir)  # a copy, so that each experiment's folder stands alone
        elif item.status == "resume":
            log(f"{prefix}: resuming after epoch {item.done}")
            training.resume(item.run_dir, device=device, progress=progress, log=log)
        else:
            if item.status == "differs":
                log(f"{prefix}: trained again (--force; it held {item.detail})")
                shutil.rmtree(item.run_dir)
            else:
                log(f"{prefix}: training {item.spec.plan.model}, {epochs_text(item.spec.plan.recipe.epochs)}")
            training.train(item.spec.plan, data_spec=item.spec.data, out=item.run_dir, seed=item.seed, device=device,
                           watch=item.spec.watch, progress=progress, log=log)
        if not _evaluated(item.run_dir, test_name):
            report.evaluate_model(item.run_dir, experiment.test)
    distributed.wait(group)
    if not group.leader:
        return None
    runs = [report.ExperimentRun(item.spec.name, item.run_dir, item.spec.published, item.spec.published_on, item.spec.source)
            for item in planned]
    return report.experiment_report(experiment.title, experiment.description, experiment.notes, runs, report_dir, test_name)


def _evaluated(run_dir: Path, test_name: str) -> bool:
    """Whether the run's report holds metrics on that test set for its final model as it is now."""
    metrics = rundir.default_report_dir(run_dir) / "metrics.json"
    return (metrics.is_file() and metrics.stat().st_mtime >= (run_dir / rundir.FINAL).stat().st_mtime
            and rundir.read_json(metrics, "an evaluation report").get("data") == test_name)


def describe(planned: list[Planned], estimates: dict[str, float]) -> str:
    """What ``--dry-run`` prints: one line per run and seed, and the total time still to spend."""
    lines = []
    for item in planned:
        recipe = item.spec.plan.recipe
        what = {"new": "to train", "finished": "finished, kept", "resume": f"to resume after epoch {item.done}",
                "differs": f"differs ({item.detail}): --force trains it again",
                "copy": f"to copy from {item.origin.parents[1].name if item.origin else ''}"}[item.status]
        lines.append(f"{item.label:<32} {item.spec.plan.model:<18} {epochs_text(recipe.epochs):>10}  {what:<28} "
                     f"~{duration(estimates[item.label])}")
    lines.append(f"total still to train: ~{duration(sum(estimates.values()))} on this machine")
    return "\n".join(lines)


def duration(seconds: float) -> str:
    """A time as a person reads it: seconds, minutes or hours."""
    if seconds < 90:
        return f"{math.ceil(seconds)} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"
