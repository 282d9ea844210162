"""Micrographs from another simulator than cryoprune's own: ASPIRE's MicrographSimulation
projects RELION's tests/ref_model.mrc (a structure pretraining never sees; 50 px across at
3.54 A/px) through ASPIRE's radial CTF (300 kV, 8,000-25,000 A underfocus) at random views, with
white noise at SNR (signal variance over the particles' own discs, as a particle's SNR is
usually stated). ASPIRE has no junk, so it is added here, in NumPy and unlike cryoprune's
simulator: a darker, textured carbon half-plane with a straight edge on 6 micrographs in 10,
2-5 dark soft-edged ice blobs per micrograph, and picks of empty ice (a diameter from every
particle). Picks: every particle not on the carbon (jittered by 2 px) and the junk; labels.csv
says particle or junk.

    python aspire_sim.py OUT_DIR SNR SEED      # needs `pip install aspire` (0.14.3 measured)
"""
import sys
import os

import numpy as np
import mrcfile
from aspire.operators import RadialCTFFilter
from aspire.source import MicrographSimulation
from aspire.volume import Volume

out, snr, seed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
count, size, per, diameter = 10, 1024, 45, 50
rng = np.random.default_rng(seed)
here = os.path.dirname(os.path.abspath(__file__))
vol = Volume.load(os.path.join(here, "../../../../shared/data/sources/relion/tests/ref_model.mrc"), dtype=np.float32)
vol = Volume(vol.asnumpy(), pixel_size=3.54)
ctfs = [RadialCTFFilter(defocus=d, voltage=300, Cs=2.7, alpha=0.1) for d in rng.uniform(8000, 25000, count)]
sim = MicrographSimulation(vol, micrograph_size=size, micrograph_count=count, particles_per_micrograph=per,
                           ctf_filters=ctfs, seed=seed, interparticle_distance=70)
clean = sim.clean_images[:].asnumpy()
yy, xx = np.mgrid[0:size, 0:size]
on_particles = []
for m in range(count):
    disc = np.zeros((size, size), bool)
    for r, c in sim.centers[m]:
        disc |= np.hypot(yy - r, xx - c) < diameter / 2
    on_particles.append(clean[m][disc])
noise_sd = np.sqrt(np.concatenate(on_particles).var() / snr)

os.makedirs(f"{out}/micrographs", exist_ok=True)
rows = []
for m in range(count):
    img = clean[m].astype(np.float64)
    centres = sim.centers[m]  # (row, column)
    junk = []
    carbon = np.zeros((size, size), bool)
    if rng.random() < 0.6:
        angle = rng.uniform(0, np.pi)
        offset = rng.uniform(0.25, 0.45) * size
        nx, ny = np.cos(angle), np.sin(angle)
        dist = (xx - size / 2) * nx + (yy - size / 2) * ny - offset * rng.choice([-1, 1])
        carbon = dist > 0
        texture = rng.normal(0, 1, (size // 8, size // 8)).repeat(8, 0).repeat(8, 1)
        img -= carbon * (0.8 * noise_sd + 0.3 * noise_sd * texture)
        # Picks near the edge: a point along a line parallel to it, moved onto it.
        for _ in range(rng.integers(4, 9)):
            t = rng.uniform(-size / 2, size / 2)
            px = size / 2 + nx * offset - ny * t
            py = size / 2 + ny * offset + nx * t
            off_edge = dist[int(np.clip(py, 0, size - 1)), int(np.clip(px, 0, size - 1))]
            px -= off_edge * nx
            py -= off_edge * ny
            if diameter < px < size - diameter and diameter < py < size - diameter:
                junk.append((px + rng.normal(0, 5), py + rng.normal(0, 5), "carbon"))
    for _ in range(rng.integers(2, 6)):
        cx, cy = rng.uniform(diameter, size - diameter, 2)
        radius = rng.uniform(0.3, 0.75) * diameter
        blob = 1 / (1 + np.exp((np.hypot(xx - cx, yy - cy) - radius) / 2.5))
        img -= blob * rng.uniform(2, 5) * noise_sd
        junk.append((cx + rng.normal(0, 4), cy + rng.normal(0, 4), "ice"))
    img += rng.normal(0, noise_sd, img.shape)
    for r, c in centres:
        inside = diameter / 2 < c < size - diameter / 2 and diameter / 2 < r < size - diameter / 2
        if inside and not carbon[int(r), int(c)]:
            rows.append((m, c + rng.normal(0, 2), r + rng.normal(0, 2), "particle"))
    empties, tries = 0, 0
    while empties < 10 and tries < 2000:
        tries += 1
        x, y = rng.uniform(diameter, size - diameter, 2)
        if carbon[int(y), int(x)]:
            continue
        if len(centres) and np.min(np.hypot(centres[:, 1] - x, centres[:, 0] - y)) < diameter:
            continue
        rows.append((m, x, y, "empty"))
        empties += 1
    rows.extend((m, x, y, kind) for x, y, kind in junk)
    with mrcfile.new(f"{out}/micrographs/asp_{m + 1:04d}.mrc", overwrite=True) as f:
        f.set_data(img.astype(np.float32))
        f.voxel_size = 3.54
with open(f"{out}/labels.csv", "w") as f:
    f.write("micrograph,x,y,label\n")
    for m, x, y, kind in rows:
        f.write(f"asp_{m + 1:04d},{x:.2f},{y:.2f},{'particle' if kind == 'particle' else 'junk'}\n")
kinds = {}
for row in rows:
    kinds[row[3]] = kinds.get(row[3], 0) + 1
print(out, "SNR", snr, kinds)
