"""ICH Viewer: a desktop viewer for head CT with a local model for intracranial hemorrhage.

Teaching and demonstration software, not a medical device: not for diagnosis.
"""

from ich_viewer.core.dicom_io import load

__all__ = ["load", "__version__"]
__version__ = "0.1.0"
