"""Stand-ins for the commands the equal-budget scripts run (recipe training, `kidneytumorseg predict`, the nnU-Net
worker): they leave the files the real commands leave, with predictions copied from the references, so the
scripts' own logic (resuming, timing, parsing, scoring, the table) runs for real in seconds."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from tiny_models import make_tiny_store

PLAN = {"configurations": {"3d_fullres": {"patch_size": [8, 24, 24], "batch_size": 2, "spacing": [3.0, 1.5, 1.5]}}}


def _option(command: Sequence[str], name: str) -> str:
    return str(command[list(command).index(name) + 1])


class FakeRunner:
    """Records every command; ``fail`` names recipes whose training fails; ``schedule`` is what recipes train."""

    def __init__(self, dataset: Path, package_source: Path, fail: Sequence[str] = (),
                 schedule: tuple[int, int] = (3, 4), recipes: Sequence[str] = ("alpha", "beta")) -> None:
        self.dataset, self.package_source, self.fail = dataset, package_source, set(fail)
        self.schedule, self.recipes = schedule, list(recipes)
        self.commands: list[list[str]] = []
        self.environments: list[dict[str, str]] = []
        self.predict_stops_after: int | None = None  # a predict killed after this many cases

    def __call__(self, command: Sequence[str], log: Path, env: dict[str, str]) -> str:
        command = [str(part) for part in command]
        self.commands.append(command)
        self.environments.append(env)
        log.parent.mkdir(parents=True, exist_ok=True)
        if command[1:3] == ["recipe", "list"]:
            return "name  description\n" + "".join(f"{name}  a recipe\n" for name in self.recipes)
        if command[1:3] == ["recipe", "run"]:
            return self._recipe(command)
        if command[1] == "predict":
            return self._copy_references(Path(_option(command, "-i")), Path(_option(command, "-o")), ".nii.gz", log)
        if "equal_budget.nnunet_worker" in command:
            return self._worker(command, env)
        raise AssertionError(f"unexpected command {command}")

    def _recipe(self, command: list[str]) -> str:
        name = command[3]
        if name in self.fail:
            raise RuntimeError(f"recipe {name} failed")
        run = Path(_option(command, "--work")) / "fold0"
        run.mkdir(parents=True, exist_ok=True)  # the real command resumes a run folder
        (run / "config.json").write_text(json.dumps({"epochs": self.schedule[0], "train_ids": ["case_00000"],
                                                     "iterations_per_epoch": self.schedule[1]}))
        (run / "history.json").write_text(json.dumps([{"epoch": 1, "seconds": 2.0}, {"epoch": 2, "seconds": 3.0}]))
        package = Path(_option(command, "--export")) / name / _option(command, "--model-version")
        shutil.copytree(self.package_source, package, dirs_exist_ok=True)  # --overwrite
        return "trained\n"

    def _copy_references(self, cases: Path, output: Path, suffix: str, log: Path) -> str:
        """Each case written, then its result line (appended to ``log`` as it comes, as the real runner does)."""
        output.mkdir(parents=True, exist_ok=True)
        lines = []
        for index, case in enumerate(sorted(path.name for path in cases.iterdir())):
            if self.predict_stops_after is not None and index >= self.predict_stops_after:
                raise RuntimeError("kidneytumorseg predict ... failed with exit code -9")
            shutil.copy(self.dataset / case / "segmentation.nii.gz", output / f"{case}{suffix}")
            (output / f"{case}.seg.nrrd").write_text("not read by the scoring")
            lines.append(json.dumps({"type": "result", "case": case, "seconds": 1.0 + index}))
            with log.open("a") as stream:
                stream.write(lines[-1] + "\n")
        return "log line on stderr\n" + "\n".join(lines) + "\n"

    def _worker(self, command: list[str], env: dict[str, str]) -> str:
        step = command[command.index("equal_budget.nnunet_worker") + 1]
        dataset = "Dataset" + f"{int(_option(command, '--dataset-id')):03d}_KiTSSynthetic"
        if step == "plan":
            folder = Path(env["nnUNet_preprocessed"]) / dataset
            folder.mkdir(parents=True)
            (folder / "nnUNetPlans.json").write_text(json.dumps(PLAN))
        elif step == "train":
            fold = _option(command, "--fold")
            final = (Path(env["nnUNet_results"]) / dataset / "EqualBudgetTrainer__nnUNetPlans__3d_fullres"
                     / f"fold_{fold}" / "checkpoint_final.pth")
            final.parent.mkdir(parents=True)
            final.write_bytes(b"weights")
            (final.parent / "training_log_2026_01_01_00_00_00.txt").write_text(
                "2026-01-01 00:00:01.0: Epoch 0\n2026-01-01 00:00:05.5: Epoch time: 4.5 s\n"
                "2026-01-01 00:00:06.0: Epoch 1\n2026-01-01 00:00:11.5: Epoch time: 5.5 s\n")
            Path(_option(command, "--record")).write_text(json.dumps({
                "fold": fold, "seconds": 5.0, "epochs": int(_option(command, "--epochs")),
                "iterations_per_epoch": int(_option(command, "--iterations")),
                "val_iterations": int(_option(command, "--val-iterations"))}))
        elif step == "predict":
            cases = _option(command, "--cases").split(",")
            output = Path(_option(command, "--output"))
            output.mkdir(parents=True, exist_ok=True)
            for case in cases:
                shutil.copy(self.dataset / case / "segmentation.nii.gz", output / f"{case}.nii.gz")
            Path(_option(command, "--record")).write_text(json.dumps({
                "seconds": {case: 2.0 for case in cases}, "median_seconds": 2.0, "parameters_per_fold": 1000,
                "mirroring": "--no-mirroring" not in command, "folds": _option(command, "--folds").split(",")}))
        return f"worker {step}\n"

    def count(self, *words: str) -> int:
        """How many recorded commands contain every word."""
        return sum(all(word in command for word in words) for command in self.commands)


def tiny_package(root: Path) -> Path:
    """A valid model package folder (tests/tiny_models.py's tiny@1.0.0, random weights)."""
    return make_tiny_store(root).user_dir / "tiny" / "1.0.0"
