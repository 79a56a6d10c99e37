"""The measurements: the order of the runs, one run of each task on a tiny prepared case, and the subprocess
protocol (the entry script called with --only/--workdir/--result)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from kits_case import write_case
from peer_comparison import measurement
from peer_comparison.measurement import ENTRY_POINT, forward_alone, measure, run_all, run_measurement
from peer_comparison.preparation import Setup, load_network, prepare
from peer_comparison.variants import AGREEMENT_VARIANTS, AS_SHIPPED, EXTRA_VARIANTS, OURS, OURS_EAGER, OURS_HALF

TIMED = [OURS.key, AS_SHIPPED[0].key, AS_SHIPPED[1].key, OURS_EAGER.key, OURS_HALF.key, "forward", "cascade",
         "localizer"]


def options(**changes) -> argparse.Namespace:
    values = dict(cascade=True, repeats=3, profile=False, agreement_rows=True, all_variants=False)
    return argparse.Namespace(**(values | changes))


@pytest.fixture
def calls(monkeypatch) -> list[tuple[str, bool]]:
    """run_measurement replaced by a recorder returning a result whose seconds count the calls."""
    made: list[tuple[str, bool]] = []

    def fake(task, workdir, save_output, script=ENTRY_POINT):
        made.append((task, save_output))
        return {"task": task, "seconds": float(len(made))}

    monkeypatch.setattr(measurement, "run_measurement", fake)
    return made


def test_timed_rows_rotate_then_the_ones_run_once(calls, tmp_path):
    results = run_all(options(), tmp_path)
    assert calls[0] == ("forward", False)  # the warm-up, discarded
    n = len(TIMED)
    repeats = [[task for task, _ in calls[1 + n * r:1 + n * (r + 1)]] for r in range(3)]
    assert repeats == [TIMED, TIMED[1:] + TIMED[:1], TIMED[2:] + TIMED[:2]]
    assert all(save == (index < n) for index, (_, save) in enumerate(calls[1:1 + 3 * n]))  # repeat 1's outputs only
    assert calls[1 + 3 * n:] == [(v.key, True) for v in AGREEMENT_VARIANTS]
    assert list(results) == TIMED + [v.key for v in AGREEMENT_VARIANTS]
    assert [len(results[task]) for task in results] == [3] * n + [1] * 3
    assert results["forward"][0]["seconds"] == 1.0 + TIMED.index("forward") + 1  # the warm-up's result is not kept


def test_options_change_the_runs(calls, tmp_path):
    results = run_all(options(cascade=False, repeats=1, profile=True, agreement_rows=False, all_variants=True),
                      tmp_path)
    assert [task for task, _ in calls] == ["forward", *TIMED[:6], "profile", *(v.key for v in EXTRA_VARIANTS)]
    assert "cascade" not in results and len(results["profile"]) == 1


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A prepared tiny case: (8, 24, 24) voxels, tiles of (8, 16, 16), a 4-feature network."""
    root = tmp_path_factory.mktemp("peer_measurement")
    write_case(root / "case", seed=2)
    args = argparse.Namespace(case=root / "case", spacing=(3.0, 2.0, 2.0), patch=(8, 16, 16), features=4,
                              max_features=8, overlap=0.5, mirror=False, align=True, margin_mm=6.0,
                              localizer_spacing=(6.0, 6.0, 6.0), localizer_patch=(4, 8, 8), localizer_features=4,
                              threads=1)
    prepare(args, root)
    return root


@pytest.mark.usefixtures("one_torch_thread")
def test_measure_each_task_in_process(workdir):
    ours = measure(OURS.key, workdir, save_output=True)
    assert ours["task"] == OURS.key and ours["seconds"] > 0 and ours["threads"] == 1
    assert ours["peak_rss_mb"] >= ours["rss_before_mb"] > 0
    probabilities = np.load(workdir / f"{OURS.key}.npy")
    assert probabilities.shape == (4, 8, 24, 24)
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-5)

    cascade = measure("cascade", workdir, save_output=True)
    assert cascade["boxes"] and all(len(box) == 3 for box in cascade["boxes"])
    assert np.load(workdir / "cascade-probabilities.npy").shape == (4, 8, 24, 24)
    assert np.load(workdir / "cascade-labels.npy").shape == (8, 24, 24)
    assert measure("localizer", workdir, save_output=False)["seconds"] > 0
    profile = measure("profile", workdir, save_output=False)
    assert len(profile["profile"]) == 8 and all(own >= 0 for _, own in profile["profile"])
    with pytest.raises(ValueError, match="peer-accumulate-weights-precision"):
        measure("nothing", workdir, save_output=False)


@pytest.mark.usefixtures("one_torch_thread")
def test_forward_alone_runs_every_tile_and_mirroring(workdir):
    setup = Setup.load(workdir)
    network = load_network(setup.network, workdir / "network.safetensors")
    shapes = []
    network.register_forward_hook(lambda module, inputs, output: shapes.append(tuple(inputs[0].shape)))
    forward_alone(network, np.load(workdir / "volume.npy"), setup)
    assert shapes == [(1, 1, 8, 16, 16)] * 4
    setup.mirror_axes = (0, 2)
    shapes.clear()
    forward_alone(network, np.load(workdir / "volume.npy"), setup)
    assert len(shapes) == 4 * 4


def test_one_measurement_in_a_fresh_process(workdir):
    result = run_measurement("forward", workdir, save_output=False)
    assert result["task"] == "forward" and result["seconds"] > 0 and result["threads"] == 1
    files = list(workdir.glob("result-*.json"))
    assert files and json.loads(files[-1].read_text())["task"] == "forward"
    with pytest.raises(RuntimeError, match="The bogus measurement failed"):
        run_measurement("bogus", workdir, save_output=False, script=ENTRY_POINT)
