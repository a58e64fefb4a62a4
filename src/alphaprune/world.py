"""Who this process is among a run's (`World`), from torchrun's variables, else srun's, else a
world of one (`environment`). Plain data, no torch: every pipeline command asks it before it
writes, and the collectives that move tensors between the processes are `alphaprune.distributed`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

SRUN_MARK = "ALPHAPRUNE_SRUN"  # set by the launcher for the tasks it starts with srun


@dataclass(frozen=True)
class World:
    """This process among the run's: `rank` of `size`, `local_rank` on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The one process that writes outputs, checkpoints and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def rows(self, n: int, rank: int | None = None) -> slice:
        """This process's (or `rank`'s) contiguous share of `n` items: `n // size` each, the
        first `n % size` processes one more (`torch.tensor_split`'s shares)."""
        r = self.rank if rank is None else rank
        base, extra = divmod(n, self.size)
        start = r * base + min(r, extra)
        return slice(start, start + base + (r < extra))


def environment() -> World:
    """This process's place from torchrun's variables, else srun's, else a world of one."""
    env = os.environ
    if "WORLD_SIZE" in env and "RANK" in env:
        return World(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
    if env.get(SRUN_MARK) and "SLURM_PROCID" in env and "MASTER_ADDR" in env:
        return World(
            int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0))
        )
    return World()
