"""The training report of a run folder: report.png and report.md from history.json (+ optional files)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from kidneytumorseg_training import validation
from kidneytumorseg_training.report import ReportError, format_duration, write_training_report


def _history(epochs: int) -> list[dict]:
    return [
        {
            "epoch": epoch,
            "train_loss": 1.2 - 0.15 * epoch,
            "val_loss": 1.3 - 0.12 * epoch,
            # cyst absent from the validation patches of some epochs: null (JSON) or NaN (Python's json)
            "val_dice": {"kidney": 0.5 + 0.08 * epoch, "tumor": 0.1 * epoch,
                         "cyst": None if epoch % 2 else float("nan") if epoch == 2 else 0.05 * epoch},
            "lr": 0.01 * (1 - epoch / 10) ** 0.9,
            "seconds": 61.5,
            "data_wait_fraction": 0.1 * (epoch % 3),
        }
        for epoch in range(epochs)
    ]


def _write(path, data) -> None:
    path.write_text(json.dumps(data))  # Python's json writes NaN as the token NaN, which it reads back


def _check_png(path) -> None:
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= 800 and image.height >= 250


def test_report_of_five_epochs_with_config_and_validation(tmp_path):
    _write(tmp_path / "history.json", _history(5))
    _write(tmp_path / "config.json", {"name": "fold0-demo", "parameters": 1234567})
    reference = np.zeros((10, 10, 10), dtype=np.uint8)
    reference[2:8, 2:8, 2:8] = 1
    reference[4:6, 4:6, 4:6] = 2
    case = validation.CaseResult("case_1", validation.evaluate_prediction(reference, reference, (2.0, 2.0, 2.0)))
    validation.write_validation_report(validation.ValidationResult((case,), validation.summarize([case])), tmp_path)

    png, markdown = write_training_report(tmp_path)
    assert (png, markdown) == (tmp_path / "report.png", tmp_path / "report.md")
    _check_png(png)
    text = markdown.read_text(encoding="utf-8")
    assert "# Training report: fold0-demo" in text
    assert "Epochs: 5" in text and "Parameters: 1,234,567" in text
    assert "5 min 08 s" in text  # 5 x 61.5 s
    assert "Mean data-wait share: 8.0%" in text  # (0 + .1 + .2 + 0 + .1) / 5
    assert "| 4 | 0.6000 | 0.8200 | 0.8200 | 0.4000 | 0.2000 |" in text  # last epoch row
    assert "Best mean validation Dice (classes present): 0.5200 at epoch 3" in text  # (0.74 + 0.30) / 2
    assert "| kidney_and_mass | 1.0000 |" in text and "| tumor | 1.0000 |" in text
    assert "mean Dice 1.0000" in text and "![training curves](report.png)" in text
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_report_of_one_epoch_without_optional_files(tmp_path):
    run = tmp_path / "run-a"
    run.mkdir()
    history = _history(1)
    history[0]["val_dice"] = {"kidney": None, "tumor": None, "cyst": None}
    del history[0]["data_wait_fraction"]
    _write(run / "history.json", history)
    png, markdown = write_training_report(run)
    _check_png(png)
    text = markdown.read_text(encoding="utf-8")
    assert "# Training report: run-a" in text and "Epochs: 1" in text
    assert "Parameters" not in text and "Final validation" not in text
    assert "| 0 | 1.2000 | 1.3000 | – | – | – |" in text


def test_repeated_epochs_keep_the_last_entry(tmp_path):
    history = _history(3)
    resumed = dict(history[2], train_loss=0.123)  # a resumed run rewrote epoch 2
    _write(tmp_path / "history.json", [*history, resumed])
    text = write_training_report(tmp_path)[1].read_text(encoding="utf-8")
    assert "Epochs: 3" in text and "| 2 | 0.1230 |" in text


def test_missing_or_malformed_history_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="history.json: no such file"):
        write_training_report(tmp_path)
    _write(tmp_path / "history.json", [])
    with pytest.raises(ReportError, match="no finished epoch"):
        write_training_report(tmp_path)
    _write(tmp_path / "history.json", [{"train_loss": 1.0}])
    with pytest.raises(ReportError, match="'epoch'"):
        write_training_report(tmp_path)
    assert not (tmp_path / "report.png").exists() and not (tmp_path / "report.md").exists()


def test_format_duration():
    assert [format_duration(s) for s in (12.34, 65, 3725)] == ["12.3 s", "1 min 05 s", "1 h 02 min"]
