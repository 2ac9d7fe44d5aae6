"""Suite-wide settings: one intra-op thread per test process.

The suite runs with ``pytest -n 2`` on 2-core CI machines; tiny tensors are dominated by thread
start-up and contention (measured: ~100x slower BatchNorm calls with the default thread count), and
subprocesses (bundle CLI, torchrun) inherit ``OMP_NUM_THREADS`` from here.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch

torch.set_num_threads(1)
