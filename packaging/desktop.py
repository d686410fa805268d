"""`quire-desktop install|uninstall` in the app folder: ui.desktop's menu entry and icon.

Frozen, the entry starts the `quire` executable beside this one (ui.desktop finds it next
to sys.executable), wherever the folder was unpacked.
"""

import sys

from ui.desktop import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
