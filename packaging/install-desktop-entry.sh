#!/bin/sh
# Add ICH Viewer to this user's application menu (no root needed): run once from the unpacked folder.
# Remove it again: rm ~/.local/share/applications/ich-viewer.desktop ~/.local/share/icons/hicolor/256x256/apps/ich-viewer.png
set -eu
here=$(cd "$(dirname "$0")" && pwd)
apps=${XDG_DATA_HOME:-$HOME/.local/share}/applications
icons=${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor/256x256/apps
mkdir -p "$apps" "$icons"
cp "$here/_internal/resources/icons/ich-viewer.png" "$icons/ich-viewer.png"
sed "s|^Exec=ich-viewer|Exec=\"$here/ich-viewer\"|" "$here/ich-viewer.desktop" > "$apps/ich-viewer.desktop"
echo "ICH Viewer added to the application menu ($apps/ich-viewer.desktop)"
