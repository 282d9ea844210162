"""The peer of `benches/prune_peer.sh`: pruning picks the way PickerOptimizer's public code does it.

Every pick is cut from its micrograph and written to its own MRC file with mrcfile; then each
particle file is read back, resized to 224 x 224, repeated into three channels, normalised with
the ImageNet statistics and classified by a torchvision ResNet-18 in PyTorch, one particle at a
time (batch 1); the kept picks are written back as one .box file per micrograph.

Usage: prune_peer.py OUT_DIR BOX MICROGRAPH_DIR PICKS.box...
Prints one JSON line: {"particles", "seconds", "particles_per_second", "kept", "threads", "torch"}.
The network has random weights: the time does not depend on them, and there are no ImageNet
weights on the machine this was written on.
"""

import json
import os
import sys
import time

import mrcfile
import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image


def main():
    start = time.perf_counter()
    out, box, mic_dir, pick_files = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    torch.set_num_threads(os.cpu_count())
    particles_dir = os.path.join(out, "particles")
    os.makedirs(particles_dir, exist_ok=True)
    half = box // 2

    # Step 1: one MRC file per particle.
    written, columns = [], {}
    for pick_file in pick_files:
        stem = os.path.splitext(os.path.basename(pick_file))[0]
        micrograph = np.asarray(Image.open(os.path.join(mic_dir, stem + ".jpg")), dtype=np.float32)
        rows = np.loadtxt(pick_file, ndmin=2)
        columns[stem] = rows.shape[1]
        for i, (x, y) in enumerate(rows[:, :2]):
            cx, cy = int(round(x + rows[i, 2] / 2)), int(round(y + rows[i, 3] / 2))
            if cy - half < 0 or cx - half < 0 or cy + half > micrograph.shape[0] or cx + half > micrograph.shape[1]:
                continue
            path = os.path.join(particles_dir, f"{stem}_{i:05d}.mrc")
            with mrcfile.new(path, overwrite=True) as m:
                m.set_data(micrograph[cy - half : cy + half, cx - half : cx + half].copy())
            written.append((stem, i, rows[i]))

    # Step 2: classify each particle file on its own.
    model = torchvision.models.resnet18(num_classes=2).eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    kept = {}
    with torch.inference_mode():
        for stem, i, row in written:
            with mrcfile.open(os.path.join(particles_dir, f"{stem}_{i:05d}.mrc"), permissive=True) as m:
                img = torch.from_numpy(m.data.astype(np.float32))
            img = (img - img.min()) / max(float(img.max() - img.min()), 1e-6)
            x = F.interpolate(img[None, None], size=(224, 224), mode="bilinear", align_corners=False)
            x = (x.repeat(1, 3, 1, 1) - mean) / std
            p = torch.softmax(model(x), 1)[0, 1].item()
            if p >= 0.5:
                kept.setdefault(stem, []).append(row)

    # Step 3: the pruned picks, one .box per micrograph.
    pruned_dir = os.path.join(out, "pruned")
    os.makedirs(pruned_dir, exist_ok=True)
    for pick_file in pick_files:
        stem = os.path.splitext(os.path.basename(pick_file))[0]
        np.savetxt(os.path.join(pruned_dir, stem + ".box"), np.array(kept.get(stem, [])).reshape(-1, columns[stem]), fmt="%g", delimiter="\t")

    seconds = time.perf_counter() - start
    print(json.dumps({
        "particles": len(written),
        "seconds": seconds,
        "particles_per_second": len(written) / seconds,
        "kept": sum(len(v) for v in kept.values()),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
