"""nnU-Net v2 itself as the peer of our recipes: its own planning, preprocessing and trainer at our budget.

    .venv/bin/python benchmarks/nnunet_peer_training.py [work_data/synthetic_1.5x1.5x3] \\
        --train-cases work_runs/train_pool.txt --test-cases work_runs/test_ids.txt [--train-limit 40] \\
        [--test-limit 20] --epochs 50 --iterations 50 [--folds 0] [--threads 2] --work work_runs/nnunet_peer

Needs the ``peers`` extra (``.venv/bin/pip install -e ".[peers]" -c constraints.txt``: nnunetv2 from PyPI).
Steps, each in a child process with nnUNet_raw / nnUNet_preprocessed / nnUNet_results under ``--work``:
1. the KiTS-layout cases become an nnU-Net raw dataset (links, no copies; plain labels background, kidney,
   tumor, cyst trained with softmax like our 3-class models, not nnU-Net's KiTS region training);
2. nnU-Net's fingerprint (with its integrity check), default ExperimentPlanner (its patch, batch, spacing and
   network; ``--gpu-memory-gb`` is that planner's own memory target: its 8 GB default plans a 56x192x192 patch
   (batch 2, 32 base features) on the 1.5x1.5x3 mm data, 3.4 times the voxels of our cpu budget's 48x112x112;
   2 GB plans 40x112x112) and 3d_fullres preprocessing;
3. nnU-Net's trainer for each fold (its 5-fold split; ``--folds all`` trains on every case) with only the
   schedule changed to ``--epochs`` x ``--iterations`` (validation iterations per epoch scaled as nnU-Net's
   50 per 250 unless given); nnU-Net's final validation is skipped, the held-out test cases replace it;
4. nnU-Net's predictor on the test cases (every trained fold, sliding window 0.5 with Gaussian weighting and
   mirroring as shipped; ``--no-mirroring`` turns it off), timed per case (read, preprocess, predict, resample,
   write);
5. our KiTS metrics (kidneytumorseg.evaluation) on the predictions.
Prints one table row and writes ``--work/result.json`` (the format of equal_budget.report). Finished steps are
kept: a rerun continues where it stopped, and an existing result.json is printed, not measured again, unless
``--force`` (which retrains and predicts again; the preprocessed data are kept while the cases and planner
settings are the same). Device: CPU unless ``--device cuda``. No network access is needed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from equal_budget.cases import check_split, read_case_ids
from equal_budget.epoch_time import nnunet_training_seconds
from equal_budget.nnunet_raw import dataset_folder_name, write_raw_dataset
from equal_budget.report import format_table, read_result, refresh_training_seconds, write_result
from equal_budget.scoring import score_predictions

logger = logging.getLogger("nnunet_peer")

BENCHMARKS = Path(__file__).resolve().parent
PEER_NAME = "nnU-Net v2"
DATASET_NAME = "KiTSSynthetic"
TRAINER_FOLDER = "EqualBudgetTrainer__nnUNetPlans__3d_fullres"  # equal_budget.nnunet_worker.model_folder
NNUNET_VAL_PER_TRAIN = 50 / 250  # nnUNetTrainer: 50 validation per 250 training iterations an epoch
LOG_TAIL_CHARS = 3000

# (command, log file, environment) -> the command's output; raises on failure. Tests inject fakes.
Runner = Callable[[Sequence[str], Path, dict[str, str]], str]


@dataclass(frozen=True)
class PeerSettings:
    dataset: Path
    train_ids: tuple[str, ...]
    test_ids: tuple[str, ...]
    work: Path
    epochs: int
    iterations: int
    val_iterations: int | None = None  # None: nnU-Net's own ratio
    folds: tuple[str, ...] = ("0",)
    processes: int = 1
    da_processes: int = 1
    threads: int = 1
    dataset_id: int = 501
    gpu_memory_gb: float | None = None
    mirroring: bool = True
    device: str = "cpu"  # or "cuda"
    half_precision: bool = False  # bfloat16 autocast around nnU-Net's CPU prediction (it runs float32 there)

    @property
    def validation_iterations(self) -> int:
        if self.val_iterations is not None:
            return self.val_iterations
        return max(1, round(self.iterations * NNUNET_VAL_PER_TRAIN))

    def preparation_key(self) -> dict[str, Any]:
        """What the preprocessed data depend on: a change needs --force (or another --work)."""
        return {"dataset": str(self.dataset.resolve()), "train_ids": list(self.train_ids),
                "test_ids": list(self.test_ids), "gpu_memory_gb": self.gpu_memory_gb, "dataset_id": self.dataset_id}


def subprocess_runner(command: Sequence[str], log: Path, env: dict[str, str]) -> str:
    """Run ``command`` with its output (stdout and stderr) appended to ``log``; return that output.

    RuntimeError with the output's end when the command fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as stream:
        stream.write(f"\n$ {' '.join(str(part) for part in command)}\n")
        stream.flush()
        start = stream.tell()
        code = subprocess.run([str(part) for part in command], stdout=stream, stderr=subprocess.STDOUT, env=env,
                              check=False).returncode
    with log.open("rb") as stream:
        stream.seek(start)
        output = stream.read().decode(errors="replace")
    if code != 0:
        raise RuntimeError(f"{' '.join(str(part) for part in command[:4])} ... failed with exit code {code}; the "
                           f"end of {log}:\n{output[-LOG_TAIL_CHARS:]}")
    return output


def peer_environment(settings: PeerSettings) -> dict[str, str]:
    """The child processes' environment: nnU-Net's folders and process counts, thread limits, our PYTHONPATH."""
    env = dict(os.environ)
    env.update({
        "nnUNet_raw": str(settings.work / "nnUNet_raw"),
        "nnUNet_preprocessed": str(settings.work / "nnUNet_preprocessed"),
        "nnUNet_results": str(settings.work / "nnUNet_results"),
        "nnUNet_n_proc_DA": str(settings.da_processes),
        "nnUNet_def_n_proc": str(settings.processes),
        "nnUNet_compile": "false",
        "OMP_NUM_THREADS": str(settings.threads),
        "MKL_NUM_THREADS": str(settings.threads),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCHMARKS), os.environ.get("PYTHONPATH")])),
    })
    return env


def _worker(step: str, *options: str) -> list[str]:
    return [sys.executable, "-m", "equal_budget.nnunet_worker", step, *options]


def _timed(runner: Runner, command: Sequence[str], log: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    runner(command, log, env)
    return time.perf_counter() - started


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _prepare(settings: PeerSettings, runner: Runner, env: dict[str, str], force: bool) -> dict[str, Any]:
    """Raw dataset, then nnU-Net's planning and preprocessing unless done before for the same cases."""
    work, dataset_name = settings.work, dataset_folder_name(settings.dataset_id, DATASET_NAME)
    done_file = work / "prepared.json"
    done = _read_json(done_file)
    if done is not None and done["key"] != settings.preparation_key():
        if not force:
            raise RuntimeError(f"{work} was prepared for other cases or planner settings; use another --work or "
                               f"--force (which deletes its nnU-Net data and starts again).")
        for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "predictions"):
            shutil.rmtree(work / name, ignore_errors=True)
        done = None
    write_raw_dataset(settings.dataset, work / "nnUNet_raw", settings.dataset_id, DATASET_NAME, settings.train_ids,
                      settings.test_ids, description="Synthetic CT made from real KiTS23 masks")
    if done is not None:
        return done
    options = ["--dataset-id", str(settings.dataset_id), "--processes", str(settings.processes)]
    if settings.gpu_memory_gb is not None:
        options += ["--gpu-memory-gb", str(settings.gpu_memory_gb)]
    seconds = _timed(runner, _worker("plan", *options), work / "logs" / "plan.log", env)
    plans = _read_json(work / "nnUNet_preprocessed" / dataset_name / "nnUNetPlans.json") or {}
    done = {"key": settings.preparation_key(), "seconds": seconds,
            "plan": plans.get("configurations", {}).get("3d_fullres", {})}
    done_file.write_text(json.dumps(done, indent=2) + "\n")
    return done


def _train(settings: PeerSettings, runner: Runner, env: dict[str, str], fold: str) -> dict[str, Any]:
    """One fold with nnU-Net's trainer; a finished fold at the same schedule is not trained again."""
    schedule = {"epochs": settings.epochs, "iterations_per_epoch": settings.iterations,
                "val_iterations": settings.validation_iterations}
    record_file = settings.work / f"train_fold_{fold}.json"
    record = _read_json(record_file)
    final = (settings.work / "nnUNet_results" / dataset_folder_name(settings.dataset_id, DATASET_NAME)
             / TRAINER_FOLDER / f"fold_{fold}" / "checkpoint_final.pth")
    if record is not None and final.is_file() and all(record[k] == v for k, v in schedule.items()):
        return record
    seconds = _timed(runner, _worker(
        "train", "--dataset-id", str(settings.dataset_id), "--fold", fold, "--epochs", str(settings.epochs),
        "--iterations", str(settings.iterations), "--val-iterations", str(settings.validation_iterations),
        "--threads", str(settings.threads), "--device", settings.device, "--record", str(record_file)),
        settings.work / "logs" / f"train_fold_{fold}.log", env)
    record = _read_json(record_file)
    if record is None:
        raise RuntimeError(f"nnU-Net's training of fold {fold} ended without writing {record_file}; see "
                           f"{settings.work / 'logs'}.")
    record["wall_seconds"] = seconds
    record_file.write_text(json.dumps(record, indent=2) + "\n")
    return record


def _predict(settings: PeerSettings, runner: Runner, env: dict[str, str]) -> dict[str, Any]:
    record_file = settings.work / "predict.json"
    images = settings.work / "nnUNet_raw" / dataset_folder_name(settings.dataset_id, DATASET_NAME) / "imagesTs"
    options = ["--dataset-id", str(settings.dataset_id), "--folds", ",".join(settings.folds),
               "--cases", ",".join(settings.test_ids), "--images", str(images),
               "--output", str(settings.work / "predictions"), "--threads", str(settings.threads),
               "--device", settings.device, "--record", str(record_file)]
    options += [] if settings.mirroring else ["--no-mirroring"]
    options += ["--half-precision"] if settings.half_precision else []
    runner(_worker("predict", *options),
           settings.work / "logs" / "predict.log", env)
    record = _read_json(record_file)
    if record is None:
        raise RuntimeError(f"nnU-Net's prediction ended without writing {record_file}; see {settings.work / 'logs'}.")
    return record


def _epoch_seconds(settings: PeerSettings) -> float | None:
    """Sum over the trained folds of nnU-Net's logged epoch times (None if any fold has none)."""
    folder = settings.work / "nnUNet_results" / dataset_folder_name(settings.dataset_id, DATASET_NAME) / TRAINER_FOLDER
    seconds = [nnunet_training_seconds(folder / f"fold_{fold}") for fold in settings.folds]
    return None if any(s is None for s in seconds) else sum(seconds)


def run_peer(settings: PeerSettings, runner: Runner = subprocess_runner, force: bool = False) -> dict[str, Any]:
    """The peer's result (equal_budget.report format), measured now or read from ``work/result.json``."""
    result_file = settings.work / "result.json"
    if result_file.is_file() and not force:
        logger.info("%s exists; not measured again (use --force).", result_file)
        return refresh_training_seconds(read_result(result_file), _epoch_seconds(settings), result_file)
    check_split(settings.dataset, settings.train_ids, settings.test_ids)
    settings.work.mkdir(parents=True, exist_ok=True)
    if force:
        for stale in ("nnUNet_results", "predictions"):
            shutil.rmtree(settings.work / stale, ignore_errors=True)
        for record in settings.work.glob("train_fold_*.json"):
            record.unlink()
    env = peer_environment(settings)
    logger.info("nnU-Net v2: planning and preprocessing %d training case(s)", len(settings.train_ids))
    prepared = _prepare(settings, runner, env, force)
    trained = []
    for fold in settings.folds:
        logger.info("nnU-Net v2: training fold %s, %d x %d", fold, settings.epochs, settings.iterations)
        trained.append(_train(settings, runner, env, fold))
    logger.info("nnU-Net v2: predicting %d test case(s)", len(settings.test_ids))
    predicted = _predict(settings, runner, env)
    result = {
        "name": PEER_NAME, "kind": "peer",
        "schedule": {"epochs": settings.epochs, "iterations_per_epoch": settings.iterations},
        "train_seconds": _epoch_seconds(settings) or sum(record["wall_seconds"] for record in trained),
        "inference_seconds": predicted["seconds"],
        "parameters": predicted["parameters_per_fold"] * len(settings.folds),
        "device": predicted.get("device_name", settings.device),
        "metrics": score_predictions(settings.work / "predictions", settings.dataset, settings.test_ids),
        "details": {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
                    "preprocess_seconds": prepared["seconds"], "plan_3d_fullres": prepared["plan"],
                    "folds": trained, "mirroring": predicted["mirroring"],
                    "precision": predicted.get("precision", "float32"),
                    "labels": "plain labels (background, kidney, tumor, cyst), softmax; not KiTS regions"},
    }
    return read_result(write_result(result, result_file))  # as JSON gives it back, the same as a later run reads


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("dataset", type=Path, nargs="?", default=Path("work_data/synthetic_1.5x1.5x3"))
    parser.add_argument("--train-cases", type=Path, default=Path("work_runs/train_pool.txt"))
    parser.add_argument("--test-cases", type=Path, default=Path("work_runs/test_ids.txt"))
    parser.add_argument("--train-limit", type=int, help="only the first N training cases")
    parser.add_argument("--test-limit", type=int, help="only the first N test cases")
    parser.add_argument("--work", type=Path, default=Path("work_runs/nnunet_peer"))
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--iterations", type=int, required=True, help="training iterations per epoch")
    parser.add_argument("--val-iterations", type=int, help="validation iterations per epoch (default: iterations/5)")
    parser.add_argument("--folds", default="0", help="comma-separated folds of nnU-Net's 5-fold split, or 'all'")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of training and prediction")
    parser.add_argument("--processes", type=int, default=1, help="processes of planning and preprocessing")
    parser.add_argument("--da-processes", type=int, default=1, help="nnUNet_n_proc_DA (0: augment in the trainer)")
    parser.add_argument("--dataset-id", type=int, default=501)
    parser.add_argument("--gpu-memory-gb", type=float, help="nnU-Net planner's memory target (default: its own)")
    parser.add_argument("--no-mirroring", action="store_true", help="predict without test-time mirroring")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="training and prediction device")
    parser.add_argument("--half-precision", action="store_true",
                        help="predict under bfloat16 autocast on a CPU (nnU-Net runs float32 there)")
    parser.add_argument("--force", action="store_true", help="train and predict again even if a result exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    settings = PeerSettings(
        dataset=args.dataset, train_ids=tuple(read_case_ids(args.train_cases, args.train_limit)),
        test_ids=tuple(read_case_ids(args.test_cases, args.test_limit)), work=args.work, epochs=args.epochs,
        iterations=args.iterations, val_iterations=args.val_iterations, folds=tuple(args.folds.split(",")),
        processes=args.processes, da_processes=args.da_processes, threads=args.threads, dataset_id=args.dataset_id,
        gpu_memory_gb=args.gpu_memory_gb, mirroring=not args.no_mirroring, device=args.device,
        half_precision=args.half_precision)
    result = run_peer(settings, force=args.force)
    print(format_table([result]))
    print(f"\n{args.work / 'result.json'}")


if __name__ == "__main__":
    main()
