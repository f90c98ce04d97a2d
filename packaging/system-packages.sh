#!/bin/sh
# The system libraries Qt's X11 (xcb) platform plugin links, which a minimal Linux lacks (without them
# the window cannot open); with --xvfb also the virtual X server the test suite opens one real window on.
# Installs only what is missing: nothing at all when everything is there, on macOS or on Windows.
# As root it installs directly, otherwise through sudo; with neither it prints the command and fails.
set -eu

[ "$(uname -s)" = Linux ] || exit 0
XVFB=no
[ "${1:-}" = --xvfb ] && XVFB=yes

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else echo "system-packages: run as root: $*" >&2; exit 1
    fi
}

if command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then  # Debian, Ubuntu
    wanted="libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxkbcommon-x11-0
            libxcb-xinerama0 libxcb-randr0 libxcb-shape0 libxcb-xkb1 libegl1 libgl1 libfontconfig1 libdbus-1-3"
    [ "$XVFB" = yes ] && wanted="$wanted xvfb"
    missing=""
    for package in $wanted; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing="$missing $package"
    done
    [ -n "$missing" ] || exit 0
    echo "system-packages: installing$missing" >&2
    # A fresh machine may have no package lists yet: read them once, only when the first try fails.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null 2>&1 || {
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null
    }
elif command -v rpm >/dev/null 2>&1 && command -v dnf >/dev/null 2>&1; then  # Fedora, RHEL
    wanted="xcb-util-cursor xcb-util-wm xcb-util-keysyms xcb-util-image xcb-util-renderutil libxkbcommon-x11
            libglvnd-egl libglvnd-glx fontconfig dbus-libs"
    [ "$XVFB" = yes ] && wanted="$wanted xorg-x11-server-Xvfb"
    missing=""
    for package in $wanted; do
        rpm -q "$package" >/dev/null 2>&1 || missing="$missing $package"
    done
    [ -n "$missing" ] || exit 0
    echo "system-packages: installing$missing" >&2
    as_root dnf install -y -q $missing
else
    echo "system-packages: not a Debian/Ubuntu or Fedora system: install the X11 libraries the README lists yourself" >&2
fi
