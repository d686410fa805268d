"""The frozen app's first script, run just before main.py in the same process.

What `python main.py` gets from its interpreter, and the frozen app must do itself:

- multiprocessing's spawn workers (ingest reads PDFs in them) and its resource tracker
  start this same executable with their own arguments; freeze_support() runs them and
  exits. PyInstaller's runtime hook makes freeze_support do that, and runtime hooks run
  before the scripts, so it is called here rather than in a hook of ours. A worker
  re-runs the parent's main script unless its own is the same file, so this script
  answers to main.py's name while it does.
- The window starts `train`, `train-reader` and `serve` as `sys.executable main.py ...`
  (ui's main_script()); frozen, sys.executable is Quire itself, whose script is main.py,
  so that path is dropped from the arguments.
"""

import importlib.util
import multiprocessing
import os
import sys

__file__ = os.path.join(os.path.dirname(__file__), "main.py")
multiprocessing.freeze_support()

_main = importlib.util.find_spec("main")  # in the bundle as a module too (quire.spec)
if _main is not None and sys.argv[1:2] == [_main.origin]:
    del sys.argv[1]
