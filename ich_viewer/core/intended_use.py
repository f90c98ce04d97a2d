"""Is a series what the model is for (non-contrast head CT)? Read from its header: tags and descriptions.

A contrast-enhanced series (CQ500-CT-0: "4cc sec 150cc D3D on", an injection protocol) lights up
vessels and enhancing tissue that a non-contrast model reads as blood: the bundled model flagged "any"
on 135 of its 238 slices. Such a series is reported as outside the intended use and not flagged (its
probabilities stay visible on request). What is checked, in the header only:

- contrast: a ContrastBolusAgent or ContrastBolusRoute, or a series/study/protocol description that
  says contrast ("C+", "post contrast", "CTA", "angio", "enhanced", an injected volume or rate such as "150cc"
  or "4cc/sec"), unless it says the opposite ("non-contrast", "w/o", "plain", "NCCT");
- not a head: BodyPartExamined or the description names another region (chest, abdomen, spine...);
- bone-only reconstruction: a bone kernel ("BONE", Siemens H60-H90) or "bone" in the description;
- not axial: slices more than 45 degrees from axial (a sagittal or coronal reformat), which the model, trained on
  axial slices, had read and flagged like any other (a gantry tilt of up to 30 degrees is still axial).

Image content was measured and left out: the share of intracranial pixels above 90 HU is 0.9% (median
of the middle slices) on CQ500-CT-0 but 0.3% (median) to 20% (90th percentile, skull-base slices) on
single ``rsna-unlabelled`` slices, so it cannot tell them apart slice by slice.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ich_viewer.core.series import Series, slice_normal

CONTRAST = re.compile(r"(?<![a-z])(contrast|c\+|\+c|post[- ]?(contrast|con|c)|cta|angio\w*|enhanced|venogra\w*|perfusion|"
                      r"\d+(\.\d+)?\s*cc|cc\s*/?\s*s(ec)?)(?![a-z])", re.I)
NO_CONTRAST = re.compile(r"non[- ]?contrast|without contrast|no contrast|w/o|(?<![a-z])(plain|nect|ncct|pre)(?![a-z])",
                         re.I)
OTHER_REGION = re.compile(r"(?<![a-z])(chest|thorax|lung|abdomen|abd|pelvis|spine|lumbar|thoracic|cardiac|"
                          r"extremit\w*|knee|shoulder)(?![a-z])", re.I)
HEAD = re.compile(r"head|brain|skull|cran", re.I)
BONE_WORD = re.compile(r"(?<![a-z])bone(?![a-z])", re.I)
BONE_KERNEL = re.compile(BONE_WORD.pattern + r"|(?<![a-z0-9])h[6-9]\d", re.I)  # also Siemens' sharp head kernels

CONTRAST_ENHANCED, NOT_A_HEAD, BONE_ONLY, NOT_AXIAL = ("contrast-enhanced", "not a head", "bone reconstruction",
                                                      "not axial slices")
AXIAL_MIN_COS = math.cos(math.radians(45))  # the slice normal's head-to-foot share, at least


@dataclass(frozen=True)
class UseCheck:
    """Why a series is outside the model's intended use (no reasons: within it), each with its evidence."""

    reasons: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()

    @property
    def outside(self) -> bool:
        return bool(self.reasons)

    @property
    def sentence(self) -> str:
        return f"outside the model's intended use: {', '.join(self.reasons)}" if self.outside else ""

    def as_dict(self) -> dict:
        return {"within": not self.outside, "reasons": list(self.reasons), "evidence": list(self.evidence)}


def check(series: Series, study_description: str = "") -> UseCheck:
    """The header's verdict on ``series``. The description's evidence is quoted: it names the protocol,
    never the patient."""
    acq = series.acquisition
    descriptions = [text for text in (series.description, study_description, acq.protocol) if text]
    reasons, evidence = [], []
    said = " / ".join(descriptions)
    if acq.contrast_agent.strip().upper() not in ("", "NONE", "NO", "N/A"):
        reasons.append(CONTRAST_ENHANCED)
        evidence.append(f"contrast agent recorded ({acq.contrast_agent.strip()[:40]})")
    elif acq.contrast_route.strip():
        reasons.append(CONTRAST_ENHANCED)
        evidence.append(f"contrast route recorded ({acq.contrast_route.strip()[:40]})")
    elif CONTRAST.search(said) and not NO_CONTRAST.search(said):
        reasons.append(CONTRAST_ENHANCED)
        evidence.append(f"description {said[:80]!r}")
    # BodyPartExamined decides when recorded; otherwise a description naming another region and no head.
    if (not HEAD.search(acq.body_part)) if acq.body_part else (OTHER_REGION.search(said) and not HEAD.search(said)):
        reasons.append(NOT_A_HEAD)
        evidence.append(f"body part {(acq.body_part or said)[:40]!r}")
    if BONE_KERNEL.search(acq.kernel):
        reasons.append(BONE_ONLY)
        evidence.append(f"kernel {acq.kernel!r}")
    elif BONE_WORD.search(said):
        reasons.append(BONE_ONLY)
        evidence.append(f"description {said[:80]!r}")
    if series.orientation is not None:
        normal = slice_normal(series.orientation)
        if abs(normal[2]) < AXIAL_MIN_COS:
            reasons.append(NOT_AXIAL)
            plane = "sagittal" if abs(normal[0]) >= abs(normal[1]) else "coronal"
            evidence.append(f"{plane} slices (normal {normal[0]:+.2f} {normal[1]:+.2f} {normal[2]:+.2f})")
    return UseCheck(tuple(reasons), tuple(evidence))
