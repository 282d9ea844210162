"""The PyTorch side of `cargo bench -p cryoprune-model --bench train_step`.

Usage: train_step_torch.py CASES_JSON WARMUP TIMED. CASES_JSON is a list of
{"arch", "channels", "size", "batch"}; prints {"torch", "threads", "results": [{"seconds"}]} on
stdout. The networks are forward_torch.py's. One step: train mode, cross-entropy, backward, SGD
(lr 0.01, momentum 0.9, weight decay 1e-4); every core; median of TIMED steps.
"""

import torch

from forward_torch import build, run


def step(case):
    model = build(case["arch"], case["channels"]).train()
    optim = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(case["batch"], case["channels"], case["size"], case["size"])
    y = torch.arange(case["batch"]) % 2

    def once():
        optim.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optim.step()
        loss.item()

    return once


if __name__ == "__main__":
    run(step, lambda case, seconds: {"seconds": seconds})
