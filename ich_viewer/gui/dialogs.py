"""Dialogs and small panels: the model card, keyboard shortcuts, skipped files, the series browser, the flag
rate a site calibration asks for."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import QLocale, Qt, Signal
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QDoubleSpinBox, QLabel, QListWidget, QTextBrowser,
                               QTreeWidget, QTreeWidgetItem, QVBoxLayout)

from ich_viewer.core.contract import ABBREVIATIONS, CLASSES, NOT_CALIBRATED, ModelCard
from ich_viewer.core.thresholds import threshold_text
from ich_viewer.gui.actions import shortcut_rows


class DotOrCommaBox(QDoubleSpinBox):
    """A number box that takes a dot or a comma as the decimal point, typed or pasted, and shows a dot, as every
    number in the app is written. Qt's box follows the system's language: under German it showed "5,0" and read
    a typed "2.5" as 25 (a thousands separator), and under English "2,5" was 25 and a pasted "2,5" was refused,
    leaving the default. Thousands separators are refused."""

    def __init__(self, parent=None):
        super().__init__(parent)
        locale = QLocale.c()
        locale.setNumberOptions(QLocale.NumberOption.RejectGroupSeparator)
        self.setLocale(locale)

    @staticmethod
    def _plain(text: str) -> str:
        """A comma as a dot, without the per cent sign or spaces a pasted "2,5 %" brings."""
        return text.replace(",", ".").replace("%", "").strip()

    def validate(self, text: str, pos: int):
        plain = self._plain(text)
        return super().validate(plain, min(pos, len(plain)))

    def valueFromText(self, text: str) -> float:  # noqa: N802 - Qt override
        return super().valueFromText(self._plain(text))


class FlagRateDialog(QDialog):
    """The site calibration's "largest share of these normal slices a class may flag (%)": a ten times higher
    rate than meant is inside the allowed range, so nothing would warn, and higher thresholds miss bleeds."""

    LABEL = "Largest share of these normal slices a class may flag (%):"

    def __init__(self, parent, percent: float):
        super().__init__(parent, windowTitle="Calibrate to this site")
        self.box = DotOrCommaBox(self)
        self.box.setRange(0.1, 50.0)
        self.box.setDecimals(1)
        self.box.setValue(percent)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(self.LABEL))
        layout.addWidget(self.box)
        layout.addWidget(buttons)

    def labelText(self) -> str:  # noqa: N802 - as QInputDialog names it
        return self.LABEL

    def doubleValue(self) -> float:  # noqa: N802
        self.box.interpretText()
        return self.box.value()

    def setDoubleValue(self, value: float) -> None:  # noqa: N802
        self.box.setValue(value)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _external_html(external: dict, card: ModelCard) -> str:
    """The card's figures at hospitals the model never saw (cards from ``training bundle`` carry them)."""
    e, parts = html.escape, []
    loho = external.get("leave_one_hospital_out") or {}
    if loho:
        rows = "".join(f"<tr><td>{e(name)}</td><td>{v.get('patients')}</td><td>{_fmt(v['any']['auc'])}</td>"
                       f"<td>{_fmt(v['intraparenchymal']['auc'])}</td></tr>" for name, v in loho.items())
        parts.append("<h3>At a hospital left out of training</h3><table border=1 cellpadding=3><tr><th>held-out "
                     "hospital</th><th>patients</th><th>slice AUC any</th><th>slice AUC intraparenchymal</th></tr>"
                     f"{rows}</table>")
    normal = external.get("rsna_unlabelled") or {}
    if normal.get("flag_rate"):
        # a class never flagged (not calibrated, or its preset's rule not met) reads 0%: say why, not a measurement
        rows = "".join(f"<tr><td>{e(p)}</td>" + "".join(
            "<td>n.c.</td>" if card.calibration[c] == NOT_CALIBRATED else
            "<td>not met</td>" if c in card.unmet.get(p, {}) else f"<td>{100 * r[c]:.0f}%</td>" for c in CLASSES)
            + "</tr>" for p, r in normal["flag_rate"].items())
        parts.append(f"<h3>Normal-study flag rate</h3><p>Share of {normal.get('slices')} single slices from other "
                     "hospitals (non-contrast, about 98% normal) flagged at each preset, as the viewer flags them "
                     "(n.c.: not calibrated and not met: the preset's rule cannot be met, so never flagged).</p>"
                     "<table border=1 "
                     "cellpadding=3><tr><th>preset</th>" + "".join(f"<th>{c}</th>" for c in CLASSES)
                     + f"</tr>{rows}</table>")
    return "".join(parts)


def _sources_text(sources) -> str:
    """The training sources in words ("ctich_png, phe_sich, phantom (40 studies)"), not a Python list's repr."""
    if not isinstance(sources, list):
        return str(sources or "not stated")
    words = []
    for source in sources:
        if not isinstance(source, dict):
            words.append(str(source))
            continue
        studies = source.get("n_studies")
        words.append(str(source.get("kind", "?")) + (f" ({studies} synthetic studies)" if studies else ""))
    return ", ".join(words)


def _code_text(training: dict) -> str:
    """The training code's version; "-dirty" (git's word) said as what it means."""
    version = str(training.get("code_version", "?"))
    return version.replace("-dirty", " with changes not yet committed")


def card_html(card: ModelCard, path: Path, sha256: str, weights_sha256: str | None = None,
              quantised: bool = False) -> str:
    raw = card.raw
    validation = raw.get("validation") or {}
    training = raw.get("training") or {}
    rows = "".join(
        f"<tr><td>{c}</td><td>{_fmt((validation.get('auc') or {}).get(c))}</td>"
        f"<td>{_fmt((validation.get('ap') or {}).get(c))}</td>"
        f"<td>{_fmt(((validation.get('study_level') or {}).get(c) or {}).get('recall'))}</td>"
        f"<td>{_fmt(((validation.get('study_level') or {}).get(c) or {}).get('specificity'))}</td></tr>"
        for c in CLASSES)
    e = html.escape
    presets = "".join(
        f"<tr><td>{e(n)}" + (f"<br><small>{e(card.preset_rules[n])}</small>" if n in card.preset_rules else "")
        + "</td>" + "".join("<td>not met</td>" if c in card.unmet.get(n, {}) else f"<td>{threshold_text(v[c])}</td>"
                            for c in CLASSES) + "</tr>"
        for n, v in card.presets.items())
    presets += ("<tr><td>calibration</td>" + "".join(f"<td>{e(card.calibration[c])}</td>" for c in CLASSES) + "</tr>")
    return (
        f"<h2>{e(card.name)} {e(card.version)}</h2>"
        f"<p style='color:#c0392b'><b>Not for diagnostic use.</b></p>"
        f"<h3>Intended use</h3><p>{e(card.intended_use)}</p>"
        f"<h3>Limitations</h3><p>{e(card.limitations)}</p>"
        f"<h3>Validation</h3><p>{e(str(validation.get('dataset', '')))}<br>{e(str(validation.get('split', '')))}<br>"
        f"{validation.get('slices', '?')} slices, {validation.get('patients', '?')} patients</p>"
        "<table border=1 cellpadding=3><tr><th>class</th><th>slice AUC</th><th>slice AP</th>"
        f"<th>study sensitivity</th><th>study specificity</th></tr>{rows}</table>"
        "<h3>Threshold presets</h3><table border=1 cellpadding=3><tr><th>preset</th>"
        + "".join(f"<th>{c}</th>" for c in CLASSES) + f"</tr>{presets}</table>"
        + _external_html(raw.get("external_validation") or {}, card)
        + f"<h3>Training</h3><p>{e(str(raw.get('architecture', '')))}, input {e(str(raw.get('input', '')))}<br>"
        f"data: {e(_sources_text(training.get('data_sources')))}<br>epochs {training.get('epochs', '?')}, "
        f"{training.get('hardware', '?')}, {training.get('wall_time_s', '?')} s, code {e(_code_text(training))}"
        f"<br>{e(str(validation.get('citation', '')))}<br>{_thickness_html(card.slice_thickness_mm)}"
        + ("<br>weights: INT8, quantised after training; the validation figures and thresholds above were measured "
           "on the model before quantisation" if quantised else "") + "</p>"
        f"<p><small>{e(str(path))}<br>SHA-256 {sha256}"
        + (f"<br>weights SHA-256 {e(weights_sha256)}" if weights_sha256 else "")
        + f"<br>licence: {e(str(raw.get('license', '')))}</small></p>")


def _thickness_html(thickness_mm: float | None) -> str:
    """The training slice thickness changes what the viewer feeds the model, so the card says it."""
    if not thickness_mm:
        return "training slice thickness not stated: every series is fed slice by slice"
    return (f"trained on {thickness_mm:g} mm slices: a thinner series is fed as {thickness_mm:g} mm slabs (the average "
            "of neighbouring slices), and the view still shows the thin slice")


def resize_within_screen(widget, width: int, height: int) -> None:
    """``width`` x ``height``, or less where the widget's screen has less room: a 760 x 640 model card on a
    1920 x 1080 screen at 200% (960 x 540) had its Close button below the screen."""
    screen = widget.screen().availableGeometry()
    widget.resize(min(width, screen.width()), min(height, screen.height()))


class ModelCardDialog(QDialog):
    def __init__(self, card: ModelCard, path: Path, sha256: str, parent=None, weights_sha256: str | None = None,
                 quantised: bool = False):
        super().__init__(parent)
        self.setWindowTitle("Model card")
        resize_within_screen(self, 760, 640)
        layout = QVBoxLayout(self)
        self.text = QTextBrowser()
        self.text.setHtml(card_html(card, path, sha256, weights_sha256, quantised))
        layout.addWidget(self.text)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)


class ShortcutsDialog(QDialog):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        resize_within_screen(self, 560, 420)
        layout = QVBoxLayout(self)
        text = QTextBrowser()
        text.setHtml("<table cellpadding=4>" + "".join(f"<tr><td><b>{html.escape(k)}</b></td><td>{html.escape(v)}</td></tr>"
                                                       for k, v in shortcut_rows()) + "</table>")
        layout.addWidget(text)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)


class SkippedList(QListWidget):
    """Files that were not used, one line each with the reason (a non-modal dock)."""

    def show_skipped(self, skipped, total: int = 0, anonymised: bool = False) -> None:
        """Name and reason, or with the anonymised display "file 17 of 238: reason" (names carry patients')."""
        self.clear()
        for item in skipped:
            self.addItem(item.anonymous(total) if anonymised else f"{Path(item.path).name}: {item.reason}")


class SeriesBrowser(QTreeWidget):
    """Patient / study date / description / slice count; choosing a series opens it. A classified series
    names its flagged classes ("flagged: any, SDH", in full in its tooltip); a series with geometry warnings (a gap, shared
    positions, irregular spacing) is marked with one and lists them in its tooltip."""

    seriesChosen = Signal(object, object)  # study, series
    NAME_ROLE = Qt.ItemDataRole.UserRole + 1

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setHeaderLabels(["study / series", "date", "slices"])
        self.itemActivated.connect(self._on_activated)
        self.itemClicked.connect(self._on_activated)
        self.flagged: dict[str, str] = {}  # series UID -> what it says once classified (kept across redraws)

    def show_result(self, result, anonymised: bool) -> None:
        self.clear()
        for study in result.studies:
            who = "anonymised" if anonymised else (study.patient.name or study.patient.id or "unknown patient")
            date = "" if anonymised else study.date
            top = QTreeWidgetItem([f"{who}: {study.description or 'study'}", date, ""])
            self.addTopLevelItem(top)
            for series in study.series:
                name = series.description or f"series {series.number or ''}"
                warnings = series.geometry.warnings
                child = QTreeWidgetItem([name, "", str(len(series)) + (" \u26a0" if warnings else "")])
                child.setData(0, Qt.ItemDataRole.UserRole, (study, series))
                child.setData(0, self.NAME_ROLE, name)
                top.addChild(child)
                self._label(child)
            top.setExpanded(True)
        self.resizeColumnToContents(0)

    def series_item(self, series) -> QTreeWidgetItem | None:
        for i in range(self.topLevelItemCount()):
            top = self.topLevelItem(i)
            for j in range(top.childCount()):
                data = top.child(j).data(0, Qt.ItemDataRole.UserRole)
                if data and data[1].uid == series.uid:
                    return top.child(j)
        return None

    def show_flagged(self, series, classes: list[str] | None, reason: str = "") -> None:
        """After ``series`` is classified: its flagged classes (none: "nothing flagged"), or ``reason`` why none
        are flagged at all (outside the intended use). The row names them short (EDH, IPH, ...) so that it fits
        the compact dock; its tooltip says them in full."""
        if reason:
            self.flagged[series.uid] = ("not flagged", f"Not flagged: {reason}")
        elif classes:
            self.flagged[series.uid] = ("flagged: " + ", ".join(ABBREVIATIONS[c] for c in classes),
                                        "Flagged: " + ", ".join(classes))
        else:
            self.flagged[series.uid] = ("nothing flagged", "Nothing flagged")
        item = self.series_item(series)
        if item is not None:
            self._label(item)
            self.resizeColumnToContents(0)

    def forget_flagged(self, series=None) -> None:
        """Drop what the tree says ``series`` (default: every series) has flagged: another model, or a run that
        failed, makes it stale ("flagged: any, IPH" stayed from the bundled model after another was refused)."""
        for i in range(self.topLevelItemCount()):
            top = self.topLevelItem(i)
            for j in range(top.childCount()):
                item = top.child(j)
                data = item.data(0, Qt.ItemDataRole.UserRole)
                if data and (series is None or data[1].uid == series.uid):
                    self.flagged.pop(data[1].uid, None)
                    self._label(item)

    def _label(self, item: QTreeWidgetItem) -> None:
        study, series = item.data(0, Qt.ItemDataRole.UserRole)
        short, full = self.flagged.get(series.uid, ("", ""))
        item.setText(0, item.data(0, self.NAME_ROLE) + (f" \u2014 {short}" if short else ""))
        tips = [full] if full else []
        if series.geometry.warnings:
            tips.append("Geometry: " + "; ".join(series.geometry.warnings))
        for column in range(self.columnCount()):
            item.setToolTip(column, "\n".join(tips))

    def _on_activated(self, item, _column=0) -> None:
        data = item.data(0, Qt.ItemDataRole.UserRole)
        if data:
            self.seriesChosen.emit(*data)
