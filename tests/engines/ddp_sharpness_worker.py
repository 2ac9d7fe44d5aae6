"""torchrun worker for test_sharpness_ddp.py: two gloo ranks train through a real SupervisedTrainer.

Usage: ``torchrun --nproc_per_node=2 ddp_sharpness_worker.py OUT_DIR``. Rank r trains on chunk r of every
global batch; rank 0 saves the final weights of each configuration to ``OUT_DIR/<config>.pt``.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from monai.engines import SupervisedTrainer
from torch.nn.parallel import DistributedDataParallel

from monai_sam.engines import SharpnessAwareIteration, SharpnessEvents
from monai_sam.optimizers import create_optimizer

CONFIGS = {"sam_local": ("sam", False), "crsam_local": ("crsam", False), "gsam_synced": ("gsam", True)}


def global_batches():
    gen = torch.Generator().manual_seed(0)
    return [
        (torch.randn(8, 3, generator=gen, dtype=torch.float64), torch.randint(0, 2, (8,), generator=gen))
        for _ in range(2)
    ]


def net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).double()


def main(out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    chunks = [(x.chunk(world)[rank], y.chunk(world)[rank]) for x, y in global_batches()]
    for config, (name, synced) in CONFIGS.items():
        model = DistributedDataParallel(net())
        opt = create_optimizer(name, model.parameters(), base="sgd", lr=0.5, rho=0.3)
        SupervisedTrainer(
            device="cpu",
            max_epochs=1,
            train_data_loader=chunks,
            network=model,
            optimizer=opt,
            loss_function=torch.nn.CrossEntropyLoss(),
            iteration_update=SharpnessAwareIteration(sync_perturbation=synced),
            event_names=[SharpnessEvents],
        ).run()
        weights = [p.detach().clone() for p in model.module.parameters()]
        gathered = [None] * world
        dist.all_gather_object(gathered, weights)
        if rank == 0:
            same = all(torch.equal(a, b) for other in gathered for a, b in zip(weights, other))
            torch.save({"weights": weights, "ranks_agree": same}, f"{out_dir}/{config}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
