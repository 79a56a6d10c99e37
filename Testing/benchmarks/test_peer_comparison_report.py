"""The report: a row's cells (the "vs nnU-Net" ratio, the memory columns), the table layout, the goal lines
("met" / "NOT met") and the whole printed report from saved outputs and made-up timings."""

from __future__ import annotations

import argparse
import re

import numpy as np
import pytest
from peer_comparison.preparation import Setup
from peer_comparison.report import HEADER, format_table, report, row, verdict_lines
from peer_comparison.variants import AGREEMENT_VARIANTS, AS_SHIPPED, OURS, OURS_HALF


def cells(line: str) -> list[str]:
    """A table line's cells (they are two or more spaces apart)."""
    return re.split(r" {2,}", line.strip())


def runs(*seconds: float, peak: float = 500.0, before: float = 400.0) -> list[dict]:
    return [{"seconds": s, "peak_rss_mb": peak, "rss_before_mb": before, "threads": 1} for s in seconds]


def test_row_ratio_median_and_memory():
    measured = [{"peak_rss_mb": 100.0, "rss_before_mb": 90.0}, {"peak_rss_mb": 300.0, "rss_before_mb": 250.0}]
    cells = row("ours", "softmax", [3.0, 1.0, 2.0], 4.0, measured, ("1.0e-04", "2.0e-05", "99.990%"))
    assert cells == ["ours", "softmax", "2.00 (n=3)", "0.50x", "200", "+30", "1.0e-04", "2.0e-05", "99.990%"]
    assert row("total", "sum", [5.0], 2.0, None) == ["total", "sum", "5.00 (n=1)", "2.50x", "-", "-", "-", "-", "-"]


def test_format_table_aligns_columns_and_strips_trailing_space():
    lines = format_table([["ours", "a", "1.00 (n=1)", "1.00x", "5", "+1", "0", "0", "100%"],
                          ["nnU-Net v2", "as shipped", "1.00 (n=1)", "1.00x", "5", "+1", "-", "-", "-"]])
    assert len(lines) == 4
    assert lines[0].startswith("peer        settings    median s")  # "peer" as wide as "nnU-Net v2"
    widths = [10, 10, 10, 10, 11, 11, 16, 10, 13]  # "nnU-Net v2", "as shipped", "1.00 (n=1)", then the header's
    assert [len(h) for h in HEADER][3:] == widths[3:]
    assert lines[1] == "  ".join("-" * width for width in widths)
    assert lines[2].startswith("ours        a           1.00 (n=1)  1.00x")
    assert all(line == line.rstrip() for line in lines)
    assert len({line.index("1.00x") for line in lines[2:]}) == 1


def timings(ours: float, nnunet: float, forward: float = 1.0, cascade: float | None = None) -> dict:
    results = {OURS.key: runs(ours), AS_SHIPPED[0].key: runs(nnunet), AS_SHIPPED[1].key: runs(nnunet),
               "forward": runs(forward)}
    if cascade is not None:
        results |= {"cascade": [{**runs(cascade)[0], "boxes": [[[0, 4], [0, 8], [0, 8]]]}], "localizer": runs(0.25)}
    return results


@pytest.mark.parametrize("ours, verdict", [(4.0, "0.80x, met."), (3.0, "0.60x, met."), (4.5, "0.90x, NOT met.")])
def test_goal_at_identical_settings(ours, verdict):
    lines = verdict_lines(timings(ours, 5.0), {}, None)
    assert lines[0] == f"Goal at identical settings, ours <= 0.80x nnU-Net's time: {verdict}"
    assert lines[1].startswith("The eager network forward alone takes 1.00 s = 20% of nnU-Net's time")
    assert f"and {100 / ours:.0f}% of ours" in lines[1]
    assert len(lines) == 2


def test_agreement_lines_below_or_not():
    differences = {AGREEMENT_VARIANTS[1]: (5e-4, 1e-5, 1.0), AGREEMENT_VARIANTS[0]: (2e-3, 1e-5, 1.0)}
    lines = verdict_lines(timings(4.0, 5.0), differences, None)[2:]
    assert lines == ["max |dp| nnU-Net v2 (softmax averaged, our Gaussian, fp32) vs ours: 5.0e-04, below 1e-3.",
                     "max |dp| nnU-Net v2 (softmax averaged, our Gaussian, fp16) vs ours: 2.0e-03, NOT below 1e-3."]


def setup(**changes) -> Setup:
    values = dict(case="case_x", spacing=(3.0, 2.0, 2.0), original_shape=(4, 6, 6), shape=(4, 8, 8),
                  padding=[(0, 0), (1, 1), (1, 1)], patch_size=(4, 4, 4), overlap=0.5, mirror_axes=(),
                  num_classes=2, network={"features_per_stage": [4, 8]}, parameters=12345, tiles=9, margin_mm=15.0,
                  localizer_spacing=(6.0, 6.0, 6.0), localizer_patch=(2, 4, 4), localizer_network={},
                  coarse_shape=(2, 4, 4), threads=1, notes=["a note"])
    return Setup(**(values | changes))


def write_outputs(workdir, shape=(4, 8, 8)) -> None:
    ours = np.stack([np.full(shape, 0.3, np.float32), np.full(shape, 0.7, np.float32)])
    np.save(workdir / f"{OURS.key}.npy", ours)
    shift = np.float32(1e-4) * np.array([-1, 1], np.float32)[:, None, None, None]
    np.save(workdir / f"{OURS_HALF.key}.npy", ours + shift)
    for variant in AS_SHIPPED:
        np.save(workdir / f"{variant.key}.npy", ours)
    flipped = ours.copy()
    flipped[:, 0, 0, 0] = [0.9, 0.1]  # one voxel of the cascade's box with another label
    np.save(workdir / "cascade-probabilities.npy", flipped)
    kidney = np.zeros(shape, dtype=bool)
    kidney[1:3, 2:6, 2:6] = True
    np.save(workdir / "kidney.npy", kidney)


def test_report_prints_table_and_goals(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["predictor_vs_peers.py", "--repeats", "1"])
    write_outputs(tmp_path)
    results = timings(2.0, 4.0, forward=1.0, cascade=0.75)
    results = {OURS.key: results[OURS.key], AS_SHIPPED[0].key: results[AS_SHIPPED[0].key],
               AS_SHIPPED[1].key: runs(8.0), OURS_HALF.key: runs(1.0), "forward": results["forward"],
               "cascade": results["cascade"], "localizer": results["localizer"]}
    args = argparse.Namespace(cascade=True, repeats=1)
    report(args, setup(), tmp_path, results, minutes=1.25)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Predictor vs peers: one network, one set of weights, one preprocessed volume"
    assert lines[1].endswith("predictor_vs_peers.py --repeats 1")
    assert "torch" in lines[2] and "with 1 threads" in lines[2]
    assert lines[3] == ("Case: case_x, clip_zscore-normalised and resampled to (3.0, 2.0, 2.0) mm: (4, 6, 6) voxels, "
                        "zero-padded to (4, 8, 8) (per axis [(0, 0), (1, 1), (1, 1)]).")
    assert "features [4, 8], 12,345 parameters" in lines[4]
    assert lines[5].endswith("mirroring off, batch 1, CPU: 9 tiles.")
    assert lines[6] == "Note: a note."
    assert lines[7].endswith("1 repeats of the timed rows, interleaved; 1.2 min in all.")
    table = lines[9:lines.index("", 9)]
    assert cells(table[0]) == HEADER
    assert len(table) == 2 + 8
    rows = [cells(line) for line in table[2:]]
    assert [r[0] for r in rows] == ["ours", "nnU-Net v2", "MONAI", "ours", "eager network forward alone",
                                    "ours, coarse-to-fine", "localizer network", "ours, coarse-to-fine total"]
    assert rows[0][2:] == ["2.00 (n=1)", "0.50x", "500", "+100", "0", "0", "100%"]
    assert rows[1][1:] == ["as shipped: logits averaged, own Gaussian, fp16", "4.00 (n=1)", "1.00x", "500", "+100",
                           "0.0e+00", "0.0e+00", "100.000%"]
    assert rows[2][2:4] == ["8.00 (n=1)", "2.00x"]
    assert rows[3][1] == "softmax averaged, own Gaussian, network in bfloat16 (--precision half)"
    assert rows[3][6:] == ["1.0e-04", "1.0e-04", "100.000%"]
    assert rows[4][1:] == ["same tiles and mirrorings, no blending, fast path off", "1.00 (n=1)", "0.25x", "500",
                           "+100", "-", "-", "-"]
    assert rows[5][1:] == ["reference-mask boxes, 15 mm margin", "0.75 (n=1)", "0.19x", "500", "+100",
                           "6.0e-01 in boxes", "4.5e-01", "99.609% in boxes"]
    assert rows[6][1:4] == ["random weights, 2x4x4 at 6x6x6 mm", "0.25 (n=1)", "0.06x"]
    assert rows[7][1:] == ["the two rows above, per repeat", "1.00 (n=1)", "0.25x", "-", "-", "0.0e+00 on kidneys",
                           "0.0e+00", "100.000% on kidneys"]
    verdicts = lines[lines.index("", 9) + 1:]
    assert verdicts[0] == "Goal at identical settings, ours <= 0.80x nnU-Net's time: 0.50x, met."
    assert [line.split(" vs ours: ")[1] for line in verdicts[2:5]] == ["0.0e+00, below 1e-3.", "0.0e+00, below 1e-3.",
                                                                       "1.0e-04, below 1e-3."]
    assert verdicts[5] == ("Goal coarse-to-fine <= 0.25x nnU-Net's time: 0.25x with the localizer network "
                           "(0.19x without), met.")
    assert verdicts[6] == ("Cascade boxes (S, P, L voxel ranges): [[[0, 4], [0, 8], [0, 8]]]: 256 of 256 voxels "
                           "(100.0%).")
    assert "equal the full run's on 99.6094% of box voxels and 100.0000% of the 32 reference" in verdicts[7]
    assert verdicts[7].endswith("the same labels on the kidneys.")


def test_report_without_cascade_and_goal_not_met(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["predictor_vs_peers.py"])
    write_outputs(tmp_path)
    results = timings(5.0, 4.0)
    report(argparse.Namespace(cascade=False, repeats=1), setup(notes=[]), tmp_path, results, minutes=0.5)
    out = capsys.readouterr().out
    assert "Goal at identical settings, ours <= 0.80x nnU-Net's time: 1.25x, NOT met." in out
    assert "coarse-to-fine" not in out and "Note:" not in out
    # 7 header lines, a blank, the table's header and rule, 4 rows, a blank, the goal, the forward share and
    # the max |dp| of the two as-shipped peers.
    assert out.count("\n") == 7 + 1 + 2 + 4 + 1 + 4
    assert "(as shipped: logits averaged, own Gaussian, fp32) vs ours: 0.0e+00, below 1e-3." in out
