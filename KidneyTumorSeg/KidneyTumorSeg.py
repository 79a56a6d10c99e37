"""KidneyTumorSeg: kidney, renal tumor and renal cyst segmentation in CT (3D Slicer scripted module). Thin: the
declaration, the typed parameter node, the Widget (binds the .ui, shows progress and errors) and the self-test; the
work is done by KidneyTumorSegLib (MRML, no Qt) and the engine ``kidneytumorseg``, in a background process."""

from __future__ import annotations

import json
import logging
import pathlib
import tempfile
import traceback
from typing import Annotated

import numpy as np
import qt
import SimpleITK as sitk
import slicer
import vtk
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from kidneytumorseg.model_store import ModelStore
from KidneyTumorSegLib import dependencies
from KidneyTumorSegLib.background_job import JobState
from KidneyTumorSegLib.corrections import CaseExistsError, export_correction
from KidneyTumorSegLib.finetune_logic import FinetuneLogic
from KidneyTumorSegLib.segmentation_logic import DEFAULT_MODEL, QUALITIES, SegmentationLogic
from KidneyTumorSegLib.segments import labels_on_volume, segment_volumes_ml

LOGGER = logging.getLogger("KidneyTumorSeg")
SAMPLE_DIR = pathlib.Path(__file__).resolve().parent / "Resources" / "SampleData" / "kits-synthetic-00112"
DEFAULT_CORRECTIONS_DIR = pathlib.Path.home() / "KidneyTumorSeg" / "corrections"
CONSOLE_HELP_URL = "https://github.com/KidneyTumorSeg/SlicerKidneyTumorSeg#python-console"

HELP_TEXT = f"""<p>Segments the kidneys, renal tumors and renal cysts in contrast-enhanced abdominal CT with an
ensemble of 3D U-Nets, run in a background process. The result, a segmentation with the segments <i>kidney</i>,
<i>tumor</i> and <i>cyst</i>, is edited in the Segment Editor; the edited case can be exported as a correction, and the
model fine-tuned on the corrections into a new version. Python console:
<code>KidneyTumorSegLib.segment_volume(volumeNode)</code>, see <a href="{CONSOLE_HELP_URL}">the README</a>.</p>
<p><b>Limits: research software, not for clinical use.</b> The bundled model <i>kits-demo</i> is a demonstration
trained on synthetic CT made from KiTS23 masks, not accurate enough for any clinical purpose, least of all for tumors.
CT only; results on non-contrast or pediatric CT are unknown. Always review and correct the segments.</p>
<p><b>Methods this work builds on:</b></p><ul>
<li>W. Zhao, Z. Zeng: Multi Scale Supervised 3D U-Net for Kidney and Tumor Segmentation. KiTS19 challenge, 2019.</li>
<li>F. Isensee, K. H. Maier-Hein: An attempt at beating the 3D U-Net. KiTS19 (winner), arXiv:1908.02182, 2019.</li>
<li>A two-stage method: a 3D ResUNet for the kidneys, then 2.5D tumor segmentation within them. KiTS19, 2019.</li>
<li>M. H. Vu, G. Grimbergen, A. Simk&oacute;, T. Nyholm, T. L&ouml;fstedt: End-to-End Cascaded U-Nets with a
Localization Network for Kidney Tumor Segmentation (TuNet). KiTS19, arXiv:1910.07521, 2019.</li>
<li>M. Zang, A. Wysoczanski, E. Angelini, A. F. Laine: 3D U-Net Based Semantic Segmentation of Kidneys and Renal Masses
on Contrast-Enhanced CT. KiTS21 challenge, 2021.</li>
<li>N. Heller et al.: The state of the art in kidney and kidney tumor segmentation in contrast-enhanced CT imaging:
Results of the KiTS19 challenge. Medical Image Analysis 67:101821, 2021.</li>
<li>N. Heller et al.: The KiTS21 Challenge: Automatic segmentation of kidneys, renal tumors, and renal cysts in
corticomedullary-phase CT. arXiv:2307.01984, 2023; the KiTS23 challenge, https://kits-challenge.org/kits23/.</li></ul>"""
ACKNOWLEDGEMENT_TEXT = """Trained on data derived from the KiTS23 masks (N. Heller et al., University of Minnesota;
CC BY-NC-SA 4.0). We thank the KiTS organizers and annotators, the authors cited in the help, the 3D Slicer community,
the PyTorch extension (F. P&eacute;rez-Garc&iacute;a, A. Lasso) and the MONAI project."""


class KidneyTumorSeg(ScriptedLoadableModule):
    """Module declaration: title, category, contributors, help and acknowledgement."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Kidney Tumor Segmentation"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []  # PyTorchUtils is used when present, pip otherwise
        self.parent.contributors = ["KidneyTumorSeg developers"]
        self.parent.helpText = HELP_TEXT
        self.parent.acknowledgementText = ACKNOWLEDGEMENT_TEXT


@parameterNodeWrapper
class KidneyTumorSegParameterNode:
    """The module's state, saved with the scene; the model and device combo boxes are filled at run time."""

    inputVolume: slicer.vtkMRMLScalarVolumeNode  # noqa: N815 - Slicer's naming, also used in the .ui
    outputSegmentation: slicer.vtkMRMLSegmentationNode  # noqa: N815
    model: str  # "name@version"
    device: str = "auto"
    quality: Annotated[str, Choice(list(QUALITIES))] = "default"
    replace: bool = False
    correctionsDir: pathlib.Path = DEFAULT_CORRECTIONS_DIR  # noqa: N815
    checkCasesDir: pathlib.Path = pathlib.Path()  # noqa: N815 - empty: fine-tune without check cases
    replayDir: pathlib.Path = pathlib.Path()  # noqa: N815 - empty: fine-tune without replayed original data
    caseId: str  # noqa: N815
    note: str


class KidneyTumorSegLogic(ScriptedLoadableModuleLogic):
    """Holds only the parameter node: the work is done by KidneyTumorSegLib's logic classes."""

    def getParameterNode(self):
        return KidneyTumorSegParameterNode(super().getParameterNode())


def ensureRequirements(interactive: bool = True) -> bool:
    """First use: install the engine's missing Python packages (asking first); True when it can run now."""
    dialogs = (slicer.util.confirmOkCancelDisplay, slicer.util.infoDisplay) if interactive else (None, None)
    return dependencies.ensure_requirements(*dialogs, installer=_waiting(dependencies.install))


def _tryOrShow(failure: str, function, *args, **kwargs):
    """Run ``function``; the Logic raises with the reason, the Widget shows it. None when it failed."""
    try:
        return function(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - every failure is shown to the user, with its reason
        LOGGER.exception(failure)
        slicer.util.errorDisplay(f"{failure}\n\n{error}", detailedText=traceback.format_exc())
        return None


def _waiting(function):
    """``function`` under a wait cursor (import, verify, surfaces: seconds to minutes)."""
    def waiting(*args, **kwargs):
        slicer.app.setOverrideCursor(qt.Qt.WaitCursor)
        try:
            return function(*args, **kwargs)
        finally:
            slicer.app.restoreOverrideCursor()
    return waiting


class KidneyTumorSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Binds the .ui to the parameter node, starts and polls the background jobs, shows results and errors."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = self._parameterNode = self._parameterNodeGuiTag = self._shownSegmentation = None
        self._jobs = {"segmentation": None, "fine-tuning": None}  # the running BackgroundJob of each kind
        self._timer = qt.QTimer()

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/KidneyTumorSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = KidneyTumorSegLogic()
        self.store = ModelStore.default()
        for device in dependencies.available_devices():
            self.ui.deviceComboBox.addItem(dependencies.DEVICE_LABELS[device], device)
        self._timer.timeout.connect(self._pollJobs)
        self.ui.modelComboBox.currentIndexChanged.connect(lambda index: self._fromComboBox("model"))
        self.ui.deviceComboBox.currentIndexChanged.connect(lambda index: self._fromComboBox("device"))
        self.ui.show3DButton.toggled.connect(self.onShow3D)
        for button, slot in ((self.ui.segmentButton, self.onSegment), (self.ui.editButton, self.onEdit),
                             (self.ui.exportButton, self.onExport), (self.ui.finetuneButton, self.onFinetune),
                             (self.ui.importButton, self.onImport), (self.ui.verifyButton, self.onVerify),
                             (self.ui.removeButton, self.onRemove)):
            button.clicked.connect(slot)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self):
        for job in filter(None, self._jobs.values()):
            job.cancel()
        self._timer.stop()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):  # the GUI stops following the parameter node until the module is entered again
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)

    def onSceneStartClose(self, caller, event):
        if self._jobs["segmentation"] is not None:  # its input volume is going away
            self._jobs["segmentation"].cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        parameters = self._parameterNode
        if not parameters.inputVolume:
            parameters.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        self.refreshModels()
        if self.ui.deviceComboBox.findData(parameters.device) < 0:  # e.g. a scene saved on a GPU computer
            parameters.device = "auto"

    def setParameterNode(self, parameterNode: KidneyTumorSegParameterNode | None):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
        self._updateGui()

    def _fromComboBox(self, name):
        comboBox = self.ui.modelComboBox if name == "model" else self.ui.deviceComboBox
        if self._parameterNode is not None and comboBox.currentIndex >= 0:
            setattr(self._parameterNode, name, comboBox.itemData(comboBox.currentIndex))

    def _updateGui(self, caller=None, event=None):
        p = self._parameterNode
        if p is None:
            return
        for comboBox, value in ((self.ui.modelComboBox, p.model), (self.ui.deviceComboBox, p.device)):
            if 0 <= comboBox.findData(value) != comboBox.currentIndex:
                comboBox.currentIndex = comboBox.findData(value)
        segmenting, finetuning = self._jobs["segmentation"] is not None, self._jobs["fine-tuning"] is not None
        haveModel, haveResult = self.ui.modelComboBox.count > 0, p.outputSegmentation is not None
        self.ui.segmentButton.text = "Cancel" if segmenting else "Segment"
        self.ui.segmentButton.enabled = segmenting or (p.inputVolume is not None and haveModel)
        self.ui.finetuneButton.text = "Cancel fine-tuning" if finetuning else "Fine-tune"
        self.ui.finetuneButton.enabled = finetuning or haveModel
        self.ui.show3DButton.enabled = self.ui.editButton.enabled = haveResult
        self.ui.exportButton.enabled = haveResult and p.inputVolume is not None and not segmenting
        if p.outputSegmentation is not self._shownSegmentation:
            self._showResult(p.outputSegmentation)

    def onSegment(self):
        p, logic = self._parameterNode, SegmentationLogic(slicer.mrmlScene, store=self.store)
        self._startOrCancel("segmentation", lambda: logic.start(p.inputVolume, p.model or None, p.device, p.quality,
                                                                p.outputSegmentation, p.replace))

    def _segmented(self, result):
        self._showResult(result.segmentation_node, result.volumes_ml)
        (self._parameterNode or self.logic.getParameterNode()).outputSegmentation = result.segmentation_node
        seconds = f" in {result.seconds:.0f} s" if result.seconds else ""
        self.ui.statusLabel.text = f"Segmented{seconds} with {result.model}: review and correct it, then export it."

    def _showResult(self, segmentation, volumes=None):
        self._shownSegmentation = segmentation
        if segmentation is not None and volumes is None:
            volumes = segment_volumes_ml(segmentation)
        self.ui.volumesLabel.text = ", ".join(f"{name} {ml:.1f} ml" for name, ml in (volumes or {}).items())
        surface = slicer.vtkSegmentationConverter.GetSegmentationClosedSurfaceRepresentationName()
        wasBlocked = self.ui.show3DButton.blockSignals(True)
        self.ui.show3DButton.checked = bool(segmentation) and bool(
            segmentation.GetSegmentation().ContainsRepresentation(surface))
        self.ui.show3DButton.blockSignals(wasBlocked)

    def onShow3D(self, checked):
        segmentation = self._parameterNode.outputSegmentation if self._parameterNode else None
        if segmentation is not None and checked:
            _tryOrShow("Could not build the 3D surfaces.", _waiting(segmentation.CreateClosedSurfaceRepresentation))
        elif segmentation is not None:
            segmentation.RemoveClosedSurfaceRepresentation()

    def onEdit(self):
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(self._parameterNode.outputSegmentation)
        editor.setSourceVolumeNode(self._parameterNode.inputVolume)

    def _startOrCancel(self, kind, start):
        """Cancel the running job of this kind, or install the requirements (first use) and start one."""
        if self._jobs[kind] is not None:
            self._jobs[kind].cancel()
            return self._pollJobs()
        if _tryOrShow("Installing the requirements failed.", ensureRequirements):
            self._jobs[kind] = _tryOrShow(f"Could not start the {kind}.", start)
            if self._jobs[kind] is not None:
                self._timer.start(100)  # ms
            self._updateGui()

    def _pollJobs(self):
        views = {"segmentation": (self.ui.progressBar, self.ui.statusLabel, self._segmented),
                 "fine-tuning": (self.ui.finetuneProgressBar, self.ui.finetuneStatusLabel, self._finetuned)}
        for kind, job in list(self._jobs.items()):
            if job is None:
                continue
            progressBar, statusLabel, succeeded = views[kind]
            state = job.poll()
            progressBar.value, statusLabel.text = int(round(100 * job.fraction)), job.status_text
            if state is not JobState.RUNNING:
                self._jobs[kind] = None
            if state is JobState.SUCCEEDED:
                _tryOrShow(f"Could not show the result of the {job.description}.", succeeded, job.result)
            elif state is JobState.FAILED:
                slicer.util.errorDisplay(f"The {job.description} failed.\n\n{job.error}")
        if not any(self._jobs.values()):
            self._timer.stop()
        self._updateGui()

    def onExport(self):
        p = self._parameterNode
        if str(p.correctionsDir).strip() in ("", "."):
            return slicer.util.errorDisplay("Choose the corrections folder first.")
        case = _tryOrShow("Export failed.", self._exportOrAsk, p.inputVolume, p.outputSegmentation, p.correctionsDir,
                          case_id=p.caseId.strip() or None, note=p.note)
        if case is not None:
            self.ui.finetuneStatusLabel.text = f"Exported {case.case_id} to {case.folder}."

    @staticmethod
    def _exportOrAsk(*arguments, **options):
        try:
            return export_correction(*arguments, **options)
        except CaseExistsError as error:
            if slicer.util.confirmYesNoDisplay(f"{error}\n\nReplace the earlier export?", windowTitle="Export"):
                return export_correction(*arguments, overwrite=True, **options)
            return None

    def onFinetune(self):
        p = self._parameterNode
        self._startOrCancel("fine-tuning", lambda: FinetuneLogic(self.store).start(
            p.model, p.correctionsDir, device=p.device, check_cases_dir=p.checkCasesDir, replay_dir=p.replayDir))

    def _finetuned(self, result):
        self.refreshModels()
        (self._parameterNode or self.logic.getParameterNode()).model = result.model
        self.ui.finetuneStatusLabel.text = f"New version {result.model} selected; {result.summary()}"

    def refreshModels(self):
        entries, selected = self.store.list(), self._parameterNode.model if self._parameterNode else ""
        wasBlocked = self.ui.modelComboBox.blockSignals(True)
        self.ui.modelComboBox.clear()
        self.ui.modelsTable.setRowCount(len(entries))
        for row, entry in enumerate(entries):
            self.ui.modelComboBox.addItem(f"{entry.name} {entry.version} ({entry.source})", entry.spec)
            for column, text in enumerate((entry.name, entry.version, entry.source, entry.description)):
                item = qt.QTableWidgetItem(text)
                item.setData(qt.Qt.UserRole, entry.spec)
                item.setToolTip(str(entry.path))
                self.ui.modelsTable.setItem(row, column, item)
        index = self.ui.modelComboBox.findData(selected)
        default = [row for row, entry in enumerate(entries) if entry.name == DEFAULT_MODEL] or [0]
        self.ui.modelComboBox.currentIndex = index if index >= 0 else default[-1]
        self.ui.modelComboBox.blockSignals(wasBlocked)
        if index < 0:  # none chosen yet, or the chosen one is gone: the newest demo model, else the first
            self._fromComboBox("model")

    def _selectedSpec(self) -> str:
        """The package selected in the table, else the model selected for segmenting."""
        items = self.ui.modelsTable.selectedItems()
        return items[0].data(qt.Qt.UserRole) if items else self._parameterNode.model

    def onVerify(self):
        spec = self._selectedSpec()
        if spec and _tryOrShow(f"{spec} failed verification.", _waiting(self.store.verify), spec):
            slicer.util.infoDisplay(f"{spec}: every file matches its sha256.")

    def onImport(self):
        path = qt.QFileDialog.getOpenFileName(slicer.util.mainWindow(), "Import a model package (.zip, or the "
                                              "model.json of a package folder)", "", "Model package (*.zip model.json)")
        source = pathlib.Path(path) if path else None
        if source and _tryOrShow("Import failed.", _waiting(self.store.import_package),
                                 source.parent if source.name == "model.json" else source):
            self.refreshModels()

    def onRemove(self):
        spec = self._selectedSpec()
        if spec and slicer.util.confirmYesNoDisplay(f"Remove the model package {spec} from this computer?"):
            _tryOrShow("Could not remove the package.", _waiting(self.store.remove), spec)
            self.refreshModels()


class KidneyTumorSegTest(ScriptedLoadableModuleTest):
    """Inside Slicer: segment the bundled sample with the bundled model, check it, export a correction."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_SegmentSampleAndExport()

    def test_SegmentSampleAndExport(self):
        self.assertTrue(ensureRequirements(interactive=False), "Restart 3D Slicer to use the updated packages.")
        volume = slicer.util.loadVolume(str(SAMPLE_DIR / "imaging.nii.gz"), {"name": "kits-synthetic-00112"})
        result = SegmentationLogic(slicer.mrmlScene).segment(volume, model=DEFAULT_MODEL, timeout=1800)

        self.assertEqual(list(segment_volumes_ml(result.segmentation_node)), ["kidney", "tumor", "cyst"])
        self.assertGreater(result.volumes_ml["kidney"], 50)
        labels, others = labels_on_volume(result.segmentation_node, volume)
        reference = sitk.GetArrayFromImage(sitk.ReadImage(str(SAMPLE_DIR / "segmentation.nii.gz"))) > 0
        dice = 2.0 * np.logical_and(labels > 0, reference).sum() / max(1, (labels > 0).sum() + reference.sum())
        self.assertEqual(others, [])
        self.assertGreater(dice, 0.7, "kidney_and_mass Dice of the bundled model on the sample")

        with tempfile.TemporaryDirectory() as corrections:
            case = export_correction(volume, result.segmentation_node, corrections, note="self-test")
            for name in ("imaging.nii.gz", "segmentation.nii.gz", "correction.json"):
                self.assertTrue((case.folder / name).is_file(), name)
            record = json.loads((case.folder / "correction.json").read_text(encoding="utf-8"))
            self.assertEqual(record["model"], result.model)
        self.delayDisplay("KidneyTumorSeg self-test passed")
