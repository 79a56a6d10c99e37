"""Static checks of the Slicer module that need no Qt: the .ui parses, every widget the Widget uses is in it, every
SlicerParameterName is a field of the parameter node (of a type Slicer can bind to that widget), the module file
stays thin and compiles, and nothing it imports at module level pulls in torch (Slicer imports every module at
start-up, long before PyTorch may be installed)."""

from __future__ import annotations

import ast
import py_compile
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

MODULE_DIR = Path(__file__).resolve().parents[2] / "KidneyTumorSeg"
MODULE_FILE = MODULE_DIR / "KidneyTumorSeg.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "KidneyTumorSeg.ui"
PARAMETER_NODE_CLASS = "KidneyTumorSegParameterNode"
MAX_MODULE_LINES = 400
# What Slicer's parameterNodeWrapper can bind (slicer/parameterNodeWrapper/guiConnectors.py): widget class -> a
# test on the field's annotation.
BINDABLE = {
    "qMRMLNodeComboBox": lambda annotation: "vtkMRML" in annotation,
    "QCheckBox": lambda annotation: annotation == "bool",
    "QLineEdit": lambda annotation: annotation == "str",
    "ctkPathLineEdit": lambda annotation: annotation in ("pathlib.Path", "Path"),
    "QComboBox": lambda annotation: "Choice(" in annotation,  # a QComboBox binds only a fixed list of choices
}
NEEDS_TORCH = {"torch", "torchvision", "monai", "safetensors", "kidneytumorseg_training"}


@pytest.fixture(scope="module")
def ui() -> ET.Element:
    return ET.parse(UI_FILE).getroot()


@pytest.fixture(scope="module")
def module_source() -> str:
    return MODULE_FILE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def parameter_fields(module_source: str) -> dict[str, str]:
    """Field name -> annotation source of the parameter node class."""
    for node in ast.parse(module_source).body:
        if isinstance(node, ast.ClassDef) and node.name == PARAMETER_NODE_CLASS:
            return {item.target.id: ast.unparse(item.annotation) for item in node.body
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)}
    raise AssertionError(f"{MODULE_FILE.name} has no class {PARAMETER_NODE_CLASS}")


def widgets(ui: ET.Element) -> dict[str, str]:
    """Widget name -> class, for every widget of the .ui."""
    return {widget.get("name"): widget.get("class") for widget in ui.iter("widget")}


def bound_widgets(ui: ET.Element) -> dict[str, tuple[str, str]]:
    """Parameter name -> (widget name, widget class) for every widget with a SlicerParameterName property."""
    bound = {}
    for widget in ui.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                parameter = prop.findtext("string")
                assert parameter not in bound, f"two widgets are bound to '{parameter}'"
                bound[parameter] = (widget.get("name"), widget.get("class"))
    return bound


def test_the_ui_parses_as_a_qt_designer_form_with_unique_names(ui):
    assert ui.tag == "ui" and ui.get("version") == "4.0"
    top = ui.find("widget")
    assert top is not None and top.get("class") == "qMRMLWidget" and top.get("name") == "KidneyTumorSeg"
    names = [widget.get("name") for widget in ui.iter("widget")]
    assert len(names) == len(set(names)), "widget names must be unique (they become self.ui.<name>)"


def test_every_custom_widget_class_is_declared(ui):
    declared = {custom.findtext("class") for custom in ui.iter("customwidget")}
    used = {cls for cls in widgets(ui).values() if not cls.startswith("Q")}
    assert used <= declared, f"declare these in <customwidgets>: {sorted(used - declared)}"


def test_every_widget_the_module_uses_exists_in_the_ui(ui, module_source):
    used = set(re.findall(r"\bself\.ui\.([A-Za-z_]\w*)", module_source))
    assert used, "the Widget should use the .ui's widgets through self.ui"
    missing = used - set(widgets(ui))
    assert not missing, f"{MODULE_FILE.name} uses widgets that {UI_FILE.name} lacks: {sorted(missing)}"


def test_scene_connections_name_existing_widgets(ui):
    names = set(widgets(ui))
    for connection in ui.iter("connection"):
        assert connection.findtext("sender") in names and connection.findtext("receiver") in names


def test_every_bound_widget_is_a_parameter_node_field_of_a_bindable_type(ui, parameter_fields):
    bound = bound_widgets(ui)
    assert {"inputVolume", "outputSegmentation", "quality", "correctionsDir"} <= set(bound)
    for parameter, (widget_name, widget_class) in bound.items():
        assert parameter in parameter_fields, f"{widget_name} is bound to '{parameter}', not a field of the node"
        assert widget_class in BINDABLE, f"{widget_name}: Slicer cannot bind a {widget_class}"
        annotation = parameter_fields[parameter]
        assert BINDABLE[widget_class](annotation), f"{widget_name} ({widget_class}) cannot show '{annotation}'"


def test_the_parameter_node_has_the_module_state(parameter_fields):
    expected = {"inputVolume", "outputSegmentation", "model", "device", "quality", "replace", "correctionsDir",
                "caseId", "note"}
    assert expected <= set(parameter_fields)


def test_the_module_file_stays_thin_and_compiles(tmp_path):
    lines = MODULE_FILE.read_text(encoding="utf-8").count("\n")
    assert lines < MAX_MODULE_LINES, f"{MODULE_FILE.name} has {lines} lines; move logic into KidneyTumorSegLib"
    py_compile.compile(str(MODULE_FILE), cfile=str(tmp_path / "module.pyc"), doraise=True)


def test_the_self_test_is_there_and_runs_the_real_test(module_source):
    tree = ast.parse(module_source)
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    test_class = classes["KidneyTumorSegTest"]
    methods = {node.name: ast.unparse(node) for node in test_class.body if isinstance(node, ast.FunctionDef)}
    assert "self.test_SegmentSampleAndExport()" in methods["runTest"]
    body = methods["test_SegmentSampleAndExport"]
    for call in ("loadVolume", ".segment(", "labels_on_volume", "export_correction", "correction.json"):
        assert call in body
    assert not re.search(r"skip|testLogic\s*=\s*False", module_source, re.IGNORECASE), "no switched-off tests"


def test_the_help_states_the_limits_and_cites_the_seed_papers_and_kits(module_source):
    for text in ("not for clinical use", "Zhao, Z. Zeng", "Isensee, K. H. Maier-Hein", "ResUNet", "(TuNet)",
                 "M. Zang", "Results of the KiTS19 challenge. Medical Image Analysis", "arXiv:2307.01984",
                 "kits-challenge.org/kits23", "segment_volume"):
        assert text in module_source, text


def _module_file(name: str) -> Path | None:
    """The source file of a module of this project (under KidneyTumorSeg/), or None for an outside one."""
    base = MODULE_DIR.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_level_imports(path: Path, package: str) -> set[str]:
    """Modules imported when ``path`` is imported: module-level statements, also inside module-level try/if."""
    found = set()
    pending = list(ast.parse(path.read_text(encoding="utf-8")).body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if _module_file(f"{base}.{alias.name}"))
        elif isinstance(node, ast.If):  # `if TYPE_CHECKING:` imports only for the type checker
            pending.extend(node.orelse if "TYPE_CHECKING" in ast.unparse(node.test) else node.body + node.orelse)
        elif isinstance(node, ast.Try):
            pending.extend(node.body + node.orelse + node.finalbody)
            pending.extend(statement for handler in node.handlers for statement in handler.body)
    return found


def module_import_closure() -> set[str]:
    """Every module imported, directly or through this project's modules, when Slicer imports the module file."""
    seen, outside = set(), set()
    pending = sorted(_module_level_imports(MODULE_FILE, ""))
    while pending:
        name = pending.pop()
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
            prefix = ".".join(parts[:depth])
            if prefix in seen:
                continue
            seen.add(prefix)
            path = _module_file(prefix)
            if path is None:
                outside.add(prefix)
                continue
            package = prefix if path.name == "__init__.py" else prefix.rpartition(".")[0]
            pending.extend(_module_level_imports(path, package))
    return outside | seen


def test_nothing_imported_at_module_level_needs_torch():
    closure = module_import_closure()
    assert "KidneyTumorSegLib.segmentation_logic" in closure  # the walk does follow the project's modules
    assert "kidneytumorseg.model_store" in closure
    reached = {name for name in closure if name.split(".")[0] in NEEDS_TORCH}
    assert not reached, f"importing {MODULE_FILE.name} would import {sorted(reached)} at Slicer start-up"


def test_the_dependency_checker_imports_neither_qt_nor_slicer_at_module_level():
    path = MODULE_DIR / "KidneyTumorSegLib" / "dependencies.py"
    imported = {name.split(".")[0] for name in _module_level_imports(path, "KidneyTumorSegLib")}
    assert not imported & {"qt", "ctk", "slicer", "vtk", "torch", "PyTorchUtils"}
