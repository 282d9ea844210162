"""Scores a `prune --scores` CSV against labels (micrograph,x,y,label): prints
macro-F1,particles kept,junk removed. Micrographs named in the third argument (comma-separated)
are left out; a fourth argument is printed first, as a CSV prefix."""
import csv
import sys

labels, scores = sys.argv[1], sys.argv[2]
skip = set(sys.argv[3].split(",")) if len(sys.argv) > 3 else set()
prefix = sys.argv[4] + "," if len(sys.argv) > 4 else ""
key = lambda r: (r["micrograph"], round(float(r["x"])), round(float(r["y"])))
truth = {key(r): r["label"] == "particle" for r in csv.DictReader(open(labels))}
tp = fp = fn = tn = 0
for r in csv.DictReader(open(scores)):
    y = truth.get(key(r))
    if y is None or r["micrograph"] in skip:
        continue
    k = r["kept"] == "1"
    tp += k and y
    fp += k and not y
    fn += (not k) and y
    tn += (not k) and not y
f1 = (2 * tp / max(1, 2 * tp + fp + fn) + 2 * tn / max(1, 2 * tn + fn + fp)) / 2
print(f"{prefix}{f1:.3f},{tp / max(1, tp + fn):.3f},{tn / max(1, tn + fp):.3f}")
