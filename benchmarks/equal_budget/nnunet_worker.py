"""nnU-Net v2's own planning, preprocessing, trainer and predictor, run in a child process.

    python -m equal_budget.nnunet_worker plan|train|predict ...   (started by benchmarks/nnunet_peer_training.py)

The parent sets nnUNet_raw / nnUNet_preprocessed / nnUNet_results (nnunetv2 reads them when it is imported),
nnUNet_n_proc_DA and nnUNet_def_n_proc, and puts benchmarks/ on PYTHONPATH.

nnU-Net finds trainers by class name, searching nnunetv2.training.nnUNetTrainer (then $nnUNet_extTrainer). That
search imports every module of the package, among them the Primus trainers, which import timm and so
torchvision; torchvision's compiled ops do not load with this project's CPU torch (and it is not installed
here), so the search itself fails. We therefore do what nnunetv2.run.run_training does for one fold
(get_trainer_from_args, maybe_load_checkpoint, run_training) but construct the trainer class directly: a
subclass of nnUNetTrainer whose only change is the schedule (num_epochs, num_iterations_per_epoch,
num_val_iterations_per_epoch). Prediction mirrors nnUNetPredictor.initialize_from_trained_model_folder with
nnUNetTrainer.build_network_architecture and manual_initialization; ``--half-precision`` wraps it in
bfloat16 autocast on a CPU. Nothing installed is patched, and torchvision is refused in this process so that
nothing can pull it in unnoticed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import statistics
import time
from pathlib import Path
from typing import Any

from peer_comparison.torchvision_guard import block_torchvision

logger = logging.getLogger("nnunet_worker")

CONFIGURATION = "3d_fullres"
PLANS = "nnUNetPlans"
TRAINER_NAME = "EqualBudgetTrainer"
DA_PROCESSES_ENV = "nnUNet_n_proc_DA"


def model_folder(dataset_name: str) -> Path:
    """nnU-Net's results folder of our trainer: <nnUNet_results>/<dataset>/<trainer>__<plans>__<configuration>."""
    from nnunetv2.paths import nnUNet_results

    return Path(nnUNet_results) / dataset_name / f"{TRAINER_NAME}__{PLANS}__{CONFIGURATION}"


def budget_trainer_class(epochs: int, iterations: int, val_iterations: int) -> type:
    """nnUNetTrainer with the schedule set to ``epochs`` x ``iterations`` (and ``val_iterations`` per epoch)."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    class EqualBudgetTrainer(nnUNetTrainer):
        def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                     device: torch.device = torch.device("cpu")) -> None:  # noqa: B008 - nnU-Net's signature
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.num_epochs = epochs
            self.num_iterations_per_epoch = iterations
            self.num_val_iterations_per_epoch = val_iterations
            # nnU-Net writes checkpoint_latest.pth every 50 epochs; a CPU epoch can take ten minutes, so keep
            # every epoch: a stopped run then loses at most one (a rerun continues from it).
            self.save_every = 1

    return EqualBudgetTrainer


def plan(args: argparse.Namespace) -> None:
    """Fingerprint (with nnU-Net's integrity check), plan with nnU-Net's default planner, preprocess 3d_fullres."""
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprint_dataset,
        plan_experiment_dataset,
        preprocess_dataset,
    )

    # The planner's memory estimate calls torch.set_num_threads(nnUNet_n_proc_DA), which refuses 0 (0 means
    # "augment in the training process" to the trainer, so the parent may well have set it).
    os.environ[DA_PROCESSES_ENV] = str(max(1, int(os.environ.get(DA_PROCESSES_ENV, "1"))))
    extract_fingerprint_dataset(args.dataset_id, DatasetFingerprintExtractor, num_processes=args.processes,
                                check_dataset_integrity=True, clean=True, verbose=False, show_progress_bar=False)
    plan_experiment_dataset(args.dataset_id, ExperimentPlanner, gpu_memory_target_in_gb=args.gpu_memory_gb)
    preprocess_dataset(args.dataset_id, PLANS, (CONFIGURATION,), (args.processes,), verbose=False,
                       show_progress_bar=False)


def train(args: argparse.Namespace) -> None:
    """One fold with nnU-Net's trainer at the given schedule; continues from checkpoint_latest.pth if one exists."""
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    torch.set_num_threads(args.threads)
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True  # as nnunetv2.run.run_training does
    dataset_name = convert_id_to_dataset_name(args.dataset_id)
    preprocessed = Path(nnUNet_preprocessed) / dataset_name
    plans = load_json(str(preprocessed / f"{PLANS}.json"))
    plans["continue_training"] = False
    fold: int | str = args.fold if args.fold == "all" else int(args.fold)
    trainer_class = budget_trainer_class(args.epochs, args.iterations, args.val_iterations)
    trainer = trainer_class(plans=plans, configuration=CONFIGURATION, fold=fold,
                            dataset_json=load_json(str(preprocessed / "dataset.json")),
                            device=torch.device(args.device))
    latest = Path(trainer.output_folder) / "checkpoint_latest.pth"
    if latest.is_file():
        logger.info("Continuing from %s", latest)
        trainer.load_checkpoint(str(latest))
    started = time.perf_counter()
    trainer.run_training()  # ends with checkpoint_final.pth; nnU-Net's own final validation is not run
    record = {"fold": args.fold, "seconds": time.perf_counter() - started,
              "epochs": args.epochs, "iterations_per_epoch": args.iterations, "val_iterations": args.val_iterations,
              "batch_size": trainer.batch_size, "patch_size": list(trainer.configuration_manager.patch_size),
              "parameters": sum(p.numel() for p in trainer.network.parameters())}
    Path(args.record).write_text(json.dumps(record, indent=2) + "\n")


def _initialized_predictor(dataset_name: str, folds: list[str], mirroring: bool, device: str) -> Any:
    """nnUNetPredictor over checkpoint_final.pth of ``folds`` (initialize_from_trained_model_folder, see above)."""
    import numpy as np
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = model_folder(dataset_name)
    dataset_json = load_json(str(folder / "dataset.json"))
    plans_manager = PlansManager(load_json(str(folder / "plans.json")))
    parameters, checkpoint = [], {}
    # weights_only: nothing in the checkpoint may run code. nnU-Net's training log holds numpy scalars, so
    # exactly those data types are allowed besides tensors and plain containers.
    numpy_data = [np._core.multiarray.scalar, np.dtype, *{type(np.dtype(t)) for t in (np.float32, np.float64,
                                                                                     np.int64, np.bool_)}]
    with torch.serialization.safe_globals(numpy_data):
        for fold in folds:
            checkpoint = torch.load(folder / f"fold_{fold}" / "checkpoint_final.pth", map_location="cpu",
                                    weights_only=True)
            parameters.append(checkpoint["network_weights"])
    configuration_manager = plans_manager.get_configuration(checkpoint["init_args"]["configuration"])
    network = nnUNetTrainer.build_network_architecture(
        plans_manager, configuration_manager,
        determine_num_input_channels(plans_manager, configuration_manager, dataset_json),
        plans_manager.get_label_manager(dataset_json).num_segmentation_heads, enable_deep_supervision=False)
    network.load_state_dict(parameters[0])
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
                                perform_everything_on_device=device == "cuda", device=torch.device(device),
                                verbose=False, verbose_preprocessing=False, allow_tqdm=False)
    predictor.manual_initialization(network, plans_manager, configuration_manager, parameters, dataset_json,
                                    checkpoint["trainer_name"], checkpoint.get("inference_allowed_mirroring_axes"))
    return predictor


def _cpu_half_precision(enabled: bool) -> Any:
    """bfloat16 autocast around nnU-Net's CPU prediction (the arithmetic our engine's default uses on a CPU with
    native bfloat16). nnU-Net's predictor autocasts by itself only on CUDA (float16); on a CPU it runs float32."""
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def predict(args: argparse.Namespace) -> None:
    """Each test case with nnU-Net's predictor (sliding window 0.5, Gaussian, mirroring as shipped), timed."""
    import torch
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    torch.set_num_threads(args.threads)
    predictor = _initialized_predictor(convert_id_to_dataset_name(args.dataset_id), args.folds.split(","),
                                       not args.no_mirroring, args.device)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    seconds = {}
    for case in args.cases.split(","):
        image = Path(args.images) / f"{case}_0000.nii.gz"
        started = time.perf_counter()
        # read, nnU-Net's preprocessing, sliding window over every fold, resampling back, write
        with _cpu_half_precision(args.half_precision and args.device == "cpu"):
            predictor.predict_from_files_sequential([[str(image)]], [str(output / case)], save_probabilities=False,
                                                    overwrite=True)
        seconds[case] = time.perf_counter() - started
        logger.info("%s: %.1f s", case, seconds[case])
    record = {"seconds": seconds, "median_seconds": statistics.median(seconds.values()),
              "mirroring": not args.no_mirroring,
              "precision": "float16 autocast (nnU-Net's own on CUDA)" if args.device == "cuda" else
              "bfloat16 autocast" if args.half_precision else "float32", "folds": args.folds.split(","),
              "device_name": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
              "parameters_per_fold": sum(p.numel() for p in predictor.network.parameters())}
    Path(args.record).write_text(json.dumps(record, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    planning = sub.add_parser("plan")
    planning.add_argument("--dataset-id", type=int, required=True)
    planning.add_argument("--processes", type=int, default=1)
    planning.add_argument("--gpu-memory-gb", type=float, default=None)
    training = sub.add_parser("train")
    training.add_argument("--dataset-id", type=int, required=True)
    training.add_argument("--fold", default="0")
    training.add_argument("--epochs", type=int, required=True)
    training.add_argument("--iterations", type=int, required=True)
    training.add_argument("--val-iterations", type=int, required=True)
    training.add_argument("--threads", type=int, default=1)
    training.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    training.add_argument("--record", required=True)
    predicting = sub.add_parser("predict")
    predicting.add_argument("--dataset-id", type=int, required=True)
    predicting.add_argument("--folds", default="0")
    predicting.add_argument("--cases", required=True)
    predicting.add_argument("--images", required=True)
    predicting.add_argument("--output", required=True)
    predicting.add_argument("--threads", type=int, default=1)
    predicting.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    predicting.add_argument("--no-mirroring", action="store_true")
    predicting.add_argument("--half-precision", action="store_true",
                            help="on a CPU, predict under bfloat16 autocast (nnU-Net itself runs float32 there)")
    predicting.add_argument("--record", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    block_torchvision()
    {"plan": plan, "train": train, "predict": predict}[args.step](args)


if __name__ == "__main__":
    main()
