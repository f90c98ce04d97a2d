"""The main window: wiring between the core (load, decode, classify) and the widgets that show it.

Widgets get data (a Series, arrays, Thresholds), never files or sessions; every background job
starts in :mod:`ich_viewer.gui.workers`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDockWidget, QFileDialog, QFormLayout, QLabel, QMainWindow,
                               QMessageBox, QProgressBar, QSlider, QSplitter, QVBoxLayout, QWidget)

from ich_viewer.core.errors import IchViewerError
from ich_viewer.core.inference import SeriesPrediction, cam_overlay, display_scale
from ich_viewer.core.model import IchModel
from ich_viewer.core.contract import CLASSES, BatchResult
from ich_viewer.core.results import SeriesResult, slice_rows, study_summaries, write_csv, write_json
from ich_viewer.core.series import LoadResult, Series, Study
from ich_viewer.core.thresholds import Thresholds
from ich_viewer.core.volume import VolumeLoader
from ich_viewer.core.windows import COMPOSITE_WINDOWS, PRESETS, Window
from ich_viewer.gui import workers
from ich_viewer.gui.class_panel import ClassPanel
from ich_viewer.gui.dialogs import ModelCardDialog, SeriesBrowser, ShortcutsDialog, SkippedList
from ich_viewer.gui.plot_panel import ProbabilityPlot
from ich_viewer.gui.slice_view import SliceView
from ich_viewer.gui.threshold_panel import ThresholdPanel
from ich_viewer.paths import models_dir

log = logging.getLogger(__name__)
NOT_FOR_DIAGNOSIS = "Teaching and demonstration only: not for diagnostic use"
MAX_RECENT = 8


class MainWindow(QMainWindow):
    def __init__(self, settings: QSettings | None = None, model: IchModel | None = None, load_bundled: bool = True):
        super().__init__()
        self.setWindowTitle("ICH Viewer")
        self.setAcceptDrops(True)
        self.settings = settings or QSettings()
        self.result: LoadResult | None = None
        self.study: Study | None = None
        self.series: Series | None = None
        self.loader: VolumeLoader | None = None
        self.prediction: SeriesPrediction | None = None
        self.model: IchModel | None = None
        self.thresholds: Thresholds | None = None
        self.jobs: list[workers.Job] = []
        self.classify: workers.Job | None = None  # the classification in progress, None once it ended
        self.anonymised = False
        self.cam_enabled = True
        self.index = 0
        self._build_widgets()
        self._build_menus()
        self.resize(1280, 800)
        geometry, state = self.settings.value("window/geometry"), self.settings.value("window/state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        self._poll = QTimer(self, interval=60)
        self._poll.timeout.connect(self._on_decode_progress)
        if model is not None:
            self.set_model(model)
        elif load_bundled:
            try:
                self.set_model(IchModel.bundled(models_dir()))
            except IchViewerError as exc:
                self.model_label.setText("No model loaded")
                self.statusBar().showMessage(str(exc), 15000)

    # ------------------------------------------------------------------ layout

    def _build_widgets(self) -> None:
        self.view = SliceView()
        self.view.sliceStep.connect(lambda n: self.go_to(self.index + n))
        self.view.hoverText.connect(lambda text: self.hover_label.setText(text))
        self.view.windowChanged.connect(lambda w: self._update_corner())
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.valueChanged.connect(self.go_to)
        self.plot = ProbabilityPlot()
        self.plot.sliceClicked.connect(self.go_to)
        centre = QSplitter(Qt.Orientation.Vertical)
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.view, 1)
        top_layout.addWidget(self.slider)
        centre.addWidget(top)
        centre.addWidget(self.plot)
        centre.setSizes([600, 170])
        self.setCentralWidget(centre)

        self.browser = SeriesBrowser()
        self.browser.seriesChosen.connect(self.open_series)
        self.classes = ClassPanel()
        self.cam_class = QComboBox()
        self.cam_class.addItems(["top class", *CLASSES])
        self.cam_class.currentIndexChanged.connect(lambda _: self._refresh_overlay())
        self.cam_below = QCheckBox("show under threshold")
        self.cam_below.toggled.connect(lambda _: self._refresh_overlay())
        self.cam_opacity = QSlider(Qt.Orientation.Horizontal)
        self.cam_opacity.setRange(0, 100)
        self.cam_opacity.setValue(60)
        self.cam_opacity.valueChanged.connect(lambda v: self.view.set_overlay_opacity(v / 100))
        self.cam_map = QComboBox()
        self.cam_map.addItems(["inferno", "viridis", "magma", "plasma"])
        self.cam_map.currentTextChanged.connect(self.view.set_colormap)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(QLabel("<b>Studies and series</b>"))
        left_layout.addWidget(self.browser, 1)
        left_layout.addWidget(QLabel("<b>Model output</b> (probabilities)"))
        left_layout.addWidget(self.classes)
        cam_form = QFormLayout()
        cam_form.addRow("Grad-CAM class", self.cam_class)
        cam_form.addRow("opacity", self.cam_opacity)
        cam_form.addRow("colours", self.cam_map)
        cam_form.addRow("", self.cam_below)
        left_layout.addLayout(cam_form)
        self._dock("Browser and classes", left, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.threshold_panel = ThresholdPanel()
        self.threshold_panel.changed.connect(self._on_thresholds_changed)
        self._dock("Thresholds", self.threshold_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.skipped = SkippedList()
        self.skipped_dock = self._dock("Skipped files", self.skipped, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.skipped_dock.hide()
        self.skipped.setMaximumHeight(120)  # a list of reasons, not a work area

        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.hide()
        self.hover_label = QLabel("")
        self.model_label = QLabel("")
        for widget in (self.hover_label, self.progress, self.model_label):
            self.statusBar().addPermanentWidget(widget)
        notice = QLabel(NOT_FOR_DIAGNOSIS)
        notice.setStyleSheet("color: #c0392b;")
        self.statusBar().addPermanentWidget(notice)

    def _dock(self, title: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, menu, text: str, slot, shortcut=None) -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        self.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        self._action(file, "Open folder...", self.ask_open_folder, "Ctrl+O")
        self._action(file, "Open file(s)...", self.ask_open_files, "Ctrl+Shift+O")
        self.recent_menu = file.addMenu("Open recent")
        self._update_recent_menu()
        file.addSeparator()
        self._action(file, "Export view as PNG...", self.ask_export_png, "Ctrl+E")
        self._action(file, "Export results (CSV + JSON)...", self.ask_export_results)
        file.addSeparator()
        self._action(file, "Quit", self.close, "Ctrl+Q")
        view = bar.addMenu("&View")
        for number, name in enumerate(PRESETS, 1):
            self._action(view, f"Window: {name}", lambda _=False, n=name: self.set_window(PRESETS[n]), str(number))
        self._action(view, "Window: stored in the file", self.set_file_window, "7")
        self._action(view, "Model view (three-window composite)", self.set_model_view, "M")
        view.addSeparator()
        self.anonymise_action = self._action(view, "Anonymised display", self.toggle_anonymised, "A")
        self.anonymise_action.setCheckable(True)
        self.cam_action = self._action(view, "Grad-CAM overlay", self.toggle_cam, "C")
        self.cam_action.setCheckable(True)
        self.cam_action.setChecked(True)
        self._action(view, "Next flagged slice", lambda: self.next_flagged(+1), "N")
        self._action(view, "Previous flagged slice", lambda: self.next_flagged(-1), "Shift+N")
        self.skipped_action = self.skipped_dock.toggleViewAction()
        view.addAction(self.skipped_action)
        model = bar.addMenu("&Model")
        self._action(model, "Classify this series", self.run_classification, "Ctrl+R")
        self._action(model, "Cancel classification", self.cancel_classification)
        self._action(model, "Open model...", self.ask_open_model)
        self._action(model, "Model card...", self.show_model_card)
        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "Open demo study", self.open_demo)
        self._action(help_menu, "Keyboard shortcuts", lambda: ShortcutsDialog(self).exec(), "F1")
        self._action(help_menu, "About ICH Viewer", self.show_about)

    # ------------------------------------------------------------------ opening

    def open_paths(self, paths: list[Path]) -> None:
        """Scan in the background; the first series opens as soon as the scan ends."""
        paths = [Path(p) for p in paths]
        self._remember(paths)
        self.statusBar().showMessage("Reading headers...")
        self.progress.setRange(0, 0)
        self.progress.show()
        job = workers.load_job(paths, self)
        job.finished.connect(self._on_loaded)
        job.failed.connect(self._on_load_failed)
        self._start(job)

    def _start(self, job: workers.Job) -> None:
        job.ended.connect(self._release_ended_jobs)
        self.jobs.append(job.start())

    def _release_ended_jobs(self) -> None:
        """Drop jobs whose thread has stopped. Kept, each one stayed a child of the window for good,
        with its QThread; a classification also held its study's volume (+18 MB a demo open)."""
        for job in [j for j in self.jobs if j.thread.isFinished()]:
            self.jobs.remove(job)
            if job is self.classify:
                self.classify = None
            job.deleteLater()

    def _on_loaded(self, result: LoadResult) -> None:
        self.result = result
        self.browser.show_result(result, self.anonymised)
        self.skipped.show_skipped(result.skipped, result.files_found, self.anonymised)
        self.skipped_dock.setVisible(bool(result.skipped))
        self.statusBar().showMessage(f"{len(result.series)} series found" +
                                     (f", {len(result.skipped)} file(s) skipped" if result.skipped else ""), 8000)
        self.open_series(result.studies[0], result.studies[0].series[0])

    def _on_load_failed(self, message: str) -> None:
        self.progress.hide()
        QMessageBox.warning(self, "ICH Viewer", message)
        self.statusBar().showMessage("Nothing opened", 5000)

    def open_series(self, study: Study, series: Series) -> None:
        self.cancel_classification()
        if self.loader is not None:
            self.loader.cancel()  # its decoding threads stop; the array goes with the last reference
        self.study, self.series, self.prediction = study, series, None
        self.loader = VolumeLoader(series)
        self.index = len(series) // 2
        self.slider.blockSignals(True)
        self.slider.setRange(0, len(series) - 1)
        self.slider.setValue(self.index)
        self.slider.blockSignals(False)
        self.plot.show_probabilities(None)
        self.progress.setRange(0, len(series))
        self._poll.start()
        self._first_shown = False
        self._on_decode_progress()
        if self.model is not None:
            self.run_classification()

    def _on_decode_progress(self) -> None:
        if self.loader is None:
            return
        if not (self.classify and self.classify.thread.isRunning()):
            self.progress.setValue(self.loader.done)
        if self.loader.ready[self.index]:
            if not self._first_shown:
                self._first_shown = True
                self._show_current(autorange=True)
            elif self.view.hu is None:
                self._show_current()
        if self.loader.finished:
            self._poll.stop()
            if not (self.classify and self.classify.thread.isRunning()):
                self.progress.hide()
            if self.loader.errors:
                self.statusBar().showMessage(f"{len(self.loader.errors)} slice(s) could not be decoded and show as air",
                                             10000)

    # ------------------------------------------------------------------ navigation and display

    def go_to(self, index: int) -> None:
        if self.series is None:
            return
        self.index = int(np.clip(index, 0, len(self.series) - 1))
        if self.slider.value() != self.index:
            self.slider.blockSignals(True)
            self.slider.setValue(self.index)
            self.slider.blockSignals(False)
        self._show_current()

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt override
        steps = {Qt.Key.Key_Up: -1, Qt.Key.Key_Down: 1, Qt.Key.Key_Left: -1, Qt.Key.Key_Right: 1,
                 Qt.Key.Key_PageUp: -10, Qt.Key.Key_PageDown: 10}
        if event.key() in steps:
            self.go_to(self.index + steps[event.key()])
        elif event.key() == Qt.Key.Key_Home:
            self.go_to(0)
        elif event.key() == Qt.Key.Key_End and self.series is not None:
            self.go_to(len(self.series) - 1)
        else:
            super().keyPressEvent(event)

    def _show_current(self, autorange: bool = False) -> None:
        if self.loader is None or not self.loader.ready[self.index]:
            self.view.set_slice(None)
            return
        self.view.set_slice(self.loader.slice(self.index), autorange)
        self.plot.set_cursor(self.index)
        self._refresh_overlay()
        self._refresh_classes()
        self._update_corner()

    def set_window(self, window: Window) -> None:
        self.view.set_window(window)
        self._update_corner()

    def set_file_window(self) -> None:
        if self.series is not None and self.series.file_window is not None:
            self.set_window(self.series.file_window)
        else:
            self.statusBar().showMessage("This series stores no window", 4000)

    def set_model_view(self) -> None:
        windows = COMPOSITE_WINDOWS
        if self.model is not None and len(self.model.card.windows) == 3:
            windows = self.model.card.windows
        self.view.set_composite(windows)
        self._update_corner()

    def toggle_anonymised(self) -> None:
        self.anonymised = self.anonymise_action.isChecked()
        if self.result is not None:
            self.browser.show_result(self.result, self.anonymised)
            self.skipped.show_skipped(self.result.skipped, self.result.files_found, self.anonymised)
        self._update_corner()

    def toggle_cam(self) -> None:
        self.cam_enabled = self.cam_action.isChecked()
        self._refresh_overlay()

    def _update_corner(self) -> None:
        if self.series is None:
            self.view.set_corner_text("")
            return
        lines = []
        if not self.anonymised and self.study is not None:
            patient = self.study.patient
            lines.append(f"{patient.name or '(no name)'}  ID {patient.id or '-'}  {self.study.date or ''}")
        window = "model view" if self.view.composite else str(self.view.window)
        lines.append(f"slice {self.index + 1}/{len(self.series)}  z {self.series.z[self.index]:.1f} mm  {window}")
        self.view.set_corner_text("\n".join(lines))

    # ------------------------------------------------------------------ model and classification

    def set_model(self, model: IchModel) -> None:
        self.model = model
        self.thresholds = Thresholds(model.card)
        self.threshold_panel.set_thresholds(self.thresholds)
        self.plot.show_thresholds(self.thresholds.values)
        self.model_label.setText(f"model: {model.card.name} {model.card.version}")

    def run_classification(self) -> None:
        if self.model is None or self.series is None:
            self.statusBar().showMessage("No model loaded: Model > Open model...", 5000)
            return
        self.cancel_classification()
        self.prediction = None
        job = workers.classify_job(self.model, self.loader, len(self.series), self)
        job.batch.connect(self._on_batch)
        job.finished.connect(self._on_classified)
        job.failed.connect(lambda message: QMessageBox.warning(self, "ICH Viewer", message))
        self.classify = job
        self.progress.setRange(0, len(self.series))
        self.progress.setValue(0)
        self.progress.show()
        self.statusBar().showMessage("Classifying...")
        self._start(job)

    def cancel_classification(self) -> None:
        if self.classify is not None and self.classify.thread.isRunning():
            self.classify.cancel()
            self.classify.wait()

    def _on_batch(self, batch: BatchResult) -> None:
        if self.prediction is None:
            self.prediction = SeriesPrediction.empty(len(self.series))
        self.prediction.add(batch)
        self.progress.setValue(int(self.prediction.done.sum()))
        self.plot.show_probabilities(self.prediction.probabilities)
        if self.index in batch.indices:
            self._refresh_overlay()
        self._refresh_classes()

    def _on_classified(self, prediction: SeriesPrediction) -> None:
        if prediction.cancelled:
            self.statusBar().showMessage("Classification cancelled", 5000)
        else:
            self.prediction = prediction
            flagged = [c for c, f in zip(CLASSES, self._study_flags()) if f]
            self.statusBar().showMessage("Flagged: " + (", ".join(flagged) or "nothing"), 10000)
        self.progress.hide()
        self.plot.show_probabilities(self.prediction.probabilities if self.prediction else None)
        self._refresh_classes()
        self._refresh_overlay()

    def _slice_flags(self) -> np.ndarray | None:
        if self.prediction is None or self.thresholds is None:
            return None
        return self.thresholds.flags(self.prediction.probabilities)

    def _study_flags(self) -> np.ndarray:
        flags = self._slice_flags()
        return np.zeros(len(CLASSES), bool) if flags is None else flags.any(0)

    def _refresh_classes(self) -> None:
        if self.prediction is None:
            self.classes.show_values(None, None, None, None)
            return
        flags = self._slice_flags()
        with np.errstate(all="ignore"):
            maximum = np.nanmax(np.where(self.prediction.done[:, None], self.prediction.probabilities, np.nan), 0) \
                if self.prediction.done.any() else None
        self.classes.show_values(self.prediction.probabilities[self.index], maximum, flags[self.index], flags.any(0))

    def _on_thresholds_changed(self) -> None:
        self.plot.show_thresholds(self.thresholds.values)
        self._refresh_classes()
        self._refresh_overlay()

    def cam_class_index(self) -> int | None:
        if self.prediction is None or not self.prediction.done[self.index]:
            return None
        choice = self.cam_class.currentIndex()
        return int(np.argmax(self.prediction.probabilities[self.index])) if choice == 0 else choice - 1

    def _refresh_overlay(self) -> None:
        c = self.cam_class_index()
        if not self.cam_enabled or c is None or self.series is None:
            self.view.set_overlay(None)
            return
        name = CLASSES[c]
        scale = display_scale(self.prediction, c, self.model.card.cam_scale[name])
        values = cam_overlay(self.prediction.cam[self.index, c], (self.series.rows, self.series.columns),
                             scale, float(self.prediction.probabilities[self.index, c]),
                             self.thresholds.values[name], self.cam_below.isChecked())
        self.view.set_overlay(values)

    def next_flagged(self, direction: int) -> None:
        flags = self._slice_flags()
        if flags is None:
            return
        any_flag = flags.any(1)
        candidates = np.flatnonzero(any_flag)
        ahead = candidates[candidates > self.index] if direction > 0 else candidates[candidates < self.index][::-1]
        if len(ahead):
            self.go_to(int(ahead[0]))
        else:
            self.statusBar().showMessage("No further flagged slice", 3000)

    # ------------------------------------------------------------------ files, export, dialogs

    def ask_open_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a study folder", self.settings.value("last_folder", ""))
        if folder:
            self.open_paths([Path(folder)])

    def ask_open_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Open DICOM files", self.settings.value("last_folder", ""),
                                                "DICOM, zip or DICOMDIR (*)")
        if files:
            self.open_paths([Path(f) for f in files])

    def ask_open_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a model", "", "ONNX model (*.onnx)")
        if path:
            self.open_model(Path(path))

    def open_model(self, path: Path) -> bool:
        try:
            self.set_model(IchModel(path))
        except IchViewerError as exc:
            QMessageBox.warning(self, "ICH Viewer", str(exc))
            return False
        if self.series is not None:
            self.run_classification()
        return True

    def open_demo(self) -> None:
        from ich_viewer.demo import demo_study_dir

        self.open_paths([demo_study_dir()])

    def export_png(self, path: Path) -> None:
        self.view.grab().save(str(path), "PNG")

    def export_results(self, csv_path: Path, json_path: Path) -> None:
        if self.prediction is None or self.series is None:
            raise IchViewerError("There are no results to export yet: open a series and classify it first.")
        cut = self.thresholds.as_array()
        results = [SeriesResult(self.study, self.series, self.prediction)]
        write_csv(csv_path, slice_rows(results, cut, self.anonymised))
        write_json(json_path, {"model": {"name": self.model.card.name, "version": self.model.card.version,
                                         "sha256": self.model.sha256},
                               "preset": self.thresholds.preset, "thresholds": self.thresholds.values,
                               "studies": study_summaries(results, cut, self.anonymised),
                               "notice": "Teaching and demonstration model; not for diagnosis."})

    def ask_export_png(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export view", "view.png", "PNG image (*.png)")
        if path:
            self.export_png(Path(path))

    def ask_export_results(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export results", "results.csv", "CSV (*.csv)")
        if path:
            try:
                self.export_results(Path(path), Path(path).with_suffix(".json"))
            except (IchViewerError, OSError) as exc:
                QMessageBox.warning(self, "ICH Viewer", str(exc))

    def show_model_card(self) -> None:
        if self.model is None:
            QMessageBox.information(self, "ICH Viewer", "No model is loaded.")
            return
        ModelCardDialog(self.model.card, self.model.path, self.model.sha256, self).exec()

    def show_about(self) -> None:
        QMessageBox.about(self, "About ICH Viewer",
                          "<b>ICH Viewer</b>: head CT with a local hemorrhage model.<br>"
                          f"<span style='color:#c0392b'>{NOT_FOR_DIAGNOSIS}.</span><br>"
                          "The model runs on this computer with ONNX Runtime; nothing is sent anywhere.")

    def _remember(self, paths: list[Path]) -> None:
        first = paths[0]
        self.settings.setValue("last_folder", str(first if first.is_dir() else first.parent))
        recent = [str(p) for p in paths[:1]] + [r for r in (self.settings.value("recent") or []) if r != str(first)]
        self.settings.setValue("recent", recent[:MAX_RECENT])
        self._update_recent_menu()

    def _update_recent_menu(self) -> None:
        self.recent_menu.clear()
        for item in self.settings.value("recent") or []:
            action = self.recent_menu.addAction(item)
            action.triggered.connect(lambda _=False, p=item: self.open_paths([Path(p)]))

    # ------------------------------------------------------------------ drag and drop, closing

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        paths = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            self.open_paths(paths)
            event.acceptProposedAction()

    def closeEvent(self, event) -> None:  # noqa: N802
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.cancel_classification()
        if self.loader is not None:
            self.loader.cancel()
        for job in self.jobs:
            job.wait(5000)
        super().closeEvent(event)
