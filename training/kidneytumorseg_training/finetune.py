"""Fine-tune a model package on corrections exported by the Slicer module: a new version of the package.

    result = finetune("kits-demo@1.0.0", Path("corrections"), epochs=20, iterations=20)
    result.version                  # "1.0.1", imported into the user model store beside 1.0.0
    result.before, result.after     # KiTS metrics of the held-out corrected cases, old and new members

Steps: split the corrections into fine-tune and held-out cases; preprocess the fine-tune cases (plus optional
replay data) with the package's own spacing and normalisation; train every segmenter from its packaged weights;
score old and new members on the held-out cases with the engine's predictor (a two-stage package with its
refiners); write the new version (localizer and refiners copied unchanged; parent, corrections and metrics in its
provenance) and import it. The work folder keeps
everything, with ``report.json`` / ``report.md``; running again with the same settings resumes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from kidneytumorseg.atomic import atomic_path, write_text_atomic
from kidneytumorseg.device import select_device
from kidneytumorseg.errors import KidneyTumorSegError
from kidneytumorseg.labels import KITS_REGIONS
from kidneytumorseg.model_package import (
    MemberSpec,
    ModelPackage,
    build_member,
    load_member_weights,
    parse_version,
    write_package_version,
)
from kidneytumorseg.model_store import ModelStore
from kidneytumorseg.networks import build_network
from kidneytumorseg_training import finetune_defaults as defaults
from kidneytumorseg_training.checkpoint import load_weights
from kidneytumorseg_training.datasets import (
    TrainingCase,
)
from kidneytumorseg_training.finetune_data import (
    FinetuneError,
    add_replay,
    replayed_check_cases,
    usable_check_cases,
    usable_corrections,
)
from kidneytumorseg_training.finetune_evaluation import evaluate_members, stage_two
from kidneytumorseg_training.finetune_report import format_score, report_markdown
from kidneytumorseg_training.planning import FORMAT_VERSION, NUM_CLASSES, validate_plans
from kidneytumorseg_training.preprocessing import preprocess_dataset
from kidneytumorseg_training.replay_distillation import check_weight
from kidneytumorseg_training.splits import holdout_split
from kidneytumorseg_training.trainer import LATEST, resolve_training_precision, train
from kidneytumorseg_training.training_config import OPTIMIZERS, PRECISIONS, TrainingConfig, hard_case_problems
from kidneytumorseg_training.weight_anchor import check_strength
from kidneytumorseg_training.weight_averaging import average_weights, check_fraction

logger = logging.getLogger(__name__)

REPORT_JSON, REPORT_MD = "report.json", "report.md"
PACKAGE_REPORT_STEM = "finetune_report"  # the report's name inside the new package folder
BATCH_SIZE = 2
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class FinetuneResult:
    """The new package (its folder in the store), its version, the held-out metrics before and after."""

    package_path: Path
    version: str
    before: dict[str, Any]
    after: dict[str, Any]
    holdout_ids: list[str]
    train_ids: list[str]
    report_path: Path | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    check_before: dict[str, Any] | None = None  # metrics on the check cases (``check_cases``), old and new members
    check_after: dict[str, Any] | None = None


def next_patch_version(version: str) -> str:
    """``"1.0.0"`` -> ``"1.0.1"``."""
    major, minor, patch = parse_version(version)
    return f"{major}.{minor}.{patch + 1}"


def check_finetunable(package: ModelPackage) -> None:
    """FinetuneError for a package fine-tuning cannot rebuild yet: one whose segmenters output fewer than the four
    KiTS labels (``inference.output_labels``, a kidney-region stage 1). A two-stage package whose stage 1
    segments all four labels is fine-tuned in its segmenters; its refiners are kept as they are."""
    staged = [member.name for member in package.segmenters if member.inputs.output_labels is not None]
    if staged:
        raise FinetuneError(
            f"Fine-tuning a package whose stage 1 does not segment all KiTS labels is not supported yet; "
            f"{package.name}@{package.version} has segmenter(s) {', '.join(staged)} with output_labels. Retrain it "
            f"with `kidneytumorseg-train recipe run RECIPE` on your training cases plus the corrected ones (the "
            f"corrections folder is a KiTS-layout dataset), or fine-tune a package whose segmenters output all four "
            f"KiTS labels.")


def package_plans(member: MemberSpec, dataset: str) -> dict[str, Any]:
    """A plans dict (docs/training-contracts.md) that preprocesses data as the package's member expects."""
    network = {**member.network, "deep_supervision": True}
    return validate_plans({
        "format_version": FORMAT_VERSION, "name": "finetune", "dataset": dataset, "budget": "package",
        "target_spacing": [float(s) for s in member.preprocessing["target_spacing"]],
        "normalization": member.preprocessing["normalization"],
        "image_interpolation": member.preprocessing.get("image_interpolation", "linear"),
        "patch_size": list(member.patch_size), "batch_size": BATCH_SIZE, "network": network,
        "num_classes": NUM_CLASSES, "fingerprint": {},
    })


def _tuned_network(member: MemberSpec, weights: Mapping[str, torch.Tensor], device: str) -> torch.nn.Module:
    network = build_network({**member.network, "deep_supervision": False})
    network.load_state_dict(dict(weights), strict=True)
    return network.to(device).eval()


def _write_weights(weights: Mapping[str, torch.Tensor], path: Path) -> Path:
    with atomic_path(path, suffix=".safetensors") as temporary:
        save_file({k: v.contiguous() for k, v in weights.items()}, str(temporary))
    return path


def _choose_version(store: ModelStore, package: ModelPackage, version: str | None) -> str:
    new = next_patch_version(package.version) if version is None else version
    parse_version(new)
    try:
        existing = store.find(f"{package.name}@{new}")
    except KidneyTumorSegError:
        return new
    raise FinetuneError(f"{package.name}@{new} already exists ({existing.path}); give another --version (or remove "
                        f"that one with `kidneytumorseg models remove {package.name}@{new}`).")


def _check_settings(holdout: float, epochs: int, iterations: int, learning_rate: float, optimizer: str,
                    replay_ratio: float, hard_case_class: int | None = None, hard_case_fraction: float = 0.0,
                    anchor_strength: float = 0.0, distill_weight: float = 0.0, replay: bool = True,
                    precision: str = "auto") -> None:
    problems = [f"{name} must be a whole number >= 1, got {value!r}" for name, value in
                (("epochs", epochs), ("iterations", iterations)) if type(value) is not int or value < 1]
    if not 0.0 < float(holdout) < 1.0:
        problems.append(f"holdout must be a fraction between 0 and 1 (exclusive), got {holdout!r}; 0.3 is usual")
    if type(learning_rate) not in (int, float) or not learning_rate > 0:
        problems.append(f"learning_rate must be a positive number, got {learning_rate!r}; "
                        f"{defaults.LEARNING_RATE:g} is the default")
    if optimizer not in OPTIMIZERS:
        problems.append(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if type(replay_ratio) not in (int, float) or not replay_ratio > 0:
        problems.append(f"replay_ratio must be a positive number, got {replay_ratio!r}; "
                        f"{defaults.REPLAY_RATIO:g} is the default")
    problems += hard_case_problems(hard_case_class, hard_case_fraction)
    try:
        check_strength(anchor_strength)
    except ValueError:
        problems.append(f"anchor_strength must be a number >= 0 (0 = off), got {anchor_strength!r}")
    try:
        if check_weight(distill_weight) and not replay:
            problems.append("distill_weight distils the parent on the replayed cases, and no replay data is given; "
                            "give --replay (the original training data) or set distill_weight to 0")
    except ValueError:
        problems.append(f"distill_weight must be a number >= 0 (0 = off), got {distill_weight!r}")
    if precision not in PRECISIONS:
        problems.append(f"precision must be one of {PRECISIONS}, got {precision!r}; auto is the default")
    if problems:
        raise FinetuneError("; ".join(problems) + ".")


def _preprocess(segmenters: Sequence[MemberSpec], cases: Sequence[TrainingCase], corrections: Path,
                replay: Path | None, work: Path, replay_ratio: float, seed: int
                ) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """One preprocessed folder per distinct member preprocessing (usually one): its folder and training ids."""
    groups: dict[str, dict[str, Any]] = {}
    replay_ids: list[str] = []
    for member in segmenters:
        key = json.dumps(member.preprocessing, sort_keys=True)
        if key in groups:
            continue
        folder = work / ("preprocessed" if not groups else f"preprocessed_{len(groups)}")
        plans = package_plans(member, str(corrections))
        done = preprocess_dataset(cases, plans, folder, jobs=1, progress=False, on_error="skip")
        ids = sorted(done.done + done.reused)
        if not ids:
            raise FinetuneError(f"No fine-tune case could be preprocessed for member {member.name} "
                                f"({', '.join(f'{k}: {v}' for k, v in done.skipped.items())}); fix those cases.")
        extra = add_replay(replay, plans, folder, len(ids), replay_ratio, seed) if replay is not None else []
        replay_ids += [i for i in extra if i not in replay_ids]
        groups[key] = {"folder": folder, "ids": ids + extra, "replay": extra}
    return groups, replay_ids


@contextlib.contextmanager
def _epoch_progress(report: Callable[[int, int], None]) -> Iterator[None]:
    """Call ``report(epochs_done, epochs)`` after each training epoch. The trainer has no callback: this reads
    its per-epoch log record, which is let through (or not) to the log's handlers exactly as before."""
    trainer_log = logging.getLogger(train.__module__)
    threshold, level = trainer_log.getEffectiveLevel(), trainer_log.level

    def hook(record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if isinstance(record.msg, str) and record.msg.startswith("epoch %d/%d") and len(args) >= 2:
            report(int(args[0]), int(args[1]))
        return record.levelno >= threshold

    trainer_log.addFilter(hook)
    trainer_log.setLevel(min(threshold, logging.INFO))
    try:
        yield
    finally:
        trainer_log.removeFilter(hook)
        trainer_log.setLevel(level)


def _train_member(member: MemberSpec, parent_weights: Mapping[str, torch.Tensor], group: Mapping[str, Any],
                  work: Path, options: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Train one segmenter from its packaged (verified) weights; return the fine-tuned weights."""
    initial = _write_weights(parent_weights, work / "initial" / f"{member.name}.safetensors")
    # The deep-supervision heads are part of the network whether or not they are used, so the packaged
    # weights (saved without deep supervision) load strictly into the training network.
    config = TrainingConfig(
        preprocessed=str(group["folder"]), train_ids=group["ids"], epochs=options["epochs"],
        iterations_per_epoch=options["iterations"],
        batch_size=BATCH_SIZE, patch_size=list(member.patch_size),
        network={**member.network, "deep_supervision": True},
        optimizer=options["optimizer"], learning_rate=options["learning_rate"], deep_supervision=True,
        loss_options={"batch_dice": options["batch_dice"]},
        hard_case_class=options["hard_case_class"], hard_case_fraction=options["hard_case_fraction"],
        anchor_strength=options["anchor_strength"],
        distill_weight=options["distill_weight"], distill_ids=group["replay"] if options["distill_weight"] else [],
        augmentation=None if options["augmentation"] else {"enabled": False}, seed=options["seed"],
        num_workers=options["workers"], device=options["device"], precision=options["precision"],
        threads=options["threads"], initial_weights=str(initial), name=f"finetune-{member.name}", progress=False)
    run_dir = work / "runs" / member.name
    train(config, run_dir)
    return load_weights(run_dir / LATEST)


def finetune(model_spec: str, corrections: str | os.PathLike[str], *, replay: str | os.PathLike[str] | None = None,
             holdout: float = defaults.HOLDOUT, epochs: int = defaults.EPOCHS, iterations: int = defaults.ITERATIONS,
             learning_rate: float = defaults.LEARNING_RATE, optimizer: str = defaults.OPTIMIZER,
             augmentation: bool = True, version: str | None = None, replay_ratio: float = defaults.REPLAY_RATIO,
             average_fraction: float = defaults.AVERAGE_FRACTION, batch_dice: bool = defaults.BATCH_DICE,
             hard_case_class: int | None = defaults.HARD_CASE_CLASS,
             hard_case_fraction: float = defaults.HARD_CASE_FRACTION,
             anchor_strength: float = defaults.ANCHOR_STRENGTH, distill_weight: float | None = None,
             check_cases: str | os.PathLike[str] | None = None,
             store: ModelStore | None = None,
             work_dir: str | os.PathLike[str] | None = None, seed: int = 0, device: str = "cpu",
             threads: int | None = None, workers: int = 0, precision: str = "auto",
             progress: Progress | None = None) -> FinetuneResult:
    """Fine-tune ``model_spec`` (``NAME`` or ``NAME@VERSION`` in ``store``, default ``ModelStore.default()``) on the
    corrected cases in ``corrections``; write and import the new version (default: the next patch version).

    ``replay_ratio``: replayed cases per corrected training case (a seeded subset of ``replay``; R makes 1 / (1 + R)
    of the patches corrections). ``average_fraction`` A: the new weights are ``(1 - A) * parent + A * fine-tuned``
    (WiSE-FT, :mod:`kidneytumorseg_training.weight_averaging`), 1 for the fine-tuned weights alone. ``batch_dice``:
    the Dice term over the whole batch (as the bundled members were trained), else per patch. ``hard_case_class`` c
    and ``hard_case_fraction`` f: that share of the patches is centred on label c (the parent's sampling; the bundled
    members oversampled cysts, 3, at 0.33). ``anchor_strength`` s > 0: L2-SP, a pull of ``s * (w - w_parent)`` on
    every weight's gradient (:mod:`kidneytumorseg_training.weight_anchor`). ``distill_weight`` d > 0: on the
    replayed cases' patches the loss gains d x KL(parent || member), the parent's own output kept as a target
    (:mod:`kidneytumorseg_training.replay_distillation`; needs ``replay``; None: 5 with ``replay``, else 0 = off).
    ``precision``: the training autocast as in ``kidneytumorseg-train train --precision`` (auto: fp16 on CUDA, bf16
    on a CPU with native bfloat16, else fp32); the report records the one used.
    ``check_cases``: a dataset folder of
    earlier cases with reference masks, scored by the old and new members too (``check`` in the report): the
    held-out corrections show what a fine-tune gains, these what it costs the cases the model handled. ``work_dir``
    (default ``./finetune_<name>_<version>``) keeps the preprocessed data, the runs and the report;
    ``progress(stage, fraction)`` is called as the stages advance, and after every training epoch."""
    started = time.perf_counter()
    report_progress: Progress = progress or (lambda stage, fraction: None)
    distill_weight = defaults.distill_weight_for(distill_weight, replay is not None)
    _check_settings(holdout, epochs, iterations, learning_rate, optimizer, replay_ratio, hard_case_class,
                    hard_case_fraction, anchor_strength, distill_weight, replay is not None, precision)
    try:
        average_fraction = check_fraction(average_fraction)
    except KidneyTumorSegError as error:
        raise FinetuneError(str(error)) from error
    device = str(select_device(device))  # "auto" -> the device found, for training and evaluation alike
    store = store or ModelStore.default()
    package = store.resolve(model_spec)
    check_finetunable(package)
    new_version = _choose_version(store, package, version)
    corrections = Path(corrections).resolve()
    replay_dir = Path(replay).resolve() if replay is not None else None
    work = Path(work_dir if work_dir is not None else Path.cwd() / f"finetune_{package.name}_{new_version}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    logger.info("Fine-tuning %s@%s -> %s in %s", package.name, package.version, new_version, work)
    if package.refiners:
        logger.info("Two-stage package: its segmenters are fine-tuned, its refiners %s kept as they are",
                    [m.name for m in package.refiners])

    cases, skipped = usable_corrections(corrections)
    by_id = {case.case_id: case for case in cases}
    train_ids, holdout_ids = holdout_split(list(by_id), fraction=holdout, seed=seed)
    check_folder = Path(check_cases).resolve() if check_cases is not None else None
    checks = usable_check_cases(check_folder, exclude=list(by_id)) if check_folder is not None else None
    logger.info("%d corrected case(s): fine-tune on %s, hold out %s", len(cases), train_ids, holdout_ids)
    report_progress("preprocess", 0.0)
    segmenters = list(package.segmenters)
    groups, replay_ids = _preprocess(segmenters, [by_id[i] for i in train_ids], corrections, replay_dir, work,
                                     replay_ratio, seed)
    replayed = replayed_check_cases([c.case_id for c in checks[0]], replay_ids) if checks is not None else []
    seconds = {"preprocess": time.perf_counter() - started}

    options = {"epochs": epochs, "iterations": iterations, "learning_rate": float(learning_rate),
               "optimizer": optimizer, "augmentation": augmentation, "holdout": holdout, "seed": seed,
               "replay_ratio": replay_ratio, "average_fraction": average_fraction, "batch_dice": bool(batch_dice),
               "hard_case_class": hard_case_class, "hard_case_fraction": float(hard_case_fraction),
               "anchor_strength": float(anchor_strength), "distill_weight": float(distill_weight),
               "device": device, "precision": resolve_training_precision(precision, torch.device(device)),
               "threads": threads, "workers": workers, "batch_size": BATCH_SIZE}
    tuned: dict[str, dict[str, torch.Tensor]] = {}
    span = 0.6 / len(segmenters)  # of the progress, for training; each member's epochs advance it
    for index, member in enumerate(segmenters):
        stage, start = f"train {member.name}", 0.1 + span * index
        report_progress(stage, start)
        group = groups[json.dumps(member.preprocessing, sort_keys=True)]
        with (_epoch_progress(lambda done, total, s=stage, a=start: report_progress(s, a + span * done / total))
              if progress else contextlib.nullcontext()):
            parent_weights = load_member_weights(package, member)
            tuned[member.name] = _train_member(member, parent_weights, group, work, options)
        if average_fraction < 1.0:
            tuned[member.name] = average_weights(parent_weights, tuned[member.name], average_fraction)
    seconds["train"] = time.perf_counter() - started - seconds["preprocess"]

    report_progress("evaluate", 0.7)
    first = segmenters[0]
    ensemble = [m for m in segmenters if (m.preprocessing, m.patch_size) == (first.preprocessing, first.patch_size)]
    if len(ensemble) < len(segmenters):
        logger.warning("Members %s differ from %s in preprocessing or patch size; only %s are evaluated together.",
                       [m.name for m in segmenters if m not in ensemble], first.name, [m.name for m in ensemble])
    held_out = [by_id[i] for i in holdout_ids]
    localizer = build_member(package, package.localizer, device=device) if package.localizer is not None else None
    old_networks = [build_member(package, m, device=device) for m in ensemble]
    new_networks = [_tuned_network(m, tuned[m.name], device) for m in ensemble]
    refiners, refinement = stage_two(package, device)

    def _evaluate(networks: Sequence[torch.nn.Module], cases: Sequence[TrainingCase], folder: str) -> dict[str, Any]:
        return evaluate_members(networks, first, package, cases, device, work / folder, localizer, refiners,
                                refinement)

    before = _evaluate(old_networks, held_out, "evaluation_before")
    after = _evaluate(new_networks, held_out, "evaluation_after")
    check = None
    if checks is not None:
        check_cases_found, check_skipped = checks
        check = {"folder": str(check_folder), "skipped": check_skipped, "replayed": replayed, **{
            when: _evaluate(networks, check_cases_found, f"evaluation_check_{when}")
            for when, networks in (("before", old_networks), ("after", new_networks))}}
    seconds["evaluate"] = time.perf_counter() - started - seconds["preprocess"] - seconds["train"]
    logger.info("Held-out Dice (kidney_and_mass, mass, tumor) before %s, after %s",
                [format_score(before["regions"][r.name]["dice"]) for r in KITS_REGIONS],
                [format_score(after["regions"][r.name]["dice"]) for r in KITS_REGIONS])

    report_progress("export", 0.9)
    parent = f"{package.name}@{package.version}"
    provenance = {
        "recipe": "fine-tuning on corrections", "parent": parent, "parent_version": package.version,
        "parent_provenance": package.provenance, "corrections": str(corrections),
        "corrections_cases": {"train": train_ids, "holdout": holdout_ids}, "replay": replay_dir and str(replay_dir),
        "replay_cases": len(replay_ids), "settings": options, "metrics": {"before": before, "after": after},
        "data": f"{package.provenance.get('data', 'the data of ' + parent)} + {len(train_ids)} corrected case(s)",
    }
    earlier = re.sub(r"\s*Fine-tuned from \S+ on \d+ corrected case\(s\)\.$", "", package.description)
    description = f"{earlier} Fine-tuned from {package.version} on {len(train_ids)} corrected case(s)."
    built = write_package_version(package, work / "package" / package.name / new_version, version=new_version,
                                  weights=tuned, provenance=provenance, description=description.strip(),
                                  overwrite=True)
    seconds["total"] = time.perf_counter() - started
    report = {
        "format_version": 1, "parent": parent, "model": f"{package.name}@{new_version}",
        "corrections": str(corrections), "replay": provenance["replay"], "train_ids": train_ids,
        "holdout_ids": holdout_ids, "replay_ids": sorted(replay_ids), "skipped": skipped,
        "members": [m.name for m in segmenters], "evaluated_members": [m.name for m in ensemble],
        "refiners_kept": [m.name for m in package.refiners],
        "settings": options, "before": before, "after": after, "check": check,
        "seconds": seconds, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    text, markdown = json.dumps(report, indent=1, allow_nan=False) + "\n", report_markdown(report)
    report_path = write_text_atomic(work / REPORT_JSON, text)
    write_text_atomic(work / REPORT_MD, markdown)
    write_text_atomic(built / f"{PACKAGE_REPORT_STEM}.json", text)  # travels with the package into the store
    write_text_atomic(built / f"{PACKAGE_REPORT_STEM}.md", markdown)
    entry = store.import_package(built)
    report_progress("done", 1.0)
    logger.info("Fine-tuned %s imported as %s (%s); report %s", parent, entry.spec, entry.path, report_path)
    return FinetuneResult(entry.path, new_version, before, after, holdout_ids, train_ids, report_path, skipped,
                          check and check["before"], check and check["after"])
