"""First-use requirements check (KidneyTumorSegLib.dependencies): what is missing, what needs a restart, which devices
to offer, and how installing goes through the PyTorch extension or pip, with Slicer replaced by stand-ins."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

from KidneyTumorSegLib import dependencies
from KidneyTumorSegLib.segmentation_logic import DEVICES

REPO_ROOT = Path(__file__).resolve().parents[2]
ABSENT = "kidneytumorseg-no-such-distribution"
ABSENT_TORCH = f"{ABSENT}-torch>=2.2"  # stands for a torch that is not installed (the test Python has torch)


def requirements_file(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "requirements.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reports_only_what_is_not_installed(tmp_path):
    path = requirements_file(tmp_path, "pytest>=7", f"{ABSENT}>=1.0")
    assert dependencies.missing_requirements(path) == [f"{ABSENT}>=1.0"]


def test_an_installed_but_too_old_version_is_missing(tmp_path):
    path = requirements_file(tmp_path, "pytest>=999", "numpy>=1.0")
    assert dependencies.missing_requirements(path) == ["pytest>=999"]


def test_comments_options_blank_lines_and_other_platforms_are_ignored(tmp_path):
    path = requirements_file(tmp_path, "# a comment", "", "-c constraints.txt", "pytest>=7  # inline comment",
                             f'{ABSENT}>=1; sys_platform == "no-such-platform"')
    assert dependencies.read_requirements(path) == ["pytest>=7", f'{ABSENT}>=1; sys_platform == "no-such-platform"']
    assert dependencies.missing_requirements(path) == []


def test_a_malformed_requirement_is_refused_with_its_text(tmp_path):
    with pytest.raises(ValueError, match="pytest >>= 7"):
        dependencies.missing_requirements(requirements_file(tmp_path, "pytest >>= 7"))


def test_names_are_matched_as_pip_does(tmp_path):
    assert dependencies.requirement_name("SimpleITK>=2.3") == "SimpleITK"
    assert dependencies.missing_requirements(requirements_file(tmp_path, "simpleitk>=2.0", "PyTest>=1",
                                                               "Typing_Extensions>=3")) == []


def test_the_bundled_requirements_mirror_the_project_dependencies_except_torch():
    bundled = dependencies.read_requirements(dependencies.REQUIREMENTS_FILE)
    pyproject = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    block = re.search(r"^dependencies = \[(.*?)^\]", pyproject, re.MULTILINE | re.DOTALL).group(1)
    project = re.findall(r'"([^"]+)"', block)
    assert sorted(bundled) == sorted(line for line in project if dependencies.requirement_name(line) != "torch")
    assert [line for line in project if dependencies.requirement_name(line) == "torch"] == [
        dependencies.TORCH_REQUIREMENT]


def test_a_restart_is_needed_only_for_an_upgrade_of_a_module_already_loaded():
    loaded = {"_pytest": object(), "pytest": object()}
    assert dependencies.restart_needed(["pytest>=999", f"{ABSENT}>=1"], loaded) == ["pytest>=999"]
    assert dependencies.restart_needed(["pytest>=999"], loaded_modules={}) == []
    assert dependencies.restart_needed(["pillow>=99"], {"PIL": object()}) == ["pillow>=99"]  # import name differs


@pytest.mark.parametrize(("system", "machine", "nvidia", "expected"), [
    ("linux", "x86_64", False, ["auto", "cpu"]),
    ("linux", "x86_64", True, ["auto", "cuda", "cpu"]),
    ("win32", "AMD64", True, ["auto", "cuda", "cpu"]),
    ("darwin", "arm64", False, ["auto", "cpu", "mps"]),
    ("darwin", "x86_64", False, ["auto", "cpu"]),
])
def test_devices_offered_are_those_present(system, machine, nvidia, expected):
    devices = dependencies.available_devices(system=system, machine=machine, nvidia_driver=nvidia)
    assert devices == expected
    assert set(devices) <= set(DEVICES) and set(devices) <= set(dependencies.DEVICE_LABELS)


class Recorder:
    def __init__(self, answer=True):
        self.answer, self.calls = answer, []

    def __call__(self, *args):
        self.calls.append(args)
        return self.answer


@pytest.fixture
def torch_missing(monkeypatch):
    monkeypatch.setattr(dependencies, "missing_torch", lambda: [ABSENT_TORCH])


def test_nothing_missing_asks_nothing_and_installs_nothing(tmp_path):
    confirm, installer = Recorder(), Recorder()
    assert dependencies.ensure_requirements(confirm, installer=installer,
                                            requirements_txt=requirements_file(tmp_path, "pytest>=7"))
    assert confirm.calls == [] and installer.calls == []


def test_a_declined_install_installs_nothing(tmp_path, torch_missing):
    confirm, installer = Recorder(answer=False), Recorder()
    assert not dependencies.ensure_requirements(confirm, installer=installer,
                                                requirements_txt=requirements_file(tmp_path, f"{ABSENT}>=1"))
    assert ABSENT_TORCH in confirm.calls[0][0] and f"{ABSENT}>=1" in confirm.calls[0][0]
    assert installer.calls == []


def test_torch_and_the_rest_are_installed_separately_and_no_restart_is_needed_for_new_packages(tmp_path,
                                                                                              torch_missing):
    confirm, notify, installer = Recorder(), Recorder(), Recorder()
    ready = dependencies.ensure_requirements(confirm, notify, installer,
                                             requirements_txt=requirements_file(tmp_path, f"{ABSENT}>=1"))
    assert ready and notify.calls == []
    assert installer.calls == [([ABSENT_TORCH], [f"{ABSENT}>=1"])]


def test_upgrading_a_loaded_package_says_a_restart_is_needed(tmp_path):
    notify, installer = Recorder(), Recorder()
    ready = dependencies.ensure_requirements(None, notify, installer,
                                             requirements_txt=requirements_file(tmp_path, "pytest>=999"))
    assert not ready and installer.calls == [([], ["pytest>=999"])]
    assert "Restart 3D Slicer" in notify.calls[0][0] and "pytest>=999" in notify.calls[0][0]


@pytest.fixture
def fake_slicer(monkeypatch):
    """A stand-in for Slicer's ``slicer.util.pip_install`` that records what it was asked to install."""
    installed = []
    module = types.ModuleType("slicer")
    module.util = types.SimpleNamespace(pip_install=installed.append)
    monkeypatch.setitem(sys.modules, "slicer", module)
    return installed


def test_torch_goes_through_the_pytorch_extension_when_it_is_installed(monkeypatch, fake_slicer):
    asked = []

    class PyTorchUtilsLogic:
        def installTorch(self, askConfirmation=False, forceComputationBackend=None,  # noqa: N802, N803 - its API
                         torchVersionRequirement=None):  # noqa: N803
            asked.append((askConfirmation, torchVersionRequirement))
            return types.ModuleType("torch")

    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=PyTorchUtilsLogic))
    dependencies.install([dependencies.TORCH_REQUIREMENT], ["monai>=1.4"])
    assert asked == [(False, dependencies.TORCH_VERSION)]  # the module asked the user already
    assert fake_slicer == [["monai>=1.4"]]


def test_a_pytorch_install_declined_in_the_extension_is_an_error(monkeypatch, fake_slicer):
    logic = types.SimpleNamespace(installTorch=lambda **options: None)
    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=lambda: logic))
    with pytest.raises(RuntimeError, match="PyTorch Utils"):
        dependencies.install([dependencies.TORCH_REQUIREMENT], [])


def test_without_the_pytorch_extension_torch_comes_from_pip(monkeypatch, fake_slicer):
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)  # import PyTorchUtils -> ImportError
    dependencies.install([dependencies.TORCH_REQUIREMENT], [])
    assert fake_slicer == [[dependencies.TORCH_REQUIREMENT]]
