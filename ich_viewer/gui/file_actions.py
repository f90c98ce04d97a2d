"""What the main window does with files and dialogs: open, recent, drop, export, model, calibration, about.

A mixin of :class:`~ich_viewer.gui.main_window.MainWindow` (it uses the window's ``viewer``,
``settings`` and ``view``), kept apart so the window itself stays layout and wiring.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox

from ich_viewer.core import site_presets
from ich_viewer.core.errors import IchViewerError
from ich_viewer.core.model import IchModel
from ich_viewer.gui import export, workers
from ich_viewer.gui.dialogs import FlagRateDialog, ModelCardDialog, ShortcutsDialog

NOT_FOR_DIAGNOSIS = "Teaching and demonstration only: not for diagnostic use"
MAX_RECENT = 8


class FileActions:
    # ------------------------------------------------------------------ opening

    def _start_folder(self) -> str:
        """Where the open dialogs start: the last folder opened, or with the anonymised display the home folder
        (the dialog would show the last study's folder and file names, which often carry the patient's)."""
        return str(Path.home()) if self.viewer.anonymised else self.settings.value("last_folder", "")

    def _file_dialog(self, ask, *args, options=QFileDialog.Option(0)):
        """One of QFileDialog's static functions. With the anonymised display it is Qt's own dialog (a platform
        dialog keeps its own recent list), and it neither shows nor leaves behind the folders visited: Qt loads
        the dialog's Back history from the user's QtProject settings and saves the last folder there."""
        if not self.viewer.anonymised:
            return ask(self, *args, options=options)
        qt = QSettings(QSettings.Scope.UserScope, "QtProject")
        saved = {key: qt.value(key) for key in qt.allKeys() if key.startswith("FileDialog/")}
        qt.remove("FileDialog")
        qt.sync()
        try:
            return ask(self, *args, options=options | QFileDialog.Option.DontUseNativeDialog)
        finally:
            qt.remove("FileDialog")  # what this dialog wrote: the folders it visited
            for key, value in saved.items():
                qt.setValue(key, value)
            qt.sync()

    def ask_open_folder(self) -> None:
        folder = self._file_dialog(QFileDialog.getExistingDirectory, "Open a study folder", self._start_folder(),
                                   options=QFileDialog.Option.ShowDirsOnly)
        if folder:
            self.open_paths([Path(folder)])

    def ask_open_files(self) -> None:
        files, _ = self._file_dialog(QFileDialog.getOpenFileNames, "Open DICOM files", self._start_folder(),
                                     "DICOM, zip or DICOMDIR (*)")
        if files:
            self.open_paths([Path(f) for f in files])

    def open_demo(self) -> None:
        from ich_viewer.demo import demo_study_dir

        self.open_paths([demo_study_dir()])

    def _recent(self) -> list[list[str]]:
        """The stored recent items, each the paths of one open (dropping several files is one open): only absolute
        paths that still exist are kept, and an item with none left drops out."""
        stored = self.settings.value("recent") or []
        if isinstance(stored, str):  # QSettings' INI format reads a one-item list back as a plain string
            stored = [stored]
        items = []
        for item in stored:
            kept = [p for p in _item_paths(item) if Path(p).is_absolute() and Path(p).exists()]
            if kept:
                items.append(kept)
        return items

    def _remember(self, paths: list[Path]) -> None:
        if self.viewer.anonymised:  # the anonymised display keeps no record of the folders it opened
            return
        absolute = [Path(os.path.abspath(p)) for p in paths]  # a relative path from the command line means nothing later
        if absolute[0].exists():
            self.settings.setValue("last_folder", str(absolute[0] if absolute[0].is_dir() else absolute[0].parent))
        existing = [str(p) for p in absolute if p.exists()]
        latest = [_stored_item(existing)] if existing else []
        others = [_stored_item(item) for item in self._recent() if item != existing]
        self.settings.setValue("recent", (latest + others)[:MAX_RECENT])
        self._update_recent_menu()

    def _update_recent_menu(self) -> None:
        """One entry per recent item; with the anonymised display a number, since folder and file names often
        carry the patient's name or ID."""
        self.recent_menu.clear()
        anonymised = self.viewer.anonymised
        for number, item in enumerate(self._recent(), start=1):
            label = item[0] if len(item) == 1 else f"{item[0]} (+{len(item) - 1} more)"
            action = self.recent_menu.addAction(f"Recent item {number} (name hidden)" if anonymised else label)
            action.triggered.connect(lambda _=False, item=item: self.open_paths([Path(p) for p in item]))

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        paths = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            self.open_paths(paths)
            event.acceptProposedAction()

    # ------------------------------------------------------------------ the model

    def ask_open_model(self) -> None:
        path, _ = self._file_dialog(QFileDialog.getOpenFileName, "Open a model", str(Path.home()),
                                    "ONNX model (*.onnx)")
        if path:
            self.open_model(Path(path))

    def set_model(self, model: IchModel) -> None:
        """``model`` with this site's presets for it (ich-viewer calibrate); a damaged settings file costs only
        those presets, and says so."""
        try:
            site = site_presets.load(model.sha256).values()
        except IchViewerError as exc:
            site = ()
            self.statusBar().showMessage(str(exc), 15000)
        self._previous_model = self.viewer.model  # restored if this one's outputs turn out to break the contract
        self.viewer.set_model(model, site_presets=site)
        self.browser.forget_flagged()  # what another model flagged is not this one's

    def open_model(self, path: Path) -> bool:
        try:
            self.set_model(IchModel(path))
        except IchViewerError as exc:
            QMessageBox.warning(self, "ICH Viewer", str(exc))
            return False
        if self.viewer.series is not None:
            self.run_classification()
        return True

    def show_model_card(self) -> None:
        model = self.viewer.model
        if model is None:
            QMessageBox.information(self, "ICH Viewer", "No model is loaded.")
            return
        ModelCardDialog(model.card, model.path, model.sha256, self, model.weights_sha256, model.quantised).exec()

    # ------------------------------------------------------------------ export

    def export_png(self, path: Path) -> list[str]:
        """The current slice at its own resolution with its overlay and text burned in (anonymised when the
        display is); returns the strings drawn."""
        overlay = self.view.overlay
        return export.export_png(self.viewer, path, overlay.lut, overlay.opacity())

    def export_summary_pdf(self, path: Path) -> list[str]:
        """The one-page study summary (PDF); returns the strings drawn."""
        return export.write_summary_pdf(self.viewer, path, self.view.overlay.lut, self.view.overlay.opacity())

    def export_results(self, csv_path: Path, json_path: Path) -> None:
        """The open series' per-slice CSV and JSON summary, in triage's format (the viewer model writes both)."""
        if self.viewer.prediction is None or self.viewer.series is None:
            raise IchViewerError("There are no results to export yet: open a series and classify it first.")
        self.viewer.export_results(csv_path, json_path)

    def ask_export_png(self) -> None:
        name = f"slice-{self.viewer.index + 1}.png"
        self._ask_export("Export slice as PNG", name, "PNG image (*.png)", self.export_png)

    def ask_export_summary(self) -> None:
        self._ask_export("Export study summary", "summary.pdf", "PDF (*.pdf)", self.export_summary_pdf)

    def _ask_export(self, title: str, name: str, kinds: str, write, said=lambda path: f"Exported {path.name}") -> None:
        """Ask where, write there (``write(path)``), say so in the status bar (``said(path)``) or why not in a box."""
        path, _ = self._file_dialog(QFileDialog.getSaveFileName, title, str(Path(self._export_folder()) / name), kinds)
        if path:
            try:
                write(Path(path))
            except (IchViewerError, OSError) as exc:
                QMessageBox.warning(self, "ICH Viewer", str(exc))
                return
            self._remember_export_folder(Path(path))
            self.statusBar().showMessage(said(Path(path)), 5000)

    def _export_folder(self) -> str:
        """The last export's folder; with the anonymised display the home folder (the dialog lists a folder's
        files, and an export folder is often named after its patient)."""
        if self.viewer.anonymised:
            return str(Path.home())
        return self.settings.value("export_folder", "") or str(Path.home())

    def _remember_export_folder(self, path: Path) -> None:
        if not self.viewer.anonymised:
            self.settings.setValue("export_folder", str(path.parent))

    def ask_export_results(self) -> None:
        self._ask_export("Export this series' results", "results.csv", "CSV (*.csv)",
                         lambda path: self.export_results(path, path.with_suffix(".json")),
                         lambda path: f"Exported this series' results: {path.name} and {path.with_suffix('.json').name}")

    # ------------------------------------------------------------------ calibration

    def ask_calibrate(self) -> None:
        if self.viewer.model is None:
            QMessageBox.information(self, "ICH Viewer", "No model is loaded.")
            return
        folder = self._file_dialog(QFileDialog.getExistingDirectory,
                                   "Folder of studies known to be normal, from your scanners", self._start_folder(),
                                   options=QFileDialog.Option.ShowDirsOnly)
        if not folder:
            return
        asked = FlagRateDialog(self, site_presets.DEFAULT_MAX_FLAG_RATE * 100)
        if not asked.exec():
            return
        rate = asked.doubleValue()
        name, ok = QInputDialog.getText(self, "Calibrate to this site", "Preset name:", text=site_presets.DEFAULT_NAME)
        if ok and name.strip():
            self.calibrate_site([Path(folder)], rate / 100.0, name.strip())

    def calibrate_site(self, paths: list[Path], max_flag_rate: float, name: str) -> workers.Job:
        """Run the model over ``paths``' normal studies in the background; the preset is saved in the user's
        settings for this model, added beside the card's presets and made active."""
        model = self.viewer.model
        job = workers.calibrate_job(paths, model, max_flag_rate, name, self)
        job.finished.connect(lambda result: self._on_calibrated(model, result))
        job.failed.connect(self._on_calibration_failed)
        self.statusBar().showMessage(f"Calibrating on {', '.join(p.name for p in paths)}...")
        return self.jobs.start(job)

    def _on_calibration_failed(self, message: str) -> None:
        if self.isVisible():  # not when the window closed during the run (which cancels it)
            self.statusBar().showMessage("Calibration not done", 5000)
            QMessageBox.warning(self, "ICH Viewer", message)

    def _on_calibrated(self, model: IchModel, result) -> None:
        preset, outside = result
        try:
            site_presets.save(preset, model.sha256, f"{model.card.name} {model.card.version}")
        except (IchViewerError, OSError) as exc:
            QMessageBox.warning(self, "ICH Viewer", f"The site preset could not be saved: {exc}")
            return
        if self.viewer.model is model:  # still the model it was made for
            self.viewer.thresholds.add_preset(preset)
            self.threshold_panel.set_thresholds(self.viewer.thresholds)  # its button, or a new rule on the old one
            self.viewer.apply_preset(preset.name)
        self.statusBar().showMessage(f"Site preset '{preset.name}' saved: {preset.rule}"
                                     + (f"; {outside} series outside the intended use left out" if outside else ""),
                                     15000)

    # ------------------------------------------------------------------ help

    def show_shortcuts(self) -> None:
        ShortcutsDialog(self).exec()

    def show_about(self) -> None:
        QMessageBox.about(self, "About ICH Viewer",
                          "<b>ICH Viewer</b>: head CT with a local hemorrhage model.<br>"
                          f"<span style='color:#c0392b'>{NOT_FOR_DIAGNOSIS}.</span><br>"
                          "The model runs on this computer with ONNX Runtime; nothing is sent anywhere.")


def _stored_item(paths: list[str]) -> str:
    """One open's paths as one settings string: the path itself, or for several a JSON list (an absolute path
    never starts with "[")."""
    return paths[0] if len(paths) == 1 else json.dumps(paths)


def _item_paths(item: str) -> list[str]:
    if item.startswith("["):
        try:
            paths = json.loads(item)
        except ValueError:
            return []
        return [p for p in paths if isinstance(p, str)] if isinstance(paths, list) else []
    return [item]
