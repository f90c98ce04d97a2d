"""One resolver for bundled resources, from the source tree or a PyInstaller bundle."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def resources_dir() -> Path:
    """``resources/`` beside the package in a checkout, or inside the frozen bundle."""
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "resources"
    return Path(__file__).resolve().parents[1] / "resources"


def models_dir() -> Path:
    return resources_dir() / "models"


def user_cache_dir() -> Path:
    """This user's cache folder for ICH Viewer (what can be written again: the demo study).

    Linux ``$XDG_CACHE_HOME/ich-viewer`` (``~/.cache/ich-viewer``), macOS ``~/Library/Caches/ICH Viewer``,
    Windows ``%LOCALAPPDATA%\\ICH Viewer\\cache``: each platform's usual place for a cache, without Qt."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "ICH Viewer" / "cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "ICH Viewer"
    base = os.environ.get("XDG_CACHE_HOME") or ""
    return (Path(base) if Path(base).is_absolute() else Path.home() / ".cache") / "ich-viewer"


def user_config_dir() -> Path:
    """This user's settings folder for ICH Viewer (site threshold presets), as Qt's AppConfigLocation, without Qt.

    Linux ``$XDG_CONFIG_HOME/ich-viewer`` (``~/.config/ich-viewer``), macOS ``~/Library/Preferences/ICH Viewer``,
    Windows ``%LOCALAPPDATA%\\ICH Viewer``."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "ICH Viewer"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Preferences" / "ICH Viewer"
    base = os.environ.get("XDG_CONFIG_HOME") or ""
    return (Path(base) if Path(base).is_absolute() else Path.home() / ".config") / "ich-viewer"
