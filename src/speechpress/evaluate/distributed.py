"""The process's place in a multi-process sweep (torchrun / accelerate launch): rank, world size, and a gloo
group used only for barriers."""

from __future__ import annotations

import os
from dataclasses import dataclass

from speechpress.errors import ConfigError


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialised: bool = False  # a torch.distributed group we can barrier on
    owned: bool = False  # we started it, so we end it

    def close(self) -> None:
        if self.owned:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.initialised = self.owned = False

    def barrier(self) -> None:
        if self.initialised:
            import torch.distributed as dist

            dist.barrier()


def dist_from_env(init: bool = True) -> Dist:
    """RANK / WORLD_SIZE / LOCAL_RANK as torchrun and accelerate set them. With ``init`` and MASTER_ADDR set,
    a gloo process group is started (used only for barriers), unless one already exists."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK {rank} is not in 0..WORLD_SIZE-1 (WORLD_SIZE {world})")
    d = Dist(rank, world, local)
    if world > 1:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            d.initialised = True
        elif init and dist.is_available() and os.environ.get("MASTER_ADDR"):
            from datetime import timedelta

            # Ranks wait for the slowest at the end of each run; shards can differ by hours on long audio.
            dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(hours=12))
            d.initialised = d.owned = True
    return d
