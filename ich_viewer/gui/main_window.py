"""The main window: layout, menus and wiring. The state and its rules are the ViewerModel's
(:mod:`ich_viewer.core.viewer_model`); each panel subscribes to its events, and every background job
starts in :mod:`ich_viewer.gui.workers`.
"""

from __future__ import annotations

import functools
from pathlib import Path

from PySide6.QtCore import QSettings, QSignalBlocker, QSize, Qt, QTimer
from PySide6.QtWidgets import (QDockWidget, QFrame, QLabel, QMainWindow, QMessageBox, QProgressBar, QPushButton,
                               QScrollArea, QSlider, QVBoxLayout, QWidget)

from ich_viewer.core.contract import ABBREVIATIONS
from ich_viewer.core.errors import IchViewerError, ModelError
from ich_viewer.core.model import IchModel
from ich_viewer.core.series import LoadResult
from ich_viewer.core.viewer_model import ViewerModel
from ich_viewer.core.windows import PRESETS
from ich_viewer.gui import workers
from ich_viewer.gui.actions import build_menus
from ich_viewer.gui.dialogs import SkippedList, resize_within_screen
from ich_viewer.gui.file_actions import NOT_FOR_DIAGNOSIS, FileActions
from ich_viewer.gui.plot_panel import ProbabilityPlot
from ich_viewer.gui.side_panel import SidePanel
from ich_viewer.gui.slice_view import SliceView, WheelMovesSlices
from ich_viewer.gui.status_bar import ElidedLabel, fitting, share_room
from ich_viewer.gui.threshold_panel import ThresholdPanel
from ich_viewer.paths import models_dir

#: The saved dock layout's version: a layout saved before the plot moved into a dock is not restored.
LAYOUT_VERSION = 2
MIN_IMAGE_PX = 300  # the smallest the central image may become; the docks give way first
STEP_KEYS = {Qt.Key.Key_Up: -1, Qt.Key.Key_Down: 1, Qt.Key.Key_Left: -1, Qt.Key.Key_Right: 1,
             Qt.Key.Key_PageUp: -10, Qt.Key.Key_PageDown: 10}


#: How the status bar begins a summary of what is flagged, which must follow the thresholds while shown.
FLAG_SUMMARIES = ("Flagged: ", "Not flagged: ")

class ScrollsDown(QScrollArea):
    """A dock's panel in a scroll area: on a short screen (a 1366 x 768 laptop at 150% has about 470 px for the
    window) the docks' full height made the window taller than the screen. Its width follows the panel's, as
    without the scroll area (:meth:`follow_the_panel` when the panel grows), and where a dock is made narrower
    still, it scrolls sideways rather than cut the values off."""

    MIN_HEIGHT, MIN_WIDTH = 80, 200  # a small screen's window narrows the dock, which then scrolls sideways

    def __init__(self, panel: QWidget):
        super().__init__(widgetResizable=True, frameShape=QFrame.Shape.NoFrame)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the panel's controls take focus, the frame around them not
        self.setWidget(panel)

    def follow_the_panel(self) -> None:
        """The panel's width changed (a model's preset buttons): the dock asks this area's minimum again."""
        self.updateGeometry()

    def _bar(self) -> int:
        return self.verticalScrollBar().sizeHint().width() if self.verticalScrollBar().isVisible() else 0

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(min(self.widget().minimumSizeHint().width() + self._bar(), self.MIN_WIDTH), self.MIN_HEIGHT)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        hint = self.widget().sizeHint()
        return QSize(hint.width() + self._bar(), hint.height())


class MainWindow(FileActions, QMainWindow):
    def __init__(self, settings: QSettings | None = None, model: IchModel | None = None, load_bundled: bool = True):
        super().__init__()
        workers.collect_garbage_in_the_gui_thread()  # Qt objects are destroyed in the GUI thread only
        self.setWindowTitle("ICH Viewer")
        self.setAcceptDrops(True)
        self.settings = settings or QSettings()
        self.viewer = ViewerModel()
        self.jobs = workers.Jobs()
        self.load_job: workers.Job | None = None  # the latest open's scan
        self.closed = False  # once closed, nothing new starts
        self.classify: workers.Job | None = None  # the classification in progress
        self._previous_model: IchModel | None = None  # the model before the last one set
        self._build_widgets()
        self._build_menus()
        self._connect_viewer()
        resize_within_screen(self, 1280, 800)  # 1280 x 800 on a 1366 x 768 laptop put the status bar below it
        if self.settings.value("window/geometry") is not None:
            self.restoreGeometry(self.settings.value("window/geometry"))
        if self.settings.value("window/state") is not None:  # the docks as the user left them
            self.restoreState(self.settings.value("window/state"), LAYOUT_VERSION)
        if self.settings.value("anonymised", False, type=bool):  # as the user left it: a lecture that began
            self.actions["anonymise"].setChecked(True)  # anonymised must not show names after a restart
            self.viewer.set_anonymised(True)
        self._poll = QTimer(self, interval=60)  # decoding progress: the loader's threads are not Qt's
        self._poll.timeout.connect(self._on_decode_progress)
        try:
            if model is not None or load_bundled:
                self.set_model(model or IchModel.bundled(models_dir()))  # with this site's presets
        except IchViewerError as exc:
            self.model_label.setText("No model loaded")
            self.statusBar().showMessage(str(exc), 15000)

    # ------------------------------------------------------------------ layout, menus, wiring

    def _build_widgets(self) -> None:
        """The image takes the whole centre (a screen is wider than tall, so nothing goes under it): the
        series and classes on the left, the probability plot over the thresholds on the right."""
        self.view = SliceView()
        # The image is what the window is for: a small window narrows the docks, never the image to a strip.
        self.view.setMinimumSize(MIN_IMAGE_PX, MIN_IMAGE_PX)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # its own arrow keys would run against the window's
        self.plot = ProbabilityPlot()
        centre = QWidget()
        centre_layout = QVBoxLayout(centre)
        centre_layout.setContentsMargins(0, 0, 0, 0)
        centre_layout.setSpacing(0)
        centre_layout.addWidget(self.view, 1)
        centre_layout.addWidget(self.slider)
        self.setCentralWidget(centre)
        side = SidePanel(self.viewer, self.view)
        self.browser, self.classes, self.cam_controls = side.browser, side.classes, side.cam_controls
        self._dock("Browser and classes", ScrollsDown(side), Qt.DockWidgetArea.LeftDockWidgetArea)
        self.threshold_panel = ThresholdPanel(self.viewer)
        plot_dock = self._dock("Probabilities", self.plot, Qt.DockWidgetArea.RightDockWidgetArea)
        thresholds_dock = self._dock("Thresholds", ScrollsDown(self.threshold_panel),
                                     Qt.DockWidgetArea.RightDockWidgetArea)
        self.resizeDocks([plot_dock], [340], Qt.Orientation.Horizontal)
        self.resizeDocks([plot_dock, thresholds_dock], [330, 350], Qt.Orientation.Vertical)
        WheelMovesSlices(self.view).watch(self.slider, *self.threshold_panel.sliders.values(),
                                          self.cam_controls.cam_class, self.cam_controls.cam_map)
        # what a screen reader says for each part (the threshold sliders name themselves)
        for widget, name in ((self.view, "CT slice"), (self.slider, "slice"), (self.browser, "studies and series"),
                             (self.classes, "model output per class"), (self.plot, "probability of each class by slice")):
            widget.setAccessibleName(name)
        self.skipped = SkippedList()
        self.skipped_dock = self._dock("Skipped files", self.skipped, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.skipped_dock.hide()  # opened from the status bar's count
        self.progress = QProgressBar(maximumWidth=220, visible=False)
        self.hover_label, self.model_label, notice = ElidedLabel(), ElidedLabel(), QLabel(NOT_FOR_DIAGNOSIS)
        self.other_files_label = ElidedLabel()  # CSV/TXT beside the study: a count, not "skipped" (names in its tooltip)
        self.skipped_button = QPushButton("", flat=True, visible=False, toolTip="show or hide the skipped files")
        self.skipped_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.skipped_button.setStyleSheet("color: #c0392b; text-decoration: underline; padding: 0 4px;")
        self.skipped_button.clicked.connect(lambda: self.skipped_dock.setVisible(not self.skipped_dock.isVisible()))
        notice.setStyleSheet("color: #c0392b;")
        self.permanent_widgets = [self.hover_label, self.progress, self.skipped_button, self.other_files_label,
                                  self.model_label, notice]
        for widget in self.permanent_widgets:
            self.statusBar().addPermanentWidget(widget)
        self.statusBar().messageChanged.connect(self._share_status_bar)  # the skipped files' button comes with one

    def _share_status_bar(self, message: str | None = None) -> None:
        """The HU read-out, the model's name and the other-files count give up width before a message (default:
        the one shown)."""
        share_room(self.statusBar(), self.permanent_widgets, [self.hover_label, self.model_label, self.other_files_label],
                   self.statusBar().currentMessage() if message is None else message)

    def _dock(self, title: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self, objectName=title, features=QDockWidget.DockWidgetFeature.DockWidgetMovable
                           | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_menus(self) -> None:
        """Menus and shortcuts from the one action table, which also writes the shortcut help."""
        self.actions = build_menus(self)
        self.actions["cam"].setChecked(True)
        self._update_recent_menu()

    def _connect_viewer(self) -> None:
        viewer = self.viewer
        for panel in (self.view, self.plot):
            panel.bind(viewer)
        self.view.hoverText.connect(self.hover_label.setText)
        self.view.hoverText.connect(lambda _: self._share_status_bar())  # it gives way to a message too
        self.slider.valueChanged.connect(viewer.go_to)
        self.browser.seriesChosen.connect(self.open_series)
        viewer.thresholds_changed.connect(self._show_flagged_in_tree)  # the tree says what the thresholds flag
        viewer.loaded.connect(self._on_loaded)
        viewer.series_opened.connect(self._on_series_opened)
        viewer.slice_changed.connect(lambda i: self.slider.setValue(i))  # its valueChanged -> go_to(the same): no loop
        viewer.slice_changed.connect(lambda i: self.slider.setAccessibleDescription(
            f"slice {i + 1} of {len(viewer.series)}" if viewer.series is not None else ""))  # counted as on screen
        viewer.model_changed.connect(lambda m: self.model_label.setText(f"model: {m.card.name} {m.card.version}"))
        viewer.model_changed.connect(lambda _: [area.follow_the_panel() for area in self.findChildren(ScrollsDown)])
        viewer.prediction_changed.connect(
            lambda batch: batch is not None and self.progress.setValue(int(viewer.prediction.done.sum())))
        viewer.anonymised_changed.connect(self._on_anonymised_changed)

    # ------------------------------------------------------------------ opening

    def open_paths(self, paths: list[Path]) -> None:
        """Scan in the background; the first series opens as soon as the scan ends."""
        paths = [Path(p) for p in paths]
        self._remember(paths)
        self.statusBar().showMessage("Reading headers...")
        self.progress.setRange(0, 0)
        self.progress.show()
        job = workers.load_job(paths, self)
        self.load_job = job  # the latest open wins: a slower earlier scan must not replace it when it ends
        # The job is bound into each slot, not read from sender(): PySide has returned None from sender() for
        # some connections, which would drop an open without a word.
        job.finished.connect(functools.partial(self._on_load_finished, job))
        job.failed.connect(functools.partial(self._on_load_failed, job))
        self.jobs.start(job)

    def _on_load_finished(self, job: workers.Job, result: LoadResult) -> None:
        if job is self.load_job:
            self.viewer.set_result(result)

    def _on_loaded(self, result: LoadResult) -> None:
        self.browser.show_result(result, self.viewer.anonymised)
        self.skipped.show_skipped(result.skipped, result.files_found, self.viewer.anonymised)
        self.skipped_button.setText(f"{len(result.skipped)} file{'s' if len(result.skipped) != 1 else ''} skipped")
        self.skipped_button.setVisible(bool(result.skipped))
        rows = max(1, min(self.skipped.count(), 6))  # as tall as its lines, up to six: a list, not a work area
        self.skipped.setMaximumHeight(rows * max(self.skipped.sizeHintForRow(0), 16) + 2 * self.skipped.frameWidth() + 2)
        if not result.skipped:
            self.skipped_dock.hide()
        self._show_other_files(result)
        self.statusBar().showMessage(f"{len(result.series)} series found" +
                                     (f", {len(result.skipped)} file(s) skipped" if result.skipped else "") +
                                     (f", {result.other_files_note}" if result.other_files else ""), 8000)
        self.open_series(result.studies[0], result.studies[0].series[0])

    def _on_load_failed(self, job: workers.Job, message: str) -> None:
        if job is not self.load_job:
            return
        self.progress.hide()
        self.statusBar().showMessage("Nothing opened", 5000)  # before the box: "Reading headers..." stayed behind it
        QMessageBox.warning(self, "ICH Viewer", message)

    def open_series(self, study, series) -> None:
        self.cancel_classification()
        self.viewer.open_series(study, series)

    def _on_series_opened(self, study, series) -> None:
        with QSignalBlocker(self.slider):  # a shorter range clamps the value: not a slice change
            self.slider.setRange(0, len(series) - 1)
            self.slider.setValue(self.viewer.index)
        self.progress.setRange(0, len(series))
        self._first_shown = False
        self._poll.start()
        self._on_decode_progress()
        if self.viewer.model is not None:
            self.run_classification()

    def _on_decode_progress(self) -> None:
        loader, classifying = self.viewer.loader, self.classify is not None and self.classify.running
        if loader is None:
            return
        if not classifying:
            self.progress.setValue(loader.done)
        if loader.ready[self.viewer.index] and (not self._first_shown or self.view.hu is None):
            self.view.show_current(autorange=not self._first_shown)
            self._first_shown = True
        if loader.finished:
            self._poll.stop()
            if not classifying:
                self.progress.hide()
            if loader.errors:
                self.statusBar().showMessage(f"{len(loader.errors)} slice(s) could not be decoded and show as air", 10000)

    # ------------------------------------------------------------------ navigation and display

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt override
        viewer = self.viewer
        if event.key() in STEP_KEYS:
            viewer.go_to(viewer.index + STEP_KEYS[event.key()])
        elif event.key() in (Qt.Key.Key_Home, Qt.Key.Key_End) and viewer.series is not None:
            viewer.go_to(0 if event.key() == Qt.Key.Key_Home else len(viewer.series) - 1)
        elif event.key() == Qt.Key.Key_Escape:  # from a control reached with Tab: the keys go back to the slices
            self.view.setFocus(Qt.FocusReason.ShortcutFocusReason)
        else:
            super().keyPressEvent(event)

    def _on_anonymised_changed(self, anonymised: bool) -> None:
        self.settings.setValue("anonymised", anonymised)
        self._update_recent_menu()
        result = self.viewer.result
        if result is not None:  # the anonymised display hides names here too
            self.browser.show_result(result, anonymised)
            self.skipped.show_skipped(result.skipped, result.files_found, anonymised)
            self._show_other_files(result)

    def _show_other_files(self, result: LoadResult) -> None:
        self.other_files_label.setText(result.other_files_note)
        self.other_files_label.setToolTip("" if self.viewer.anonymised else "\n".join(result.other_files))

    def set_window_preset(self, name: str) -> None:
        self.viewer.set_window(PRESETS[name])

    def set_file_window(self) -> None:
        series = self.viewer.series
        if series is not None and series.file_window is not None:
            self.viewer.set_window(series.file_window)
        else:
            self.statusBar().showMessage("This series stores no window", 4000)

    def next_flagged(self, direction: int) -> None:
        index = self.viewer.next_flagged(direction)
        if index is not None:
            self.viewer.go_to(index)
        elif self.viewer.prediction is not None:
            self.statusBar().showMessage("No further run of flagged slices", 3000)

    # ------------------------------------------------------------------ model and classification

    def run_classification(self) -> None:
        if self.closed:
            return
        if self.viewer.model is None or self.viewer.series is None:
            self.statusBar().showMessage("No model loaded: Model > Open model...", 5000)
            return
        self.cancel_classification()
        self.viewer.start_prediction()
        job = workers.classify_job(self.viewer.model, self.viewer.loader, len(self.viewer.series), self,
                                   slabs=self.viewer.slab_plan())
        # A cancelled run's last signals are still queued when the next series opens: only the current run's
        # batches count (an old 6-slice batch would not fit a 1-slice series) and only it ends classifying.
        job.batch.connect(lambda batch, job=job: self.classify is job and self.viewer.add_batch(batch))
        job.finished.connect(lambda prediction, job=job: self.classify is job and self._on_classified(prediction))
        job.failed.connect(lambda message, job=job: self.classify is job and self._on_classify_failed(job, message))
        self.classify = job
        self.progress.setRange(0, len(self.viewer.series))
        self.progress.setValue(0)
        self.progress.show()
        self.statusBar().showMessage("Classifying...")
        self.jobs.start(job)

    def _show_flagged_in_tree(self, *_) -> None:
        """The open series' flagged classes in the series tree, once it is wholly classified."""
        viewer = self.viewer
        if viewer.series is None or viewer.prediction is None or not viewer.prediction.complete:
            return
        self.browser.show_flagged(viewer.series, viewer.flagged_classes(),
                                  "" if viewer.flags_shown else "outside the intended use")
        if self.statusBar().currentMessage().startswith(FLAG_SUMMARIES):  # said once: kept true, not left stale
            self.statusBar().showMessage(self._flag_summary(), 10000)

    def _flag_summary(self) -> str:
        """What is flagged, in full or, where the status bar has too little room, in short: the classes'
        abbreviations, or only the reasons a series is outside the intended use ("Not flagged: outside the model's
        inte" had lost them)."""
        viewer = self.viewer
        if not viewer.flags_shown:
            whole, short = f"Not flagged: {viewer.use_check.sentence}", f"Not flagged: {', '.join(viewer.use_check.reasons)}"
        else:
            flagged = viewer.flagged_classes()
            whole = "Flagged: " + (", ".join(flagged) or "nothing")
            short = "Flagged: " + (", ".join(ABBREVIATIONS[c] for c in flagged) or "nothing")
        self._share_status_bar(whole)  # the caps as they will be with this message, for the room it is measured in
        return fitting(self.statusBar(), self.permanent_widgets, whole, short)

    def cancel_classification(self) -> None:
        if self.classify is not None and self.classify.running:
            self.classify.cancel()
            self.classify.wait()

    def _on_classify_failed(self, job: workers.Job, message: str) -> None:
        """A run that failed says so and leaves nothing stale. A model refused by its own outputs (the contract's
        shapes are checked per batch) gives way to the model in use before it, which the message names."""
        self._on_classified(None)
        self.browser.forget_flagged(self.viewer.series)
        self.statusBar().showMessage("Classification stopped: nothing is flagged", 10000)
        previous = self._previous_model
        if isinstance(job.worker.error, ModelError) and previous is not None and previous is not self.viewer.model:
            self.set_model(previous)
            message += f"\n\nThe model in use before it, {previous.card.name} {previous.card.version}, is back."
            self.run_classification()
        QMessageBox.warning(self, "ICH Viewer", message)

    def _on_classified(self, prediction) -> None:
        """The run's result, or None when it failed; ``classify`` is None from here on."""
        self.classify = None
        self.progress.hide()
        if prediction is not None:
            self.viewer.finish_prediction(prediction)
            self._show_flagged_in_tree()
            self.statusBar().showMessage(
                "Classification cancelled" if prediction.cancelled else self._flag_summary(), 10000)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        if self.viewer.series is not None and self.statusBar().currentMessage().startswith(FLAG_SUMMARIES):
            self.statusBar().showMessage(self._flag_summary(), 10000)  # in full or short, for the new width
        else:
            self._share_status_bar()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.closed = False  # a window shown again works again
        super().showEvent(event)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState(LAYOUT_VERSION))
        self.settings.sync()
        # A scan that ends after this opens nothing: it had opened its series in the closed window and started a
        # classification there, whose thread was still running when the app exited (Qt aborts then).
        self.closed = True
        self.load_job = None
        self.cancel_classification()
        for job in self.jobs:  # a calibration stops between batches too
            job.cancel()
        self.viewer.close_series()
        self.jobs.wait_all(5000)
        super().closeEvent(event)
