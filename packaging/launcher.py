"""The frozen executable's entry point: the same ``main`` as the ``ich-viewer`` console script."""

import sys

from ich_viewer.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
