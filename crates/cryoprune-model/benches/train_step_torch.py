"""The PyTorch side of `cargo bench -p cryoprune-model --bench train_step`.

Usage: train_step_torch.py CASES_JSON WARMUP TIMED. CASES_JSON is a list of
{"arch", "channels", "size", "batch"}; prints {"torch", "threads", "results": [{"seconds"}]} on
stdout. The networks are forward_torch.py's. One step: train mode, cross-entropy, backward, SGD
(lr 0.01, momentum 0.9, weight decay 1e-4); every core; median of TIMED steps.
"""

import json
import os
import sys
import time

import torch

from forward_torch import build


def main():
    cases, warmup, timed = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    results = []
    for case in cases:
        model = build(case["arch"], case["channels"]).train()
        optim = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        x = torch.randn(case["batch"], case["channels"], case["size"], case["size"])
        y = torch.arange(case["batch"]) % 2
        times = []
        for i in range(warmup + timed):
            start = time.perf_counter()
            optim.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optim.step()
            loss.item()
            if i >= warmup:
                times.append(time.perf_counter() - start)
        times.sort()
        results.append({"seconds": times[len(times) // 2]})
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "results": results}))


if __name__ == "__main__":
    main()
