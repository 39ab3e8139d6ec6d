#!/usr/bin/env python3
# bench/merge_calibration.py OUT IN...: merges calibration files (speedrun.calibration/1) into OUT
# (created when missing): every entry of every IN, by card, scale and name, later files winning.
# For the GPU session's parallel tuning, where each recipe's search writes a file of its own.
import json, os, sys

out = sys.argv[1]
merged = {"schema": "speedrun.calibration/1", "entries": {}}
for path in ([out] if os.path.exists(out) else []) + sys.argv[2:]:
    try:
        with open(path) as f:
            cal = json.load(f)
    except (OSError, ValueError) as e:
        sys.stderr.write("merge_calibration.py: skipped %s: %s\n" % (path, e))
        continue
    for card, scales in cal.get("entries", {}).items():
        for scale, names in scales.items():
            merged["entries"].setdefault(card, {}).setdefault(scale, {}).update(names)
with open(out + ".tmp", "w") as f:
    json.dump(merged, f, indent=2)
os.replace(out + ".tmp", out)
print("merged %d file(s) into %s" % (len(sys.argv) - 2, out))
