"""The peer for the extraction benchmark: a straightforward NumPy + mrcfile particle extraction,
as a cryo-EM user would write it. Same job as `cryoprune extract --box B --size S`: window each
pick, Fourier-crop to S, normalise to the background outside 75% of the half box, write one MRCS.

Usage: python3 extract_numpy.py PICKS.csv BOX SIZE OUT.mrcs MICROGRAPH...
PICKS.csv has columns micrograph,x,y (micrograph = file name without extension).
"""
import csv
import os
import sys
from collections import defaultdict

import mrcfile
import numpy as np


def main():
    picks_csv, box, size, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    mics = sys.argv[5:]
    picks = defaultdict(list)
    with open(picks_csv) as f:
        for row in csv.DictReader(f):
            picks[row["micrograph"]].append((float(row["x"]), float(row["y"])))
    c, h = box // 2, size // 2
    yy, xx = np.mgrid[0:size, 0:size]
    background = (xx - h) ** 2 + (yy - h) ** 2 > (0.375 * size) ** 2
    particles = []
    for path in mics:
        with mrcfile.open(path) as m:
            mic = m.data.astype(np.float32)
        name = os.path.splitext(os.path.basename(path))[0]
        for x, y in picks[name]:
            cx, cy = int(round(x)), int(round(y))
            win = mic[cy - c: cy - c + box, cx - c: cx - c + box]
            if win.shape != (box, box):
                continue
            f = np.fft.fftshift(np.fft.fft2(win))
            f = f[c - h: c - h + size, c - h: c - h + size]
            p = np.real(np.fft.ifft2(np.fft.ifftshift(f))) * (size * size) / (box * box)
            bg = p[background]
            particles.append(((p - bg.mean()) / bg.std()).astype(np.float32))
    with mrcfile.new(out, overwrite=True) as o:
        o.set_data(np.stack(particles))
    print(len(particles))


if __name__ == "__main__":
    main()
