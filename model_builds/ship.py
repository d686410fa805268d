"""Copy a trained grounding adapter and its card into the package (`models/grounding/`).

    python model_builds/ship.py [STAGE.json ...] RESULT.json models/grounding

Each JSON file is what `main.py train --json` printed. The last one is the adapter that
ships; earlier ones are the stages it was trained on from (`train --from`), recorded in
the card under `stages`, with the time of all of them in `total_seconds`.

The card's "app" section (the scale and refusal thresholds the app uses the adapter with,
engine/answer/grounding.py) is carried over from the card it replaces: they were chosen
for that adapter, so run gate_scan.py on the new one and write its numbers there.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

NAME = "quire-grounding"


def card_of(result_file: Path) -> dict:
    result = json.loads(result_file.read_text())
    return json.loads(Path(result["adapter"]).with_suffix(".json").read_text())


def main() -> int:
    *stages, last, out_dir = sys.argv[1:]
    result = json.loads(Path(last).read_text())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    adapter = Path(result["adapter"])
    card = card_of(Path(last))
    if stages:
        earlier = [card_of(Path(stage)) for stage in stages]
        for stage in earlier:
            stage.pop("samples", None)  # the shipped adapter's own samples are enough
        card["stages"] = [*earlier, {k: v for k, v in card.items() if k != "samples"}]
        card["total_seconds"] = sum(stage["seconds"] for stage in card["stages"])
    old = out / f"{NAME}.json"
    if "app" not in card and old.is_file():
        card = {"name": card.get("name"), "app": json.loads(old.read_text())["app"], **card}
    shutil.copyfile(adapter, out / f"{NAME}.gguf")
    (out / f"{NAME}.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    size = (out / f"{NAME}.gguf").stat().st_size / 1e6
    print(f"shipped {out / NAME}.gguf ({size:.1f} MB) and its card")
    return 0


if __name__ == "__main__":
    sys.exit(main())
