#!/bin/bash
# Build the one-folder viewer, dist/ich-viewer/ with the executable dist/ich-viewer/ich-viewer, from a checkout
# (issue 16). Needs the source install (README set-up) and PyInstaller:  .venv/bin/pip install -e ".[package]"
#   bash packaging/build.sh     the bundle, its third-party notices, and on Linux ich-viewer-<version>-linux-x86_64.tar.gz
# The same steps run per OS in .github/workflows/installer.yml.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
rm -rf build/selftest build/pyinstaller dist/ich-viewer dist/ich-viewer-*.tar.gz
# the selftest's compressed samples (JPEG Lossless, JPEG 2000, JPEG-LS, RLE), written by the decoders' own encoders
$PYTHON -c "from pathlib import Path; from ich_viewer.selftest import write_compressed_samples as w; w(Path('build/selftest'))"
$PYTHON -m PyInstaller --noconfirm --clean --log-level WARN --distpath dist --workpath build/pyinstaller \
  packaging/ich-viewer.spec
# third-party notices (pip-licenses over what was collected; refuses a GPL component), desktop entry, archive
$PYTHON packaging/notices.py dist/ich-viewer build/pyinstaller/ich-viewer
cp packaging/ich-viewer.desktop packaging/install-desktop-entry.sh dist/ich-viewer/
du -sh dist/ich-viewer | sed 's/^/bundle size: /'
if [ "$(uname -s)" = Linux ]; then
  VERSION=$($PYTHON -c "import importlib.metadata as m; print(m.version('ich-viewer'))")
  ARCHIVE=dist/ich-viewer-$VERSION-linux-$(uname -m).tar.gz
  tar -C dist -czf "$ARCHIVE" ich-viewer
  du -sh "$ARCHIVE" | sed 's/^/archive size: /'
fi
