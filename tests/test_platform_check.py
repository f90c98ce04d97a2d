"""The check before the first window: one sentence naming what to install, instead of Qt's abort."""

from __future__ import annotations

import os
import subprocess
import sys

from ich_viewer import platform_check
from ich_viewer.platform_check import missing_from_ldd, missing_xcb_libraries, packages_for, platform_problem

# What ldd printed for PySide6 6.11's libQt6XcbQpa on a minimal Debian 12 (trimmed).
LDD_MINIMAL_DEBIAN = """\
\tlinux-vdso.so.1 (0x00007f748ccba000)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-util.so.1 => /lib/x86_64-linux-gnu/libxcb-util.so.1 (0x00007f748cbda000)
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-randr.so.0 => /lib/x86_64-linux-gnu/libxcb-randr.so.0 (0x00007f748cbc1000)
\tlibxcb-icccm.so.4 => not found
\tlibxkbcommon-x11.so.0 => /lib/x86_64-linux-gnu/libxkbcommon-x11.so.0 (0x00007f748caf7000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f748ac1e000)
"""
X11 = {"DISPLAY": ":0"}


def test_ldd_output_gives_each_missing_library_once():
    assert missing_from_ldd(LDD_MINIMAL_DEBIAN) == ["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert missing_from_ldd("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n") == []


def test_sonames_map_to_debian_packages():
    assert packages_for(["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxkbcommon-x11.so.0", "libEGL.so.1"]) == \
        ["libxcb-cursor0", "libxcb-icccm4", "libxkbcommon-x11-0", "libegl1"]
    assert packages_for(["libglib-2.0.so.0", "libgthread-2.0.so.0"]) == ["libglib2.0-0"]
    assert packages_for(["libunknown.so.7"]) == ["libunknown.so.7"]  # named as it is rather than dropped


def test_the_installed_plugin_is_checked_with_ldd():
    libraries = platform_check.xcb_libraries()
    assert [p.name for p in libraries] == ["libqxcb.so", "libQt6XcbQpa.so.6"]
    seen = []
    missing = missing_xcb_libraries(ldd=lambda path: seen.append(path.name) or LDD_MINIMAL_DEBIAN)
    assert seen == ["libqxcb.so", "libQt6XcbQpa.so.6"]
    assert missing == ["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1"]


def test_without_ldd_each_known_library_is_loaded():
    missing = missing_xcb_libraries(ldd=lambda path: None, loadable=lambda name: name != "libxcb-keysyms.so.1")
    assert missing == ["libxcb-keysyms.so.1"]


def test_missing_libraries_are_one_sentence_with_the_apt_line():
    message = platform_problem(X11, "linux", missing=lambda: ["libxcb-cursor.so.0", "libxcb-keysyms.so.1"])
    assert "sudo apt-get install libxcb-cursor0 libxcb-keysyms1" in message
    assert "libxcb-cursor.so.0, libxcb-keysyms.so.1" in message
    assert message.count(". ") == 0 and message.endswith(".") and "\n" not in message


def test_no_display_says_so_and_suggests_offscreen():
    message = platform_problem({}, "linux", missing=lambda: [])
    assert "neither DISPLAY nor WAYLAND_DISPLAY is set" in message and "QT_QPA_PLATFORM=offscreen" in message
    assert "DISPLAY is not set" in platform_problem({"QT_QPA_PLATFORM": "xcb", "WAYLAND_DISPLAY": "wayland-0"},
                                                    "linux", missing=lambda: [])


def test_nothing_is_checked_where_xcb_is_not_used():
    never = lambda: ["libxcb-cursor.so.0"]  # noqa: E731 - would be reported if it were asked
    assert platform_problem(X11, "linux", missing=lambda: []) is None
    assert platform_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux", missing=never) is None
    assert platform_problem({"QT_QPA_PLATFORM": "wayland", "WAYLAND_DISPLAY": "w"}, "linux", missing=never) is None
    assert platform_problem({"WAYLAND_DISPLAY": "w", "XDG_SESSION_TYPE": "wayland", **X11}, "linux",
                            missing=never) is None
    assert platform_problem({}, "darwin", missing=never) is None
    assert platform_problem({}, "win32", missing=never) is None
    assert platform_problem({"QT_QPA_PLATFORM": "xcb", **X11}, "linux", missing=never) is not None


def test_the_viewer_without_a_display_exits_1_with_the_sentence(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    run = subprocess.run([sys.executable, "-m", "ich_viewer", "--quit-after", "1"], env={**env, "HOME": str(tmp_path)},
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [platform_problem({}, "linux")]


def test_ci_runs_the_readme_command_that_installs_the_system_packages():
    from tests.conftest import REPO

    readme = (REPO / "README.md").read_text()
    command_2 = readme.split("# 2. ", 1)[1].splitlines()[1].strip()
    assert command_2.startswith("sh packaging/system-packages.sh --xvfb && ")
    assert command_2 in (REPO / ".ci" / "run").read_text().splitlines()
