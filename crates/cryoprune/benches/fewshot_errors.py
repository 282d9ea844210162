"""What a classifier's mistakes on EMPIAR-10017 are, against labels/topaz.csv.

Usage (after `cryoprune evaluate ... --predictions pred.csv`):
    python3 crates/cryoprune/benches/fewshot_errors.py pred.csv [gallery.png]

Prints, for false positives, false negatives and true junk, how far each pick lies from the
nearest ground-truth centre (the label is `particle` within 54 px) and how many lie near the
micrograph edge; with Pillow installed, writes a gallery: the 16 most confident true particles,
false positives and false negatives, one row each, boxes of 180 px.
"""
import collections
import csv
import sys

DATA = "../shared/data/empiar-10017/"
EDGE, SIZE = 150, 4096
BANDS = ((0, 54), (54, 80), (80, 120), (120, 200), (200, float("inf")))


def key(micrograph, x, y):
    return micrograph.rsplit(".", 1)[0], round(float(x)), round(float(y))


def band(d):
    lo, hi = next(b for b in BANDS if b[0] <= d < b[1])
    return f"{lo}-{hi:g}" if hi != float("inf") else f">{lo}"


def main(pred_path, gallery=None):
    truth = {key(r["micrograph"], r["x"], r["y"]): r for r in csv.DictReader(open(DATA + "labels/topaz.csv"))}
    preds = list(csv.DictReader(open(pred_path)))
    groups = {
        "true particles": lambda p: p["label"] == p["predicted"] == "particle",
        "false positives (junk called particle)": lambda p: p["label"] == "junk" and p["predicted"] == "particle",
        "false negatives (particle called junk)": lambda p: p["label"] == "particle" and p["predicted"] == "junk",
        "true junk": lambda p: p["label"] == p["predicted"] == "junk",
    }
    rows = {}
    for name, keep in groups.items():
        sel = [p for p in preds if keep(p)]
        rows[name] = sel
        dist = [float(truth[key(p["micrograph"], p["x"], p["y"])]["distance_to_truth"]) for p in sel]
        bands = collections.Counter(band(d) for d in dist)
        edge = sum(min(float(p["x"]), float(p["y"]), SIZE - float(p["x"]), SIZE - float(p["y"])) < EDGE for p in sel)
        shown = {band(lo): bands.get(band(lo), 0) for lo, _ in BANDS}
        print(f"{name}: {len(sel)}; px from nearest truth centre {shown}; within {EDGE} px of the edge {edge}")
    if gallery:
        from PIL import Image

        mics = {}

        def box(p):
            m = p["micrograph"]
            if m not in mics:
                mics[m] = Image.open(f"{DATA}micrographs/{m}.jpg").convert("L")
            x, y = float(p["x"]), float(p["y"])
            return mics[m].crop((int(x - 90), int(y - 90), int(x + 90), int(y + 90))).resize((120, 120))

        confident = lambda sel: sorted(sel, key=lambda p: -float(p["p_" + p["predicted"]]))[:16]
        picked = [confident(rows[n]) for n in list(groups)[:3]]
        out = Image.new("L", (16 * 122, 3 * 122), 255)
        for r, sel in enumerate(picked):
            for i, p in enumerate(sel):
                out.paste(box(p), (i * 122, r * 122))
        out.save(gallery)


if __name__ == "__main__":
    main(*sys.argv[1:3])
