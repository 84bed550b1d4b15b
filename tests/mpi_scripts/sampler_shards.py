"""The sharding invariant across real ranks.

Usage: sampler_shards.py NUM_SAMPLES GLOBAL_BATCH SEED EPOCHS [POSITION]

Every rank walks the sampler (starting at sample POSITION of epoch 0, as
after a resume from any world size) and all-gathers its shards; rank 0
checks, per epoch, that the shards of each step are contiguous slices of the
epoch's permutation in rank order, with sizes differing by at most one, and
that every sample not consumed before POSITION is seen exactly once.  Prints
``EPOCH <e> <steps> <min shard> <max shard>`` and ``DONE <rank>``.
"""

from _common import expect, script_args, say
from distnet.distributed import ShardSampler, get_communicator, install_abort_hook

n, batch, seed, epochs = (int(a) for a in script_args()[:4])
position = int(script_args()[4]) if len(script_args()) > 4 else 0
comm = get_communicator("auto")
install_abort_hook(comm)
sampler = ShardSampler(n, batch, seed, comm.rank, comm.size, position=position)
reference = ShardSampler(n, batch, seed, 0, 1)   # the permutation a single process would use

for epoch in range(epochs):
    seen = []
    steps = 0
    sizes = []
    for shard in sampler:
        expect(shard.epoch == epoch, f"epoch {shard.epoch} != {epoch}")
        shards = comm.allgather_object((shard.step, shard.start, shard.counts, shard.indices.tolist()))
        expect(len({(s[0], s[1], s[2]) for s in shards}) == 1, f"ranks disagree on the step: {shards}")
        step, start, counts, _ = shards[0]
        expect(max(counts) - min(counts) <= 1, f"shard sizes {counts}")
        expect(counts == tuple(len(s[3]) for s in shards), "counts match the shards")
        together = [i for s in shards for i in s[3]]
        want = reference.permutation(epoch)[start: start + len(together)].tolist()
        expect(together == want, f"step {step}: shards are not the permutation's slice in rank order")
        seen.extend(together)
        sizes.extend(counts)
        steps += 1
    first = position if epoch == 0 else 0
    expect(sorted(seen + reference.permutation(epoch)[:first].tolist()) == list(range(n)),
           f"epoch {epoch}: not every sample exactly once")
    if comm.rank == 0:
        say(f"EPOCH {epoch} {steps} {min(sizes)} {max(sizes)}")
say(f"DONE {comm.rank}")
