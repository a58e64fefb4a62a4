"""How a run's processes share the work (no process group needed: the shares are arithmetic, and
the draws are every process's own): each process's rows of a training batch and block of an
evaluated split, and augmentation of a share as of the whole batch; and the one collective
that shares a decision (`same_as_main`), in two processes. The run itself, two processes
against one, is tests/pipeline/stages/test_launch.py."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from alphaprune import augment, distributed
from alphaprune.batches import DeviceData
from alphaprune.runtime import Runtime
from alphaprune.world import SRUN_MARK, World, environment


@pytest.mark.parametrize("size", [1, 2, 3, 8])
@pytest.mark.parametrize("n", [0, 1, 7, 64, 65])
def test_the_processes_rows_cover_every_item_once(n, size):
    rows = [World(r, size).rows(n) for r in range(size)]
    assert [i for r in rows for i in range(n)[r]] == list(range(n))
    lengths = [len(range(n)[r]) for r in rows]
    assert max(lengths) - min(lengths) <= 1
    assert lengths == [len(t) for t in torch.tensor_split(torch.arange(n), size)]


def _split(n: int, world: World) -> DeviceData:
    runtime = Runtime(torch.device("cpu"), world=world)
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1)
    return DeviceData(x, torch.arange(n), [0.0], [1.0], runtime)


@pytest.mark.parametrize("size", [2, 4])
def test_each_training_batch_is_split_over_the_processes_in_one_order(size):
    n, batch = 50, 8
    whole = _split(n, World()).order(batch, torch.Generator().manual_seed(3))
    shares = [
        _split(n, World(r, size)).order(batch, torch.Generator().manual_seed(3), shard=True)
        for r in range(size)
    ]
    assert len(whole) == 6  # drop-last, as on one process
    for k, batch_idx in enumerate(whole):
        assert torch.equal(torch.cat([s[k] for s in shares]), batch_idx)
        assert {len(s[k]) for s in shares} == {batch // size}


def test_an_evaluated_split_is_a_block_a_process():
    n = 23
    blocks = [_split(n, World(r, 3)).order(4, shard=True) for r in range(3)]
    assert torch.equal(torch.cat([torch.cat(b) for b in blocks]), torch.arange(n))
    assert max(len(c) for b in blocks for c in b) <= 4
    # Without `shard`, every process sees the whole split (e.g. the batches that re-estimate
    # BatchNorm, which every process runs alike).
    assert torch.equal(torch.cat(_split(n, World(1, 3)).order(4)), torch.arange(n))


POLICIES = {
    "crop-flip": augment.Augment(crop_flip=True, crop_padding=2),
    "noise": augment.Augment(noise_fraction=0.5, noise_std=1.0),
    "resized-crop": augment.Augment(resized_crop=True, resized_crop_scale=0.3),
    "all": augment.Augment(crop_flip=True, noise_fraction=0.3, noise_std=0.5, resized_crop=True),
}


@pytest.mark.parametrize("policy", POLICIES.values(), ids=POLICIES.keys())
def test_a_share_is_augmented_as_in_the_whole_batch(policy):
    x = torch.randn(12, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    whole_gen = torch.Generator().manual_seed(5)
    whole = policy(x, whole_gen)
    for r in range(3):
        rows = World(r, 3).rows(12)
        gen = torch.Generator().manual_seed(5)
        share = policy(x[rows], gen, (rows, 12))
        torch.testing.assert_close(share, whole[rows], rtol=1e-5, atol=1e-5)
        # Every process's generator moves as the whole batch's did: the next draws agree.
        assert torch.equal(gen.get_state(), whole_gen.get_state())


def test_one_process_draws_as_before():
    """`part=None` is the whole batch: the draws are the ones of a run on one process."""
    x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    policy = POLICIES["all"]
    a = policy(x, torch.Generator().manual_seed(1))
    b = policy(x, torch.Generator().manual_seed(1), (slice(0, 6), 6))
    assert torch.equal(a, b)


def test_the_environment_names_the_process(monkeypatch):
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_NTASKS", "SLURM_PROCID", SRUN_MARK)
    for key in names:
        monkeypatch.delenv(key, raising=False)
    assert environment() == World()
    # a SLURM job's own step, even where the site sets MASTER_ADDR, is no run of several ...
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("MASTER_ADDR", "node7")
    assert environment() == World()
    # ... the tasks the launcher starts with srun are
    monkeypatch.setenv(SRUN_MARK, "1")
    assert environment() == World(3, 4, 1)
    # torchrun's variables come first
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    world = environment()
    assert dataclasses.astuple(world) == (1, 2, 1) and not world.main and world.distributed


def _same_as_main(rank: int, store: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        got = distributed.same_as_main(World(rank=rank, size=2), {"plan": [rank, "own"]})
        Path(out, f"{rank}.json").write_text(json.dumps(got))
    finally:
        dist.destroy_process_group()


def test_every_process_gets_the_main_process_value(tmp_path):
    """Two processes (gloo, on the CPU) each holding their own value end with the main one's;
    one process keeps its own."""
    import torch.multiprocessing as mp

    mp.spawn(_same_as_main, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    for rank in (0, 1):
        assert json.loads((tmp_path / f"{rank}.json").read_text()) == {"plan": [0, "own"]}
    assert distributed.same_as_main(World(), "mine") == "mine"
