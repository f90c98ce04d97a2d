"""ICH Viewer: a desktop viewer for head CT with a local model for intracranial hemorrhage.

Teaching and demonstration software, not a medical device: not for diagnosis.
"""

import os

# Offline by construction: ONNX Runtime (1.29 and later) sends telemetry on Linux and writes a device
# identifier under ~/.cache/Microsoft unless this is set before it is first imported. Every entry point
# (viewer, triage, training, tests, the frozen app) imports this package first; it is set, not defaulted,
# so no environment can turn it back on.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

__all__ = ["load", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str):
    """``ich_viewer.load`` on first use: importing the package (or ``ich_viewer.core.windows``) must not pull
    in pydicom, GDCM and the decoders."""
    if name == "load":
        from ich_viewer.core.dicom_io import load

        return load
    raise AttributeError(f"module 'ich_viewer' has no attribute {name!r}")
