"""Check a clipwatch Label Studio export with Label Studio's own SDK: run by
tests/test_export.py in the .venv-labelstudio venv (label-studio-sdk, whose numpy cannot live
beside MXNet's). Prints one JSON object: the counts checked and every problem found.

    .venv-labelstudio/bin/python tests/labelstudio_check.py EXPORT_DIR
"""

import json
import sys
from pathlib import Path

from label_studio_sdk.label_interface import LabelInterface


def check(folder: Path) -> dict:
    interface = LabelInterface((folder / "label_config.xml").read_text())
    interface.validate()  # raises on a config Label Studio would refuse
    tasks = json.loads((folder / "tasks.json").read_text())
    problems, regions = [], 0
    for n, task in enumerate(tasks):
        if not interface.validate_task({"data": task["data"]}):
            problems.append(f"task {n}: data does not fit the config")
        for kind, items in (("prediction", task.get("predictions", [])), ("annotation", task.get("annotations", []))):
            for item in items:
                for region in item["result"]:
                    regions += 1
                    try:
                        ok = interface.validate_region(region)
                    except Exception as exc:  # noqa: BLE001 -- the SDK raises on unknown names
                        ok, region = False, {**region, "error": str(exc)}
                    if not ok:
                        problems.append(f"task {n} {kind}: region {json.dumps(region)} is invalid")
                valid = (interface.validate_prediction(item) if kind == "prediction"
                         else interface.validate_annotation(item))
                if not valid:
                    problems.append(f"task {n}: {kind} is invalid")
    return {"tasks": len(tasks), "regions": regions, "problems": problems}


if __name__ == "__main__":
    print(json.dumps(check(Path(sys.argv[1]))))
