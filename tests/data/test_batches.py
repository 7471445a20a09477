import numpy as np
import pytest
import torch

from parrot.data.batches import WindowSampler, fixed_batches
from parrot.errors import ParrotError

DATA = np.arange(1000, dtype=np.uint16)


def test_windows_are_contiguous_slices_of_seq_len_plus_one():
    batch = WindowSampler(DATA, 8, 16, seed=0).next()
    assert batch.shape == (8, 17) and batch.dtype == torch.long
    assert torch.equal(batch[:, 1:] - batch[:, :-1], torch.ones(8, 16, dtype=torch.long))
    assert int(batch.max()) < len(DATA)


def test_same_seed_same_stream_and_state_resumes_it():
    a, b = WindowSampler(DATA, 4, 8, seed=3), WindowSampler(DATA, 4, 8, seed=3)
    for _ in range(3):
        assert torch.equal(a.next(), b.next())
    state = a.state_dict()
    expected = [a.next() for _ in range(3)]
    fresh = WindowSampler(DATA, 4, 8, seed=99)
    fresh.load_state_dict(state)
    assert all(torch.equal(fresh.next(), e) for e in expected)


def test_ranks_split_the_global_batch_exactly():
    whole = WindowSampler(DATA, 6, 8, seed=1)
    ranks = [WindowSampler(DATA, 6, 8, seed=1, rank=r, world_size=3) for r in range(3)]
    for _ in range(4):
        parts = [r.next() for r in ranks]
        assert all(p.shape == (2, 9) for p in parts)
        assert torch.equal(torch.cat(parts), whole.next())


def test_every_start_offset_can_be_drawn():
    sampler = WindowSampler(np.arange(10, dtype=np.uint16), 64, 8, seed=0)
    starts = {int(s) for _ in range(20) for s in sampler.next()[:, 0]}
    assert starts == {0, 1}


def test_too_little_data_or_an_uneven_batch_is_a_clear_error():
    with pytest.raises(ParrotError, match="fewer than the 17"):
        WindowSampler(np.arange(16, dtype=np.uint16), 2, 16, seed=0)
    with pytest.raises(ParrotError, match="divisible"):
        WindowSampler(DATA, 5, 8, seed=0, world_size=2)
    with pytest.raises(ParrotError, match="validation"):
        fixed_batches(np.zeros(0, dtype=np.uint16), 2, 2, 8, seed=0)


def test_fixed_batches_repeat_exactly():
    a, b = fixed_batches(DATA, 3, 4, 8, seed=5), fixed_batches(DATA, 3, 4, 8, seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
