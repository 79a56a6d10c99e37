"""Every recipe and nnU-Net v2 trained at one budget, scored on the same held-out cases: docs/recipes.md's table.

    .venv/bin/python benchmarks/recipes_table.py [work_data/synthetic_1.5x1.5x3] --budget cpu \\
        --train-cases work_runs/train_pool.txt --test-cases work_runs/test_ids.txt [--train-limit 40] \\
        [--test-limit 20] [--recipes a,b] [--threads 2] --work work_runs/recipes_table

For each recipe (default: all of `kidneytumorseg-train recipe list`):
    kidneytumorseg-train recipe run NAME --data DATASET --work WORK/runs/NAME --budget B --train-cases FILE
        --export WORK/models --model-name NAME --model-version 0.1.0 [--threads N]
timed as a whole (preprocessing, training, export), then `kidneytumorseg predict` with that package on the test
cases (seconds per case from its JSON lines; after a kill, a rerun keeps the cases already predicted with the same
weights and predicts the rest, see equal_budget/resume.py), our KiTS metrics on the predictions, and the package's
parameter count. Then nnU-Net v2 (benchmarks/nnunet_peer_training.py) at the same schedule: the epochs x
iterations most recipes trained with (read from their runs' config.json), or --peer-epochs / --peer-iterations.
The table goes into ``--doc`` under "## Results at equal budget" (only that section is replaced; the file is
created if missing), with the hardware (CPU from /proc/cpuinfo; a device column when CUDA is available), the
budget and the dataset. Results are kept in WORK/results/NAME.json and WORK/nnunet/result.json: a method whose
result exists is not run again unless --force. A recipe that fails is reported and left out; the others go on.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from equal_budget.cases import check_split, link_cases, read_case_ids, write_case_ids
from equal_budget.epoch_time import recipe_training_seconds
from equal_budget.recipes import (
    common_schedule,
    count_parameters,
    find_package,
    parse_recipe_list,
    predict_seconds,
    recipe_schedule,
)
from equal_budget.report import (
    SECTION_HEADING,
    cpu_description,
    format_table,
    gpu_description,
    read_result,
    refresh_training_seconds,
    replace_section,
    verdict,
    write_result,
)
from equal_budget.resume import finished_cases, mark_weights, remaining_cases, weights_fingerprint
from equal_budget.scoring import score_predictions
from nnunet_peer_training import PeerSettings, Runner, run_peer, subprocess_runner

logger = logging.getLogger("recipes_table")

MODEL_VERSION = "0.1.0"
# nnU-Net's planner sizes patch and batch for a GPU memory target (8 GB by default: a 56x192x192 patch with 32 base
# features here, 3.4 times the voxels of our cpu budget's patch; one iteration took minutes on this CPU). At the
# cpu budget we give it 2 GB, its own knob, which plans 40x112x112, close to our cpu budget's 48x112x112.
PEER_MEMORY_TARGET_GB = {"smoke": 1.0, "cpu": 2.0}


def _tool(name: str) -> str:
    """The console script ``name`` of this environment (beside the running Python), else the one on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed; run `bash scripts/test.sh` (or `.venv/bin/pip install "
                                f"-e .`) and start this script with .venv/bin/python.")
    return found


@dataclass(frozen=True)
class TableSettings:
    dataset: Path
    train_ids: tuple[str, ...]
    test_ids: tuple[str, ...]
    work: Path
    budget: str
    threads: int | None = None
    device: str = "auto"
    quality: str = "default"
    # `kidneytumorseg predict --precision`; nnU-Net's prediction gets the same arithmetic (half_precision)
    precision: str = "auto"
    force: bool = False

    @property
    def train_precision(self) -> str:
        """The recipes train with nnU-Net's trainer's arithmetic: float32 on a CPU (its trainer autocasts only on
        CUDA), float16 autocast on CUDA (`auto`)."""
        return "fp32" if _device_name(self.device) == "cpu" else "auto"

    @property
    def half_precision(self) -> bool:
        """Whether the recipes predict in half precision on a CPU (auto: where the CPU has native bfloat16)."""
        import torch

        from kidneytumorseg.precision import use_half_precision

        return use_half_precision(self.precision, torch.device("cpu"))

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.threads:
            env.update(OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads))
        return env


def recipe_names(runner: Runner, settings: TableSettings) -> list[str]:
    log = settings.work / "logs" / "recipe_list.log"
    names = parse_recipe_list(runner([_tool("kidneytumorseg-train"), "recipe", "list"], log, settings.env))
    if not names:
        raise RuntimeError(f"`kidneytumorseg-train recipe list` named no recipe (see {log}); give them with "
                           f"--recipes a,b.")
    return names


def _device_name(device: str) -> str:
    gpu = gpu_description()
    return gpu if gpu and device in ("auto", "cuda") else "cpu"


SHARED_CACHES = ("preprocessed", "fingerprints")


def share_caches(run_folder: Path, work: Path) -> None:
    """Point the recipe's preprocessing caches at the table's, so recipes that preprocess alike (the three
    ``isensee2019-*``) do it once: ``recipe run`` names its cache folders by their plan's hash. A folder a
    recipe already filled on its own is kept."""
    for cache in SHARED_CACHES:
        link, shared = run_folder / cache, work / cache
        if link.exists() or link.is_symlink():
            continue
        shared.mkdir(parents=True, exist_ok=True)
        run_folder.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("..", "..", cache), target_is_directory=True)


def run_recipe(name: str, settings: TableSettings, runner: Runner = subprocess_runner) -> dict[str, Any]:
    """Train, export, predict and score one recipe; or read its earlier result."""
    work = settings.work
    result_file = work / "results" / f"{name}.json"
    run_folder, models, predictions = work / "runs" / name, work / "models", work / "predictions" / name
    if result_file.is_file() and not settings.force:
        logger.info("%s exists; %s is not run again (use --force).", result_file, name)
        return refresh_training_seconds(read_result(result_file), recipe_training_seconds(run_folder), result_file)
    if settings.force:
        for stale in (run_folder, models / name / MODEL_VERSION, predictions):
            shutil.rmtree(stale, ignore_errors=True)
    log = work / "logs" / f"{name}.log"
    share_caches(run_folder, work)
    command = [_tool("kidneytumorseg-train"), "recipe", "run", name, "--data", str(settings.dataset),
               "--work", str(run_folder), "--budget", settings.budget, "--train-cases", str(work / "train_cases.txt"),
               "--export", str(models), "--model-name", name, "--model-version", MODEL_VERSION,
               "--overwrite",  # a rerun after an interrupted prediction exports the (resumed) runs again
               "--precision", settings.train_precision]
    command += ["--threads", str(settings.threads)] if settings.threads else []
    logger.info("%s: training (log: %s)", name, log)
    started = time.perf_counter()
    runner(command, log, settings.env)
    wall_seconds = time.perf_counter() - started
    epoch_seconds = recipe_training_seconds(run_folder)
    package, in_store = find_package(models, name, MODEL_VERSION)
    store = models
    if not in_store:
        store = work / "store"
        runner([_tool("kidneytumorseg"), "models", "import", str(package), "--store-dir", str(store), "--overwrite"],
               log, settings.env)
    fingerprint = weights_fingerprint(package)
    seconds = finished_cases(log.read_text(errors="replace") if log.is_file() else "", predictions, fingerprint)
    remaining = remaining_cases(settings.test_ids, seconds)
    if seconds:
        logger.info("%s: %d test case(s) predicted by an earlier run with these weights are kept", name, len(seconds))
    if remaining:
        logger.info("%s: predicting %d test case(s)", name, len(remaining))
        inputs = work / "test_input"
        if seconds:
            inputs = link_cases(settings.dataset, remaining, work / "test_input_remaining" / name)
        mark_weights(predictions, fingerprint)
        output = runner([_tool("kidneytumorseg"), "predict", "-i", str(inputs), "-o", str(predictions),
                         "--model", f"{name}@{MODEL_VERSION}", "--store-dir", str(store), "--device", settings.device,
                         "--quality", settings.quality, "--precision", settings.precision, "--progress", "json"],
                        log, settings.env)
        seconds |= predict_seconds(output)
    missing = sorted(set(settings.test_ids) - set(seconds))
    if missing:
        raise RuntimeError(f"`kidneytumorseg predict` reported no result for {missing[:3]}; see {log}.")
    result = {
        "name": name, "kind": "recipe", "schedule": recipe_schedule(run_folder),
        "train_seconds": wall_seconds if epoch_seconds is None else epoch_seconds,
        "inference_seconds": {case: seconds[case] for case in settings.test_ids},
        "parameters": count_parameters(package), "device": _device_name(settings.device),
        "metrics": score_predictions(predictions, settings.dataset, settings.test_ids),
        "details": {"command": shlex.join(command), "package": str(package), "command_wall_seconds": wall_seconds,
                    "precision": settings.precision},
    }
    return read_result(write_result(result, result_file))


def peer_schedule(results: Sequence[dict[str, Any]], epochs: int | None, iterations: int | None) -> tuple[int, int]:
    if epochs and iterations:
        return epochs, iterations
    found = common_schedule([result["schedule"] for result in results])
    if found is None:
        raise RuntimeError("No recipe run recorded its schedule (config.json with epochs and iterations_per_epoch); "
                           "give nnU-Net's with --peer-epochs and --peer-iterations.")
    differing = sorted({result["name"] for result in results
                        if result["schedule"] and (result["schedule"]["epochs"],
                                                   result["schedule"]["iterations_per_epoch"]) != found})
    if differing:
        logger.warning("Recipes %s trained at another schedule than %d x %d (nnU-Net's).", differing, *found)
    return epochs or found[0], iterations or found[1]


def document_body(results: Sequence[dict[str, Any]], settings: TableSettings, command: str,
                  failures: dict[str, str], note: str = "") -> str:
    """The section under SECTION_HEADING: what ran where, the table, the verdict and how to reproduce it."""
    gpu = gpu_description()
    hardware = cpu_description() + (f", GPU {gpu}" if gpu else ", no GPU")
    peer = next((r for r in results if r["kind"] == "peer"), None)
    lines = [
        f"Table written on {date.today().isoformat()} from each method's kept result (a method runs once; "
        f"`--force` measures again), measured on {hardware}; budget `{settings.budget}`; "
        f"{len(settings.train_ids)} training and {len(settings.test_ids)} held-out test cases of "
        f"`{settings.dataset}`. **The CT is synthetic** (made from the real KiTS23 expert masks, see the README): "
        f"these scores rank methods on that data; they are not accuracies on real CT.",
        "",
        "Dice and surface Dice (SD) are the KiTS23 metrics of `kidneytumorseg evaluate`, per region (mean over "
        "the test cases) and their mean. Training: epochs x the median epoch time (training and validation, as "
        "each trainer logs them; a cascade's stages added up; preprocessing and export not included; robust to a "
        "run being resumed or paused). Inference: median seconds per case (recipes: the engine's segmentation of a "
        "read image; nnU-Net: read, preprocess, predict, resample, write). Parameters: all networks of the model "
        "(every fold and stage). "
        + (f"Every training and prediction ran with {settings.threads} torch thread(s)."
           if settings.threads else "Torch chose its thread count.")
        + f" Training precision `{settings.train_precision}` for the recipes (nnU-Net's trainer: float32 on a CPU)."
        + (" Prediction in bfloat16 autocast on the CPU, for the recipes (`--precision "
           f"{settings.precision}`, the engine's default here) and nnU-Net alike (its predictor wrapped in the same "
           "autocast; by itself it runs float32 on a CPU)." if settings.half_precision and gpu is None else
           f" Prediction with `--precision {settings.precision}`."),
    ]
    if note:
        lines += ["", note]
    if peer is not None:
        lines += ["", peer_description(peer)]
    lines += ["", format_table(results, gpu_column=gpu is not None)]
    if verdict(results):
        lines += ["", verdict(results)]
    if failures:
        lines += ["", "Not in the table (failed; see the logs in the work folder): "
                  + ", ".join(f"`{name}`" for name in failures) + "."]
    lines += ["", "Reproduce (finished methods are kept; `--force` measures again):", "", "```bash", command, "```"]
    return "\n".join(lines)


def peer_description(peer: dict[str, Any]) -> str:
    """How nnU-Net was run, from its result's details."""
    details = peer.get("details", {})
    plan, peer_settings = details.get("plan_3d_fullres", {}), details.get("settings", {})
    memory = peer_settings.get("gpu_memory_gb")
    target = (f"its planner's memory target set to {memory:g} GB (nnU-Net's own knob; its 8 GB default plans "
              f"a patch of several times the compute per iteration)" if memory else
              "its planner's default memory target")
    folds = ", ".join(peer_settings.get("folds", ["?"]))
    return (f"nnU-Net v2 is `nnunetv2` {_version('nnunetv2')} from PyPI with its own fingerprint, planning "
            f"(ExperimentPlanner, {target}: 3d_fullres patch {plan.get('patch_size', '?')}, batch "
            f"{plan.get('batch_size', '?')}, spacing {plan.get('spacing', '?')}), preprocessing and trainer; only "
            f"the schedule is set to the recipes' epochs x iterations. It trains the plain labels (kidney, tumor, "
            f"cyst; softmax) like our 3-class models, not its KiTS region set-up; fold(s) {folds} of its own "
            f"split; test-time mirroring {'on' if details.get('mirroring') else 'off'} as for the recipes.")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def write_document(doc: Path, body: str) -> Path:
    text = doc.read_text() if doc.is_file() else "# Recipes\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(replace_section(text, SECTION_HEADING, body))
    return doc


def main(argv: Sequence[str] | None = None, runner: Runner = subprocess_runner) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("dataset", type=Path, nargs="?", default=Path("work_data/synthetic_1.5x1.5x3"))
    parser.add_argument("--budget", default="cpu", help="the recipes' budget (default cpu)")
    parser.add_argument("--train-cases", type=Path, default=Path("work_runs/train_pool.txt"))
    parser.add_argument("--test-cases", type=Path, default=Path("work_runs/test_ids.txt"))
    parser.add_argument("--train-limit", type=int, help="only the first N training cases")
    parser.add_argument("--test-limit", type=int, help="only the first N test cases")
    parser.add_argument("--recipes", help="comma-separated recipe names (default: every recipe)")
    parser.add_argument("--work", type=Path, default=Path("work_runs/recipes_table"))
    parser.add_argument("--threads", type=int, help="torch threads of every training and prediction")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="prediction device")
    parser.add_argument("--quality", default="default", choices=["default", "best"],
                        help="`kidneytumorseg predict --quality`; best (with mirroring) also mirrors nnU-Net's")
    parser.add_argument("--precision", default="auto", choices=["fp32", "auto", "half"],
                        help="`kidneytumorseg predict --precision` (default auto, the engine's default); on a CPU "
                             "nnU-Net's prediction runs under the same arithmetic (bfloat16 autocast or float32), so "
                             "inference times compare")
    parser.add_argument("--doc", type=Path, default=Path("docs/recipes.md"))
    parser.add_argument("--no-peer", action="store_true", help="leave nnU-Net v2 out")
    parser.add_argument("--peer-epochs", type=int, help="nnU-Net's epochs (default: the recipes')")
    parser.add_argument("--peer-iterations", type=int, help="nnU-Net's iterations per epoch (default: the recipes')")
    parser.add_argument("--peer-folds", default="0", help="nnU-Net folds, comma-separated, or 'all'")
    parser.add_argument("--peer-da-processes", type=int, default=1, help="nnUNet_n_proc_DA for nnU-Net's training")
    parser.add_argument("--peer-gpu-memory-gb", type=float,
                        help="nnU-Net planner's memory target (default: 2 at the cpu budget, 1 at smoke, else "
                             "nnU-Net's own)")
    parser.add_argument("--force", action="store_true", help="run every method again even if its result exists")
    parser.add_argument("--note", default="", help="a sentence for the document on how the run was made (e.g. what "
                                                   "else ran on the machine)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    settings = TableSettings(
        dataset=args.dataset, train_ids=tuple(read_case_ids(args.train_cases, args.train_limit)),
        test_ids=tuple(read_case_ids(args.test_cases, args.test_limit)), work=args.work, budget=args.budget,
        threads=args.threads, device=args.device, quality=args.quality, precision=args.precision,
        force=args.force)
    check_split(settings.dataset, settings.train_ids, settings.test_ids)
    write_case_ids(settings.train_ids, settings.work / "train_cases.txt")
    write_case_ids(settings.test_ids, settings.work / "test_cases.txt")
    link_cases(settings.dataset, settings.test_ids, settings.work / "test_input")
    names = args.recipes.split(",") if args.recipes else recipe_names(runner, settings)
    results, failures = [], {}
    for name in names:
        try:
            results.append(run_recipe(name, settings, runner))
        except Exception as error:  # noqa: BLE001 - one failed recipe must not lose the others' hours
            logger.error("%s failed: %s", name, error)
            failures[name] = str(error)
    if not args.no_peer:
        try:
            epochs, iterations = peer_schedule(results, args.peer_epochs, args.peer_iterations)
            peer_device = "cuda" if _device_name(settings.device) != "cpu" else "cpu"
            peer = PeerSettings(dataset=settings.dataset, train_ids=settings.train_ids, test_ids=settings.test_ids,
                                work=settings.work / "nnunet", epochs=epochs, iterations=iterations,
                                folds=tuple(args.peer_folds.split(",")), threads=settings.threads or 1,
                                da_processes=args.peer_da_processes, mirroring=settings.quality == "best",
                                device=peer_device, half_precision=peer_device == "cpu" and settings.half_precision,
                                gpu_memory_gb=(args.peer_gpu_memory_gb if args.peer_gpu_memory_gb is not None
                                               else PEER_MEMORY_TARGET_GB.get(settings.budget)))
            results.append(run_peer(peer, runner, force=settings.force))
        except Exception as error:  # noqa: BLE001 - the recipes' rows are still worth writing
            logger.error("nnU-Net v2 failed: %s", error)
            failures["nnU-Net v2"] = str(error)
    if not results:
        logger.error("No method finished; nothing written to %s.", args.doc)
        return 1
    command = shlex.join([".venv/bin/python", "benchmarks/recipes_table.py", *(argv if argv is not None
                                                                               else sys.argv[1:])])
    body = document_body(results, settings, command, failures, args.note)
    write_document(args.doc, body)
    print(format_table(results, gpu_column=gpu_description() is not None))
    print(f"\nwritten to {args.doc} ({SECTION_HEADING})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
