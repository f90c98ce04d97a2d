"""PHE-SICH-CT-IDS (Shengjing Hospital of China Medical University): a second hospital beside CT-ICH.

118 patients with spontaneous basal-ganglia intracerebral hemorrhage, 3,446 axial slices exported like
the CT-ICH PNGs: ``image/<patient>_<slice>.png`` (256x256 8-bit, 2x2 area-averaged) and ``labels.csv``
(image, patient_id, any, intraparenchymal).

* Labels are partial: a slice is positive when the dataset's detection annotation boxes a hematoma on
  it, which makes it "any" and intraparenchymal. The other four subtypes are not labelled (some
  hematomas reach the ventricles), so they are UNKNOWN, never negative (:attr:`PheSichSource.classes`).
  The labels are derived: a negative slice may still hold a small bleed at a hematoma's edge.
* Orientation: already display orientation (nose up), so no rotation, unlike CT-ICH's raw array order.
  Left-right is not verified; training flips left-right at random anyway.
* Pixels -> HU: the export's window was not recorded, see :data:`PHE_SICH_WINDOW`.
* One study per patient; patients are prefixed (``PHE_SICH_0001``) so they never merge with another
  source's in a patient-level split.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from training.data.base import SliceRecord, partial_labels
from training.data.ctich import CtichPngSource, _check_unique, _flag, _read_table, png_export, window_to_hu

__all__ = ["PHE_SICH_HU_RANGE", "PHE_SICH_LABELLED", "PHE_SICH_WINDOW", "PheSichSource"]

#: The window (level, width) assumed to have made the PNGs. Not recorded by the dataset: brain parenchyma
#: sits at grey level ~106/255 (5-95%: 91-128), about 30 HU under 40/120 and 33 HU under 40/80, so both
#: fit the anatomy. 40/120 is used because a model trained on CT-ICH alone separates this set's positive
#: slices better under it (slice AUC(any) 0.94 vs 0.87 under 40/80), i.e. blood and brain then get the
#: HU that model learnt, and because it is CT-ICH's export window: both sources then cover the same
#: -20..100 HU and saturate bone at the same value. The window may differ between patients; HU-scale
#: augmentation (``augment.hu_scale``) is the hedge.
PHE_SICH_WINDOW = (40.0, 120.0)
PHE_SICH_HU_RANGE = (PHE_SICH_WINDOW[0] - PHE_SICH_WINDOW[1] / 2, PHE_SICH_WINDOW[0] + PHE_SICH_WINDOW[1] / 2)
#: Widths the export window may have had (the anatomy fits 80 as well as 120): read as 120, the true HU
#: about the level are the read ones times 80/120..1 (``augment.export_window`` draws from that range).
PHE_SICH_WIDTHS = (80.0, 120.0)
#: The classes labels.csv states; the others are unknown.
PHE_SICH_LABELLED = ("any", "intraparenchymal")
COLUMNS = ("image", "patient_id", *PHE_SICH_LABELLED)


class PheSichSource:
    """The PNG export: ``labels.csv`` plus ``image/<patient>_<slice>.png``; records in ``labels.csv`` order."""

    name = "phe_sich"
    hu_range = PHE_SICH_HU_RANGE
    classes = PHE_SICH_LABELLED
    #: (level, width read, lowest, highest HU scale about the level) that the unrecorded export window allows
    export_window_scale = (*PHE_SICH_WINDOW, PHE_SICH_WIDTHS[0] / PHE_SICH_WINDOW[1], 1.0)

    def __init__(self, root: str | Path, name: str | None = None):
        self.name = name or type(self).name  # SliceRecord.source; a config may rename a source (train_only)
        self.root, self.labels_csv = png_export(root, "PHE-SICH", "labels.csv and image/<patient>_<slice>.png")

    def records(self) -> list[SliceRecord]:
        rows = _read_table(self.labels_csv, COLUMNS, "a PHE-SICH label table")
        out = []
        for line, row in enumerate(rows, 1):
            image, patient_id = row["image"].strip(), row["patient_id"].strip()
            match = re.fullmatch(rf"{re.escape(patient_id)}_(\d+)\.png", Path(image).name)
            if not match:
                raise ValueError(f"{self.labels_csv}, data row {line}: image {image!r} is not "
                                 f"<patient_id>_<slice>.png for patient {patient_id!r}")
            known = {c: _flag(row[c], self.labels_csv, line, c) for c in PHE_SICH_LABELLED}
            if known["intraparenchymal"] > known["any"]:
                raise ValueError(f"{self.labels_csv}, data row {line}: intraparenchymal is 1 but any is 0")
            patient, index = f"PHE_SICH_{patient_id}", int(match.group(1))
            out.append(SliceRecord(key=f"phe_sich/{patient_id}/{index}", patient=patient, study=patient, index=index,
                                   labels=partial_labels(known), source=self.name,
                                   extra={"image": str(self.root / "image" / Path(image).name)}))
        _check_unique(out, self.labels_csv)
        if out and not Path(out[0].extra["image"]).is_file():
            raise FileNotFoundError(f"{self.labels_csv} lists {out[0].extra['image']}, which does not exist")
        return out

    def read_hu(self, record: SliceRecord) -> np.ndarray:
        """float32 HU [H, W] under :data:`PHE_SICH_WINDOW`, only -20..100 recoverable (0 and 255 are clipped)."""
        pixels = CtichPngSource._read_png(record.extra["image"])
        if pixels.dtype != np.uint8:
            raise ValueError(f"{record.extra['image']} is not 8-bit ({pixels.dtype}); the PHE-SICH export is")
        return window_to_hu(pixels, PHE_SICH_WINDOW)
