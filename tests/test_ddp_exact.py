"""ARR under DDP, exactly: two gloo processes on the CPU pass fixed responses through ARR, and every
rank's memory and loss must equal the one-by-one loop over the concatenated batch (rank order);
the loaders' rank blocks must concatenate to the single-process batch."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from dnrt.nn import ARR
from tests.harness.hooks import module_fixture

# Spawns gloo process groups: not in `make test-fast`.
pytestmark = pytest.mark.slow

WIDTHS = (2, 4)  # two taps of different widths
NUM_CLASSES = 3


class FixedTaps(nn.Module):
    """Taps ``a`` and ``b`` see columns [:2] and [2:] of the input: the responses are the input."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Identity(), nn.Identity()

    def forward(self, x):
        return self.a(x[:, :WIDTHS[0]]), self.b(x[:, WIDTHS[0]:])


def _steps(dyadic: bool):
    """Global batches (x [B, 6], y [B], rows per rank). Dyadic values with momentum 1/2 keep every
    sum and mean exact in float32, so the comparison can be bitwise."""
    g = torch.Generator().manual_seed(3)
    steps = []
    for sizes in [(4, 4), (4, 4), (5, 3)]:  # the last step has unequal rank blocks
        b = sum(sizes)
        x = torch.randint(-8, 9, (b, sum(WIDTHS)), generator=g) / 4 if dyadic else torch.randn(b, 6, generator=g)
        y = torch.randint(0, NUM_CLASSES, (b,), generator=g)
        y[:3] = 1  # repeated classes within a rank block and across the rank boundary
        steps.append((x.float(), y, sizes))
    return steps


def _worker(rank, world, init_file, scenarios, out, memory="global"):
    """For each (steps, momentum): a fresh ARR (``memory``: one for all ranks, or one per rank) fed this
    rank's block of every step; saves, per step, the loss and every tap's memory."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        records = []
        for steps, momentum in scenarios:
            model = FixedTaps()
            arr = ARR(model, NUM_CLASSES, ["a", "b"], momentum=momentum, sample=torch.zeros(2, sum(WIDTHS)),
                      memory=memory)
            record = []
            for x, y, sizes in steps:
                lo = sum(sizes[:rank])
                model(x[lo:lo + sizes[rank]])
                loss = arr(y[lo:lo + sizes[rank]])
                memories = [(m.mean.clone(), m.count.clone()) for m in arr.memories]
                record.append((loss.detach(), [m for m, _ in memories], [c for _, c in memories]))
            records.append(record)
        torch.save(records, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _one_by_one(steps, momentum, dtype):
    """Per step: each rank's loss, and every tap's (mean, count) after the step; the loop of docs/design.md §3
    over the concatenated batch, in rank order."""
    mu = [torch.zeros(NUM_CLASSES, d, dtype=dtype) for d in WIDTHS]
    n = [[0] * NUM_CLASSES for _ in WIDTHS]
    out = []
    for x, y, sizes in steps:
        cols = x.to(dtype).split(WIDTHS, 1)
        errs = []  # [tap][sample] sum over features of |r - target|
        for tap, r_tap in enumerate(cols):
            errs.append([])
            for r, k in zip(r_tap, y.tolist()):
                mu[tap][k] = r.clone() if n[tap][k] == 0 else (1 - momentum) * mu[tap][k] + momentum * r
                n[tap][k] += 1
                errs[tap].append((r - mu[tap][k]).abs().sum())
        losses, lo = [], 0
        for size in sizes:
            per_tap = [torch.stack(e[lo:lo + size]).sum() / (size * d) for e, d in zip(errs, WIDTHS)]
            losses.append(torch.stack(per_tap).mean())
            lo += size
        out.append((losses, [m.clone() for m in mu], [list(c) for c in n]))
    return out


SCENARIOS = [(_steps(dyadic=True), 0.5), (_steps(dyadic=False), 0.1)]


@module_fixture
def ddp_records(tmp_path_factory):
    """One pair of gloo processes runs every scenario: [scenario][rank] -> per-step records."""
    tmp = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, str(tmp / "init"), SCENARIOS, str(tmp)), nprocs=2, join=True)
    ranks = [torch.load(tmp / f"rank{r}.pt") for r in range(2)]
    return [[ranks[r][s] for r in range(2)] for s in range(len(SCENARIOS))]


def test_two_ranks_equal_the_one_by_one_loop_bitwise(ddp_records):
    (steps, _), ranks = SCENARIOS[0], ddp_records[0]
    for i, (losses, mu, n) in enumerate(_one_by_one(steps, 0.5, torch.float32)):
        for rank, record in enumerate(ranks):
            loss, means, counts = record[i]
            assert loss.item() == losses[rank].item(), (i, rank)
            for tap in range(len(WIDTHS)):
                assert torch.equal(means[tap], mu[tap]), (i, rank, tap)
                assert counts[tap].tolist() == n[tap], (i, rank, tap)


def test_two_ranks_with_random_responses_equal_one_process_and_the_loop(ddp_records):
    (steps, _), ranks = SCENARIOS[1], ddp_records[1]
    single_model = FixedTaps()
    single = ARR(single_model, NUM_CLASSES, ["a", "b"], momentum=0.1, sample=torch.zeros(2, 6))
    for (x, y, _), (losses, mu, _), *records in zip(steps, _one_by_one(steps, 0.1, torch.float64), *ranks):
        single_model(x)
        single(y)
        for rank, (loss, means, _) in enumerate(records):
            assert abs(loss.item() - losses[rank].item()) < 1e-6
            for tap in range(len(WIDTHS)):
                assert torch.equal(means[tap], single.memories[tap].mean)  # same update, same order
                torch.testing.assert_close(means[tap].double(), mu[tap], rtol=0, atol=1e-6)


def test_rank_blocks_concatenate_to_the_single_process_batch():
    """epoch_order cuts each global batch into rank blocks; both loader kinds batch these indices."""
    from dnrt.data.loader import DeviceLoader, EpochLoader  # not in the spawned workers' imports

    for n, batch in [(52, 6), (10, 16)]:  # a dropped tail; fewer samples than one batch
        one = EpochLoader(n, batch_size=2 * batch, seed=5, train=True)
        two = [EpochLoader(n, batch_size=batch, seed=5, train=True, rank=r, world_size=2) for r in range(2)]
        for loader in (one, *two):
            loader.set_epoch(3)
        blocks = [loader.batch_indices() for loader in two]
        assert len(blocks[0]) == len(blocks[1]) == len(one) > 0
        for single, *parts in zip(one.batch_indices(), *blocks):
            assert torch.equal(torch.cat(parts), single)
    ids = torch.arange(52)  # labels = sample ids: the batches say which samples they hold
    images = torch.zeros(52, 3, 4, 4, dtype=torch.uint8)
    common = dict(device="cpu", mean=(0.0,) * 3, std=(1.0,) * 3, seed=5, train=True)
    single = [y for _, y in DeviceLoader(images, ids, batch_size=12, **common)]
    per_rank = [[y for _, y in DeviceLoader(images, ids, batch_size=6, rank=r, world_size=2, **common)]
                for r in range(2)]
    assert len(single) == 4
    for y, *parts in zip(single, *per_rank):
        assert torch.equal(torch.cat(parts), y)
