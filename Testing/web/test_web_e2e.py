"""End to end in a real browser: Playwright drives Debian's chromium (executable_path, never a download)
against the real server on a free loopback port, with the real engine and the bundled model kits-demo.

test_segment_paint_and_export: load the sample, Segment (fast) - after one cancelled run - wait for the
three segments, export the draft, paint a stroke into tumor in the axial view, export again, and check that
the second export holds the stroke. test_finetune_then_segment_with_the_new_version (about 25 s on
two cores with kits-demo 1.2.0): the same run continued - Fine-tune from the two exported corrections (after one
cancelled fine-tuning), the new version is selected, and Segment again with it. Screenshots go to
``<pytest tmp>/artifacts`` (and to $KIDNEYTUMORSEG_WEB_ARTIFACTS when set, for CI to keep).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from web_helpers import CHROMIUM, CHROMIUM_ARGS, SAMPLE_DIR, missing_browser_requirements, start_server

from kidneytumorseg.model_store import ModelStore, default_bundled_dir
from kidneytumorseg_training.finetune import next_patch_version

SHORT_FINETUNE = "--epochs 1 --iterations 2 --workers 0 --no-augmentation --seed 1"
SEGMENT_TIMEOUT_MS = 300_000
FINETUNE_TIMEOUT_MS = 900_000
BUNDLED = ModelStore(default_bundled_dir(), Path("no-user-models")).resolve("kits-demo")  # the newest bundled
SEGMENTED_BY = f"kits-demo@{BUNDLED.version}"
FINETUNED_VERSION = next_patch_version(BUNDLED.version)  # the version the fine-tuning writes


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    reason = missing_browser_requirements()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("web-e2e")
    (root / "data").mkdir()
    shutil.copy(SAMPLE_DIR / "imaging.nii.gz", root / "data" / "case-a.nii.gz")
    server = start_server(["--data-dir", str(root / "data"), "--corrections-dir", str(root / "corrections"),
                           "--models-dir", str(root / "models"), "--work-dir", str(root / "work"),
                           "--max-upload-mb", "3", "--device", "cpu", "--engine-threads", "2",
                           "--finetune-args", SHORT_FINETUNE], root / "server.log")
    server.root = root
    yield server
    server.stop()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("artifacts")
    yield folder
    keep = os.environ.get("KIDNEYTUMORSEG_WEB_ARTIFACTS")
    if keep:
        shutil.copytree(folder, keep, dirs_exist_ok=True)


@pytest.fixture(scope="module")
def page(web):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(60_000)
        page.goto(web.url)
        page.wait_for_selector("#btn-sample")
        yield page
        browser.close()


def state(page: Any, key: str) -> Any:
    return page.evaluate("key => window.trame.state.get(key)", key)


def shot(page: Any, artifacts: Path, name: str) -> None:
    page.wait_for_timeout(800)  # let the views send the frame of the last change
    page.screenshot(path=str(artifacts / name))


def views_have_frames(page: Any) -> None:
    page.wait_for_function("() => { const i = [...document.querySelectorAll('img.image-display-area')];"
                           " return i.length === 4 && i.every(x => x.complete && x.naturalWidth > 0); }")


def no_error(page: Any, web: Any) -> None:
    error = state(page, "error")
    assert not error, f"{error}\n{web.log_tail()}"


def volume_ml(page: Any, segment: str) -> float:
    return next(row["ml"] for row in state(page, "volumes") if row["id"] == segment)


def segment(page: Any, web: Any, replace: bool = False) -> None:
    runs = state(page, "segment_runs")
    page.click("#btn-segment")
    if replace:
        page.click("#btn-confirm-replace")
    page.wait_for_selector("#segment-progress", state="visible")
    page.wait_for_function("n => window.trame.state.get('segment_runs') > n || window.trame.state.get('error')",
                           arg=runs, timeout=SEGMENT_TIMEOUT_MS)
    no_error(page, web)


def export(page: Any, web: Any, case_id: str) -> Path:
    exports = state(page, "exports")
    page.fill("#case-id", case_id)
    page.wait_for_function("id => window.trame.state.get('case_id') === id", arg=case_id)
    page.click("#btn-export")
    page.wait_for_function("n => window.trame.state.get('exports') > n || window.trame.state.get('error')",
                           arg=exports)
    no_error(page, web)
    return web.root / "corrections" / f"case_{case_id}"


def labels(case: Path) -> tuple[np.ndarray, np.ndarray]:
    """The exported label array (numpy order: ITK index reversed) and, per numpy axis, the index of the
    patient axis it runs along (0 right-left, 1 anterior-posterior, 2 inferior-superior)."""
    image = sitk.ReadImage(str(case / "segmentation.nii.gz"))
    direction = np.array(image.GetDirection()).reshape(3, 3)  # columns: the index axes in LPS
    patient_axis = np.abs(direction).argmax(axis=0)[::-1]
    return sitk.GetArrayFromImage(image), patient_axis


def drag(page: Any, points: list[tuple[float, float]], view: int = 0) -> None:
    """Drag through ``points`` (fractions of the view's width and height; view 0: axial) as a hand would:
    down, move in steps, up."""
    box = page.locator("img.image-display-area").nth(view).bounding_box()
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*xy[0])
    page.wait_for_timeout(150)
    page.mouse.down()
    page.wait_for_timeout(150)
    for point in xy[1:]:
        page.mouse.move(*point, steps=15)
    page.wait_for_timeout(150)
    page.mouse.up()


def stroke(page: Any) -> None:
    drag(page, [(0.40, 0.45), (0.60, 0.45)])


def use_tool(page: Any, web: Any, tool: str) -> None:
    page.click(f"#btn-{tool}")
    page.wait_for_function("tool => window.trame.state.get('effect') === tool", arg=tool)
    no_error(page, web)


def edited(page: Any, segment: str, compare: str, ml: float) -> float:
    """Wait until the server reports the segment's volume ``compare`` (<, >) ``ml``; the new volume."""
    page.wait_for_function(f"([id, ml]) => window.trame.state.get('volumes').find(v => v.id === id).ml {compare} ml",
                           arg=[segment, ml])
    return volume_ml(page, segment)


def segment_paint_and_export(page: Any, web: Any, artifacts: Path) -> tuple[Path, Path]:
    page.click("#btn-sample")
    page.wait_for_function("() => window.trame.state.get('volume_name') === 'kits-synthetic-00112'")
    views_have_frames(page)
    page.click("#quality-fast")
    page.wait_for_function("() => window.trame.state.get('quality') === 'fast'")

    # Segment, cancel: the progress bar shows, nothing is added.
    page.click("#btn-segment")
    page.wait_for_selector("#btn-cancel-segment")
    page.click("#btn-cancel-segment")
    page.wait_for_function("() => !window.trame.state.get('segment_running')")
    assert "cancelled" in state(page, "message") and state(page, "volumes") == []

    segment(page, web)
    for name in ("kidney", "tumor", "cyst"):
        page.wait_for_selector(f"#vol-{name}")
    assert volume_ml(page, "kidney") > 50
    assert SEGMENTED_BY in state(page, "message")
    shot(page, artifacts, "01-segmented.png")

    draft = export(page, web, "e2e-draft")
    use_tool(page, web, "paint")  # the Paint snag would show here
    assert state(page, "active_segment") == "tumor"
    stroke(page)
    # The page sends mouse events one at a time; a click could overtake the stroke: wait for the new volume.
    edited(page, "tumor", ">", volume_ml(page, "tumor"))
    page.click("#btn-none")
    corrected = export(page, web, "e2e-corrected")
    shot(page, artifacts, "02-painted-and-exported.png")
    return draft, corrected


def test_open_refuses_a_path_outside_the_data_folders(page, web):
    page.evaluate("() => window.trame.trigger('kts_open_server_file', ['data/../../../../etc/passwd'])")
    page.wait_for_function("() => window.trame.state.get('error')")
    assert "not one of the offered files" in state(page, "error")
    page.evaluate("() => window.trame.trigger('kts_open_server_file', ['/etc/passwd'])")
    page.wait_for_function("() => (window.trame.state.get('error') || '').includes('outside the allowed')")
    assert state(page, "volume_name") == ""
    page.evaluate("() => window.trame.trigger('kts_open_server_file', ['data/case-a.nii.gz'])")
    page.wait_for_function("() => window.trame.state.get('volume_name') === 'case-a'")


def test_upload_opens_a_ct_and_a_too_large_one_gets_the_limit(page, web, tmp_path):
    page.set_input_files("#upload", str(SAMPLE_DIR / "imaging.nii.gz"))
    page.wait_for_function("() => window.trame.state.get('volume_name') === 'imaging'")
    big = tmp_path / "big.nii.gz"
    big.write_bytes(b"\0" * 3_200_000)
    page.set_input_files("#upload", str(big))
    page.wait_for_selector("#upload-error")
    assert "too large" in page.inner_text("#upload-error") and "3 MB" in page.inner_text("#upload-error")
    assert state(page, "volume_name") == "imaging"


def test_segment_paint_and_export(page, web, artifacts):
    draft, corrected = segment_paint_and_export(page, web, artifacts)
    (before, axes), (after, _) = labels(draft), labels(corrected)
    assert before.shape == after.shape and sorted(before.shape) == [55, 190, 190]
    painted = (after == 2) & (before != 2)
    assert painted.sum() > 50, "the stroke did not reach the exported segmentation"
    where = np.nonzero(painted)
    extent = {int(axis): int(np.ptp(where[n])) for n, axis in enumerate(axes)}
    assert extent[2] == 0, "a stroke drawn in the axial view lies in one axial slice"
    assert extent[0] > extent[1], "the stroke runs right-left, as drawn"
    assert np.all(after[before == 2] == 2), "painting tumor removed no tumor"
    record = json.loads((corrected / "correction.json").read_text())
    assert record["model"] == SEGMENTED_BY and record["voxels"]["tumor"] == int((after == 2).sum())


def test_erase_scissors_islands_and_undo(page, web, artifacts):
    if not state(page, "volumes"):  # run alone
        segment_paint_and_export(page, web, artifacts)
    tumor, kidney = volume_ml(page, "tumor"), volume_ml(page, "kidney")
    use_tool(page, web, "erase")
    stroke(page)
    assert edited(page, "tumor", "<", tumor) < tumor
    page.click("#btn-undo")
    assert edited(page, "tumor", ">=", tumor) == pytest.approx(tumor)

    page.check("#seg-kidney")
    page.wait_for_function("() => window.trame.state.get('active_segment') === 'kidney'")
    use_tool(page, web, "scissors")  # erase inside an outline drawn around the patient's right kidney
    drag(page, [(0.18, 0.52), (0.42, 0.52), (0.42, 0.80), (0.18, 0.80), (0.18, 0.53)])
    cut = edited(page, "kidney", "<", kidney)
    assert cut < 0.7 * kidney, "the outline covers one of two kidneys, through every slice"
    shot(page, artifacts, "03-scissors.png")
    page.click("#btn-undo")
    assert edited(page, "kidney", ">=", kidney) == pytest.approx(kidney)

    use_tool(page, web, "islands")
    page.click("#btn-islands-apply")  # keep the largest island: one kidney
    largest = edited(page, "kidney", "<", kidney)
    assert 0.2 * kidney < largest < 0.8 * kidney
    page.click("#btn-undo")
    edited(page, "kidney", ">=", kidney)
    page.click("#btn-none")
    no_error(page, web)


def test_finetune_then_segment_with_the_new_version(page, web, artifacts):
    if state(page, "exports") < 2:  # run alone: make the two corrections first
        segment_paint_and_export(page, web, artifacts)
    assert len(state(page, "corrections")) >= 2
    models = state(page, "models")

    page.click("#btn-finetune")
    page.wait_for_selector("#btn-cancel-finetune")
    page.wait_for_selector("#finetune-progress", state="visible")
    page.click("#btn-cancel-finetune")
    page.wait_for_function("() => !window.trame.state.get('finetune_running')")
    assert "cancelled" in state(page, "message") and state(page, "models") == models

    page.click("#btn-finetune")
    page.wait_for_function("() => window.trame.state.get('finetune_fraction') > 0", timeout=FINETUNE_TIMEOUT_MS)
    page.locator("#finetune-text").scroll_into_view_if_needed()
    shot(page, artifacts, "04-finetuning.png")
    page.wait_for_function("() => !window.trame.state.get('finetune_running')", timeout=FINETUNE_TIMEOUT_MS)
    no_error(page, web)
    assert state(page, "model") == f"kits-demo@{FINETUNED_VERSION}"
    assert (web.root / "models" / "kits-demo" / FINETUNED_VERSION / "model.json").is_file()
    assert f"New version kits-demo@{FINETUNED_VERSION} selected" in state(page, "message")

    segment(page, web, replace=True)
    assert f"kits-demo@{FINETUNED_VERSION}" in state(page, "message")
    assert {row["id"] for row in state(page, "volumes")} == {"kidney", "tumor", "cyst"}
    record = json.loads((export(page, web, "e2e-v2") / "correction.json").read_text())
    assert record["model"] == f"kits-demo@{FINETUNED_VERSION}"
    shot(page, artifacts, "05-segmented-with-new-version.png")
