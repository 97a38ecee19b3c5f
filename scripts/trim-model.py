#!/usr/bin/env python3
"""Trim an AWS JSON service model to what request validation needs.

Usage: trim-model.py IN.json OUT.json
Keeps metadata, operations (input/output shape names and error names) and
shapes with their constraints; drops documentation, examples and URLs.
"""
import json
import sys

KEEP_SHAPE = {"type", "members", "required", "min", "max", "pattern", "enum",
              "member", "key", "value", "exception", "fault", "sensitive"}

def main():
    src, dst = sys.argv[1], sys.argv[2]
    m = json.load(open(src))
    out = {"metadata": m["metadata"], "operations": {}, "shapes": {}}
    for name, op in m["operations"].items():
        o = {}
        if "input" in op:
            o["input"] = op["input"]["shape"]
        if "output" in op:
            o["output"] = op["output"]["shape"]
        o["errors"] = [e["shape"] for e in op.get("errors", [])]
        out["operations"][name] = o
    for name, s in m["shapes"].items():
        t = {k: v for k, v in s.items() if k in KEEP_SHAPE}
        if "members" in t:
            t["members"] = {k: {"shape": v["shape"]} for k, v in t["members"].items()}
        for k in ("member", "key", "value"):
            if k in t:
                t[k] = {"shape": t[k]["shape"]}
        out["shapes"][name] = t
    json.dump(out, open(dst, "w"), separators=(",", ":"), sort_keys=True)

main()
