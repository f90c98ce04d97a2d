"""Before the first window: can Qt's platform plugin start here? If not, one sentence that says why.

Qt's xcb plugin (X11 on Linux) aborts the process (signal 6) when a system library it links is missing,
and names only the first one it tried. A minimal Debian or Ubuntu lacks several (``libxcb-cursor0``,
``libxcb-icccm4``, ``libxcb-keysyms1``...). This module finds all of them at once, with ``ldd`` on the
plugin and on ``libQt6XcbQpa`` (or, without ``ldd``, by loading each known library), and names the
packages to install. It also says so when there is no display at all.

No Qt here: this runs before anything loads a Qt library, and its tests need no display.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Mapping

#: soname -> Debian/Ubuntu package, for the system libraries Qt's xcb platform plugin links.
DEBIAN_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
}

_NOT_LINKED_BY_QT6 = {"libxcb-xinerama.so.0", "libOpenGL.so.0"}
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found\s*$", re.MULTILINE)


def missing_from_ldd(output: str) -> list[str]:
    """The sonames ``ldd`` reports as "not found", each once, in the order given."""
    return list(dict.fromkeys(_NOT_FOUND.findall(output)))


def packages_for(sonames: list[str]) -> list[str]:
    """Debian/Ubuntu packages for ``sonames``, each once; a soname with no known package stands for itself."""
    return list(dict.fromkeys(DEBIAN_PACKAGES.get(name, name) for name in sonames))


def xcb_libraries() -> list[Path]:
    """Qt's xcb platform plugin and the ``libQt6XcbQpa`` it links, from the installed PySide6 or a frozen bundle."""
    roots = []
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        roots.append(Path(frozen) / "PySide6" / "Qt")
    spec = importlib.util.find_spec("PySide6")  # finds the package without importing it (no Qt loaded)
    if spec is not None and spec.submodule_search_locations:
        roots.extend(Path(p) / "Qt" for p in spec.submodule_search_locations)
    for qt in roots:
        plugin = qt / "plugins" / "platforms" / "libqxcb.so"
        if plugin.is_file():
            return [plugin, *sorted((qt / "lib").glob("libQt6XcbQpa.so*"))[:1]]
    return []


def _ldd(path: Path) -> str | None:
    ldd = shutil.which("ldd")
    if ldd is None:
        return None
    try:
        return subprocess.run([ldd, str(path)], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def _loadable(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def missing_xcb_libraries(ldd: Callable[[Path], str | None] = _ldd,
                          loadable: Callable[[str], bool] = _loadable) -> list[str]:
    """Sonames the xcb plugin needs that this system lacks (empty when all are there or it cannot tell)."""
    libraries = xcb_libraries()
    if not libraries:
        return []
    outputs = [ldd(path) for path in libraries]
    if all(out is not None for out in outputs):
        return missing_from_ldd("\n".join(outputs))
    # No ldd: try each library Qt 6's xcb plugin links (xinerama and libOpenGL were Qt 5's).
    return [name for name in DEBIAN_PACKAGES if name not in _NOT_LINKED_BY_QT6 and not loadable(name)]


def will_use_xcb(env: Mapping[str, str], platform: str) -> bool:
    """Whether Qt will start its xcb plugin: Linux, and QT_QPA_PLATFORM unset or xcb (Qt 6 picks wayland
    by itself only inside a Wayland session)."""
    if not platform.startswith("linux"):
        return False
    chosen = env.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip()
    if chosen:
        return chosen == "xcb"
    return not (env.get("WAYLAND_DISPLAY") and env.get("XDG_SESSION_TYPE") == "wayland")


def platform_problem(env: Mapping[str, str] | None = None, platform: str | None = None,
                     missing: Callable[[], list[str]] = missing_xcb_libraries) -> str | None:
    """One sentence saying why the window cannot open here, or None when nothing is known to stop it."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if not will_use_xcb(env, platform):
        return None
    if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        return ("ich-viewer: there is no display to open the window on (neither DISPLAY nor WAYLAND_DISPLAY is "
                "set): run it from a desktop session, or set QT_QPA_PLATFORM=offscreen for headless use.")
    if not env.get("DISPLAY"):
        if env.get("QT_QPA_PLATFORM", "").startswith("xcb"):
            return ("ich-viewer: QT_QPA_PLATFORM asks for X11 (xcb) but DISPLAY is not set: unset "
                    "QT_QPA_PLATFORM to use Wayland, or set DISPLAY.")
        return None  # WAYLAND_DISPLAY alone: Qt tries its wayland plugin
    absent = missing()
    if not absent:
        return None
    return (f"ich-viewer: Qt's X11 (xcb) platform plugin needs system libraries that are missing "
            f"({', '.join(absent)}): install them with 'sudo apt-get install {' '.join(packages_for(absent))}' "
            "on Debian or Ubuntu (the README lists the packages for other systems).")
