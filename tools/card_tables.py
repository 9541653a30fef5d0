#!/usr/bin/env python3
"""Markdown tables for a model card from `ferc eval --json` outputs (stdlib only).

    python3 tools/card_tables.py none.json flip.json tencrop.json [--default flip]

Prints the accuracy table (one row per file, the --default TTA in bold), the per-class table
of the default TTA (recall of the first file in brackets) and its confusion matrix (counts).
"""
import json
import sys


def main(argv):
    files, default = [], "flip"
    i = 0
    while i < len(argv):
        if argv[i] == "--default":
            default = argv[i + 1]
            i += 2
            continue
        files.append(argv[i])
        i += 1
    runs = [json.load(open(f)) for f in files]
    print("| prediction | accuracy | balanced accuracy | macro F1 | top-2 | accuracy_unique | balanced, unique |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        b = "**" if r["tta"] == default else ""
        au = r.get("accuracy_unique")
        bu = r.get("balanced_accuracy_unique")
        print(f"| `--tta {r['tta']}` | {b}{100 * r['accuracy']:.2f}%{b} | {b}{100 * r['balanced_accuracy']:.2f}%{b} | "
              f"{100 * r['macro_f1']:.2f}% | {100 * r['top2_accuracy']:.2f}% | "
              f"{'' if au is None else f'{100 * au:.2f}%'} | {'' if bu is None else f'{100 * bu:.2f}%'} |")
    d = next(r for r in runs if r["tta"] == default)
    if "duplicates_in_train" in d:
        print(f"\n{d['duplicates_in_train']} of the {d['n']} validation images have a byte-identical copy among the "
              f"training rows; the unique figures leave them out ({d['n_unique']} images).")
    base = runs[0]
    print(f"\n| class | precision | recall ({base['tta']}) | F1 | support |")
    print("|---|---:|---:|---:|---:|")
    for c, c0 in zip(d["per_class"], base["per_class"]):
        print(f"| {c['class']} | {c['precision']:.3f} | {c['recall']:.3f} ({c0['recall']:.3f}) | {c['f1']:.3f} | {c['support']} |")
    names = [c["class"] for c in d["per_class"]]
    print("\n|  | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for n, row in zip(names, d["confusion"]):
        print(f"| {n} | " + " | ".join(str(int(v)) for v in row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
