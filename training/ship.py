"""Copy a trained grounding adapter and its card into the package (`models/grounding/`).

    python training/ship.py RESULT.json models/grounding

RESULT.json is what `main.py train --json` printed.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

NAME = "quire-grounding"


def main() -> int:
    result = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    adapter = Path(result["adapter"])
    shutil.copyfile(adapter, out / f"{NAME}.gguf")
    shutil.copyfile(adapter.with_suffix(".json"), out / f"{NAME}.json")
    size = (out / f"{NAME}.gguf").stat().st_size / 1e6
    print(f"shipped {out / NAME}.gguf ({size:.1f} MB) and its card")
    return 0


if __name__ == "__main__":
    sys.exit(main())
