"""First use: which Python packages the engine still needs in Slicer's Python, installing them, whether that needs
a restart, and which compute devices to offer. No Qt and no slicer at module level, and no dialogs: the Widget
passes in how to ask the user (``confirm``) and how to tell them (``notify``).

Everything is read from the installed distributions' metadata (``importlib.metadata``): nothing is imported,
so a check never loads torch into Slicer's process.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

try:  # pip and Slicer ship it; without it, versions are not compared, only presence is checked
    from packaging.requirements import InvalidRequirement, Requirement
except ImportError:  # pragma: no cover - exercised only in a Python without packaging
    Requirement = None  # type: ignore[assignment,misc]
    InvalidRequirement = ValueError  # type: ignore[assignment,misc]

REQUIREMENTS_FILE = Path(__file__).resolve().parents[1] / "Resources" / "requirements.txt"
# torch is installed first and on its own, by the PyTorch extension (it picks the build that fits the GPU
# driver); pip would otherwise pull a default build through monai's own requirement on torch.
TORCH_VERSION = ">=2.2"
TORCH_REQUIREMENT = f"torch{TORCH_VERSION}"
DEVICE_LABELS = {"auto": "Automatic", "cuda": "CUDA (NVIDIA GPU)", "cpu": "CPU", "mps": "MPS (Apple GPU)"}
LOGGER = logging.getLogger("KidneyTumorSegLib")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def read_requirements(requirements_txt: str | os.PathLike[str]) -> list[str]:
    """The requirement lines of a requirements file: comments, blank lines and pip options left out."""
    lines = []
    for raw in Path(requirements_txt).read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):
            lines.append(line)
    return lines


def requirement_name(requirement: str) -> str:
    """The distribution name a requirement line names (``"SimpleITK>=2.3"`` -> ``"SimpleITK"``)."""
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"'{requirement}' is not a requirement (expected NAME[>=VERSION]).")
    return match.group(1)


def installed_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def unsatisfied(requirements: Iterable[str]) -> list[str]:
    """The requirements (as given) that are not installed, or installed in a version that does not fit."""
    missing = []
    for line in requirements:
        if Requirement is None:
            if installed_version(requirement_name(line)) is None:
                missing.append(line)
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement as error:
            raise ValueError(f"'{line}' is not a valid requirement: {error}") from error
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue  # not for this platform
        version = installed_version(requirement.name)
        if version is None or (requirement.specifier and not requirement.specifier.contains(version, prereleases=True)):
            missing.append(line)
    return missing


def missing_requirements(requirements_txt: str | os.PathLike[str] = REQUIREMENTS_FILE) -> list[str]:
    """The lines of ``requirements_txt`` that the running Python does not satisfy (empty: all there)."""
    return unsatisfied(read_requirements(requirements_txt))


def missing_torch() -> list[str]:
    """``[TORCH_REQUIREMENT]`` when torch is absent or too old, else an empty list."""
    return unsatisfied([TORCH_REQUIREMENT])


def restart_needed(requirements: Iterable[str], loaded_modules: Mapping[str, object] | None = None) -> list[str]:
    """Of the requirements about to be installed, those whose older version this process has already imported:
    after installing them Slicer must be restarted to use the new version (a new package needs no restart)."""
    loaded = sys.modules if loaded_modules is None else loaded_modules
    modules_by_distribution: dict[str, set[str]] = {}
    # packages_distributions() is Python 3.10+; without it a distribution's import name is taken to be its name
    mapping = getattr(importlib.metadata, "packages_distributions", dict)()
    for module, distributions in mapping.items():
        for distribution in distributions:
            modules_by_distribution.setdefault(_normalize(distribution), set()).add(module)
    stale = []
    for line in requirements:
        name = requirement_name(line)
        if installed_version(name) is None:
            continue
        if any(module in loaded for module in modules_by_distribution.get(_normalize(name), {name})):
            stale.append(line)
    return stale


def available_devices(system: str | None = None, machine: str | None = None,
                      nvidia_driver: bool | None = None) -> list[str]:
    """The devices worth offering here, best guess without importing torch: ``auto`` and ``cpu`` always,
    ``cuda`` where an NVIDIA driver is found, ``mps`` on Apple silicon. The engine checks the choice again."""
    system = sys.platform if system is None else system
    machine = platform.machine().lower() if machine is None else machine.lower()
    if nvidia_driver is None:
        nvidia_driver = shutil.which("nvidia-smi") is not None or Path("/proc/driver/nvidia/version").exists()
    devices = ["auto"]
    if nvidia_driver:
        devices.append("cuda")
    devices.append("cpu")
    if system == "darwin" and machine in ("arm64", "aarch64"):
        devices.append("mps")
    return devices


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def install(torch: Iterable[str], others: Iterable[str]) -> None:
    """Install requirements into Slicer's Python: torch through the PyTorch extension when it is there (it
    picks the build for this computer's GPU driver), otherwise, and for the rest, with ``pip_install``.
    Raises when an installation fails; asking the user first is the caller's job."""
    import slicer  # only inside Slicer, and only when something is installed

    torch, others = list(torch), list(others)
    if torch:
        try:
            import PyTorchUtils
        except ImportError:
            slicer.util.pip_install(torch)
        else:
            logic = PyTorchUtils.PyTorchUtilsLogic()
            if logic.installTorch(askConfirmation=False, torchVersionRequirement=TORCH_VERSION) is None:
                raise RuntimeError("PyTorch was not installed. Install it in the PyTorch Utils module, then try again.")
    if others:
        slicer.util.pip_install(others)


def ensure_requirements(confirm: Callable[[str], bool] | None = None, notify: Callable[[str], None] | None = None,
                        installer: Callable[[list[str], list[str]], None] | None = None,
                        requirements_txt: str | os.PathLike[str] = REQUIREMENTS_FILE) -> bool:
    """Install what is missing (torch first, then ``requirements_txt``); True when the engine can run now.

    ``confirm(message)`` is asked before anything is downloaded (False: nothing is installed, returns False);
    ``notify(message)`` is told when Slicer must be restarted because an older version was already loaded;
    ``installer(torch, others)`` installs (default: ``install``)."""
    torch, others = missing_torch(), missing_requirements(requirements_txt)
    if not torch and not others:
        return True
    names, stale = ", ".join(torch + others), restart_needed(torch + others)
    if confirm is not None and not confirm(f"KidneyTumorSeg needs these Python packages; download and install them "
                                           f"now (this can take several minutes)?\n\n{names}"):
        return False
    (installer or install)(torch, others)
    if stale:
        message = (f"Installed {names}. Restart 3D Slicer to use them: older versions of {', '.join(stale)} were "
                   "already loaded.")
        LOGGER.warning(message)
        if notify is not None:
            notify(message)
    return not stale
