"""A site preset in the window: read from the user's settings for this model, shown beside the card's presets
with the card's read-outs, and made by Model > Calibrate to this site (the same calibration as the CLI)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings, Qt

from ich_viewer.core import site_presets
from ich_viewer.core.contract import CLASSES
from ich_viewer.core.model import IchModel
from ich_viewer.core.phantom import make_phantom, write_phantom_study
from ich_viewer.gui.main_window import MainWindow


@pytest.fixture
def config_home(tmp_path, monkeypatch):
    """A private HOME and XDG_CONFIG_HOME: nothing reaches the real user's settings."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "config" / "ich-viewer"


def make_window(qtbot, tmp_path, tiny_model) -> MainWindow:
    w = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat),
                   model=IchModel(tiny_model))
    qtbot.addWidget(w)
    w.show()
    return w


def test_a_saved_site_preset_shows_beside_the_cards_and_applies(qtbot, config_home, tmp_path, tiny_model):
    model = IchModel(tiny_model)
    preset = site_presets.SitePreset("site", dict.fromkeys(CLASSES, 0.9), 0.05, 150, 5, floor_preset="balanced")
    site_presets.save(preset, model.sha256, "tiny")
    site_presets.save(site_presets.SitePreset("other", dict.fromkeys(CLASSES, 0.7), 0.05, 150, 5), "f" * 64, "x")
    window = make_window(qtbot, tmp_path, tiny_model)
    panel = window.threshold_panel
    names = [panel.preset_row.itemAt(i).widget().text() for i in range(panel.preset_row.count())]
    assert names == ["balanced", "high sensitivity", "precision 0.7", "site"]  # not "other": another model's
    button = panel.findChild(type(panel.preset_row.itemAt(0).widget()), "preset_site")
    assert "at most 5% of 150 normal slices" in button.toolTip()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert window.viewer.thresholds.preset == "site" and panel.values["any"].text() == "0.900"
    assert "preset: site (site: at most 5%" in panel.preset_label.text()
    assert panel.readouts["any"].text().startswith("P\N{NO-BREAK SPACE}")  # the card's validation read-outs, still shown


def test_calibrating_in_the_window_saves_and_shows_the_preset(qtbot, config_home, tmp_path, tiny_model):
    normals = tmp_path / "normals"
    for seed in range(3):  # 3 studies of 36 slices: enough (100 slices from 3 studies)
        write_phantom_study(make_phantom(seed=seed, subtypes=[], n_slices=36, size=64), normals / f"s{seed}",
                            patient_id=f"N{seed}")
    window = make_window(qtbot, tmp_path, tiny_model)
    with qtbot.waitSignal(window.viewer.thresholds_changed, timeout=60000):
        window.calibrate_site([normals], 0.05, "night shift")
    thresholds = window.viewer.thresholds
    assert thresholds.preset == "night shift"
    assert window.threshold_panel.findChild(type(window.threshold_panel.preset_row.itemAt(0).widget()),
                                            "preset_night shift") is not None
    saved = site_presets.load(window.viewer.model.sha256)["night shift"]
    assert saved.slices == 108 and saved.studies == 3 and saved.thresholds == thresholds.values
    assert max(saved.flag_rates.values()) <= 0.05
    assert (config_home / "site_presets.json").exists()


def test_calibrating_on_too_few_studies_says_why(qtbot, config_home, tmp_path, tiny_model, monkeypatch):
    write_phantom_study(make_phantom(seed=1, subtypes=[], n_slices=12, size=64), tmp_path / "one", patient_id="N")
    window = make_window(qtbot, tmp_path, tiny_model)
    messages = []
    monkeypatch.setattr("ich_viewer.gui.file_actions.QMessageBox.warning", lambda *args: messages.append(args[2]))
    job = window.calibrate_site([tmp_path / "one"], 0.05, "site")
    qtbot.waitUntil(lambda: bool(messages), timeout=20000)
    assert "Too few normal slices to calibrate on: 12 slice(s) from 1 study" in messages[0]
    assert job is not None and not (config_home / "site_presets.json").exists()


def test_closing_the_window_cancels_a_calibration(qtbot, config_home, tmp_path, tiny_model, monkeypatch):
    normals = tmp_path / "normals"
    for seed in range(3):
        write_phantom_study(make_phantom(seed=seed, subtypes=[], n_slices=40, size=64), normals / f"s{seed}")
    window = make_window(qtbot, tmp_path, tiny_model)
    messages = []
    monkeypatch.setattr("ich_viewer.gui.file_actions.QMessageBox.warning", lambda *args: messages.append(args[2]))
    job = window.calibrate_site([normals], 0.05, "site")
    window.close()
    assert not job.running  # stopped (or done), not left running behind a closed window
    qtbot.wait(200)
    assert messages == []  # and no message box after the window has gone
    assert not (config_home / "site_presets.json").exists()  # cancelled before its first batch: nothing saved


def answer_input_dialogs(answers: list) -> list[str]:
    """Fill in the real QInputDialogs as they open, in order: a number, a text, or None to cancel one.
    Returns the labels the dialogs showed."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QInputDialog

    from ich_viewer.gui.dialogs import FlagRateDialog

    pending, labels = list(answers), []

    def poll():
        dialog = QApplication.activeModalWidget()
        if isinstance(dialog, (QInputDialog, FlagRateDialog)) and dialog.isVisible() and pending:
            answer = pending.pop(0)
            labels.append(dialog.labelText())
            if answer is None:
                dialog.reject()
            else:
                dialog.setTextValue(answer) if isinstance(answer, str) else dialog.setDoubleValue(answer)
                dialog.accept()
        if pending:
            QTimer.singleShot(20, poll)

    QTimer.singleShot(20, poll)
    return labels


@pytest.fixture
def normals(tmp_path):
    for seed in range(3):
        write_phantom_study(make_phantom(seed=seed, subtypes=[], n_slices=36, size=64), tmp_path / "normals" / f"s{seed}",
                            patient_id=f"N{seed}")
    return tmp_path / "normals"


def test_the_calibrate_menu_item_asks_folder_rate_and_name_then_saves(qtbot, config_home, tmp_path, tiny_model,
                                                                     normals, monkeypatch):
    window = make_window(qtbot, tmp_path, tiny_model)
    asked = []
    monkeypatch.setattr("ich_viewer.gui.file_actions.QFileDialog.getExistingDirectory",
                        lambda parent, caption, start, **kw: asked.append(caption) or str(normals))  # the system's chooser
    labels = answer_input_dialogs([2.5, "ward 3"])
    with qtbot.waitSignal(window.viewer.thresholds_changed, timeout=60000):
        window.actions["Calibrate to this site..."].trigger()
    qtbot.waitUntil(lambda: window.viewer.thresholds.preset == "ward 3", timeout=60000)
    assert asked == ["Folder of studies known to be normal, from your scanners"]
    assert "(%)" in labels[0] and labels[1] == "Preset name:"
    saved = site_presets.load(window.viewer.model.sha256)["ward 3"]
    assert saved.max_flag_rate == pytest.approx(0.025) and saved.slices == 108
    assert max(saved.flag_rates.values()) <= 0.025


def test_cancelling_a_calibrate_dialog_changes_nothing(qtbot, config_home, tmp_path, tiny_model, normals,
                                                       monkeypatch):
    window = make_window(qtbot, tmp_path, tiny_model)
    monkeypatch.setattr("ich_viewer.gui.file_actions.QFileDialog.getExistingDirectory", lambda *a, **kw: str(normals))
    before = window.viewer.thresholds.preset
    for answers in ([None], [5.0, None]):  # cancel the rate, then the name
        labels = answer_input_dialogs(answers)
        window.actions["Calibrate to this site..."].trigger()
        assert len(labels) == len(answers)
        assert not window.statusBar().currentMessage().startswith("Calibrating")
    monkeypatch.setattr("ich_viewer.gui.file_actions.QFileDialog.getExistingDirectory", lambda *a, **kw: "")
    window.actions["Calibrate to this site..."].trigger()  # no folder chosen: no question asked
    qtbot.wait(200)
    assert window.viewer.thresholds.preset == before and not (config_home / "site_presets.json").exists()


def test_the_calibrate_menu_item_without_a_model_says_so(qtbot, config_home, tmp_path, monkeypatch):
    window = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat),
                        load_bundled=False)
    qtbot.addWidget(window)
    said = []
    monkeypatch.setattr("ich_viewer.gui.file_actions.QMessageBox.information", lambda *args: said.append(args[2]))
    monkeypatch.setattr("ich_viewer.gui.file_actions.QFileDialog.getExistingDirectory",
                        lambda *a: pytest.fail("asked for a folder without a model"))
    window.actions["Calibrate to this site..."].trigger()
    assert said == ["No model is loaded."]


@pytest.mark.parametrize("language", ["German", "English"])
def test_the_flag_rate_reads_a_dot_or_a_comma_as_the_decimal_point_in_any_language(qtbot, language):
    """An outside tester: under a German locale the rate box showed "5,0" and read a typed "2.5" as 25 (a
    thousands separator); under English, "2,5" was 25. Either is a ten times higher flag rate, inside the allowed
    range, so nothing warned, and higher thresholds miss bleeds."""
    from PySide6.QtCore import QLocale
    from PySide6.QtWidgets import QApplication, QDoubleSpinBox

    from ich_viewer.gui.dialogs import FlagRateDialog

    before = QLocale()
    QLocale.setDefault(QLocale(getattr(QLocale.Language, language), QLocale.Country.AnyCountry))
    try:
        dialog = FlagRateDialog(None, 5.0)
        qtbot.addWidget(dialog)
        dialog.show()
        box = dialog.findChild(QDoubleSpinBox)
        assert box.text() == "5.0"  # as every number in the app is written
        for typed in ("2.5", "2,5", "0,5", "12.5"):
            box.lineEdit().selectAll()
            qtbot.keyClicks(box.lineEdit(), typed)
            box.interpretText()
            assert box.value() == pytest.approx(float(typed.replace(",", "."))), typed
        box.lineEdit().selectAll()
        qtbot.keyClicks(box.lineEdit(), "1,000")  # a thousands separator is not one here: 1.0 (then "00"), never 1000
        box.interpretText()
        assert box.value() == pytest.approx(1.0) and dialog.doubleValue() == box.value()
        for pasted in ("2,5", "0.5", "2,5%", " 2,5 %"):  # testers: a pasted "2,5" or "2,5%" was refused, and the
            # default 5 % used
            QApplication.clipboard().setText(pasted)
            box.lineEdit().selectAll()
            box.lineEdit().paste()
            assert dialog.doubleValue() == pytest.approx(float(pasted.replace(",", ".").strip(" %"))), pasted
    finally:
        QLocale.setDefault(before)
