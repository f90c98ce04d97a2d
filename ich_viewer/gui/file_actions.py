"""What the main window does with files and dialogs: open, recent, drop, export, model, about.

A mixin of :class:`~ich_viewer.gui.main_window.MainWindow` (it uses the window's ``viewer``,
``settings`` and ``view``), kept apart so the window itself stays layout and wiring.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox

from ich_viewer.core.errors import IchViewerError
from ich_viewer.core.model import IchModel
from ich_viewer.gui.dialogs import ModelCardDialog, ShortcutsDialog

NOT_FOR_DIAGNOSIS = "Teaching and demonstration only: not for diagnostic use"
MAX_RECENT = 8


class FileActions:
    # ------------------------------------------------------------------ opening

    def ask_open_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a study folder", self.settings.value("last_folder", ""))
        if folder:
            self.open_paths([Path(folder)])

    def ask_open_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Open DICOM files", self.settings.value("last_folder", ""),
                                                "DICOM, zip or DICOMDIR (*)")
        if files:
            self.open_paths([Path(f) for f in files])

    def open_demo(self) -> None:
        from ich_viewer.demo import demo_study_dir

        self.open_paths([demo_study_dir()])

    def _recent(self) -> list[str]:
        """The stored recent items that are absolute paths and still exist (deleted and relative ones drop out)."""
        stored = self.settings.value("recent") or []
        if isinstance(stored, str):  # QSettings' INI format reads a one-item list back as a plain string
            stored = [stored]
        return [item for item in stored if Path(item).is_absolute() and Path(item).exists()]

    def _remember(self, paths: list[Path]) -> None:
        first = Path(os.path.abspath(paths[0]))  # a relative path from the command line means nothing later
        if first.exists():
            self.settings.setValue("last_folder", str(first if first.is_dir() else first.parent))
        recent = [str(first)] if first.exists() else []
        self.settings.setValue("recent", (recent + [r for r in self._recent() if r != str(first)])[:MAX_RECENT])
        self._update_recent_menu()

    def _update_recent_menu(self) -> None:
        self.recent_menu.clear()
        for item in self._recent():
            action = self.recent_menu.addAction(item)
            action.triggered.connect(lambda _=False, p=item: self.open_paths([Path(p)]))

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
        path, _ = QFileDialog.getOpenFileName(self, "Open a model", "", "ONNX model (*.onnx)")
        if path:
            self.open_model(Path(path))

    def open_model(self, path: Path) -> bool:
        try:
            self.viewer.set_model(IchModel(path))
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
        ModelCardDialog(model.card, model.path, model.sha256, self).exec()

    # ------------------------------------------------------------------ export

    def export_png(self, path: Path) -> None:
        self.view.grab().save(str(path), "PNG")

    def export_results(self, csv_path: Path, json_path: Path) -> None:
        """The open series' per-slice CSV and JSON summary, in triage's format (the viewer model writes both)."""
        if self.viewer.prediction is None or self.viewer.series is None:
            raise IchViewerError("There are no results to export yet: open a series and classify it first.")
        self.viewer.export_results(csv_path, json_path)

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

    # ------------------------------------------------------------------ help

    def show_shortcuts(self) -> None:
        ShortcutsDialog(self).exec()

    def show_about(self) -> None:
        QMessageBox.about(self, "About ICH Viewer",
                          "<b>ICH Viewer</b>: head CT with a local hemorrhage model.<br>"
                          f"<span style='color:#c0392b'>{NOT_FOR_DIAGNOSIS}.</span><br>"
                          "The model runs on this computer with ONNX Runtime; nothing is sent anywhere.")
