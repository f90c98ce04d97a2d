"""The imaging core: DICOM loading, geometry, Hounsfield units, windows, phantom, inference.

Nothing here imports Qt; it runs and is tested with no display (enforced by import-linter).
"""
