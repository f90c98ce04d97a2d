"""Patient-level splits: a patient's slices are always on one side (the seed papers split by slice)."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold


def patient_folds(patients: list[str], any_labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold number per slice: grouped by patient, stratified so each fold gets bleeding patients."""
    if len(set(patients)) < folds:
        raise ValueError(f"{len(set(patients))} patients cannot make {folds} patient-level folds")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold_of = np.empty(len(patients), np.int16)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(patients)), any_labels, groups=patients)):
        fold_of[held_out] = fold
    return fold_of


def train_val_indices(patients: list[str], any_labels: np.ndarray, folds: int, fold: int, seed: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    if not 0 <= fold < folds:
        raise ValueError(f"fold must be in 0..{folds - 1}")
    fold_of = patient_folds(patients, any_labels, folds, seed)
    return np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)
