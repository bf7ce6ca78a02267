"""Token windows over memmapped files and the (seed, step) -> batch schedule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training_core.data import TokenWindows, TrainSchedule, epoch_permutation


def _files(tmp_path: Path, sizes: list[int], dtype: str = "<u2") -> tuple[list[str], np.ndarray]:
    stream = np.arange(sum(sizes), dtype=dtype) % 1000
    paths, start = [], 0
    for k, n in enumerate(sizes):
        path = tmp_path / f"part_{k}.ds"
        stream[start : start + n].tofile(path)
        paths.append(str(path))
        start += n
    return paths, stream


@pytest.mark.parametrize("dtype", ["uint16", "uint32"])
def test_windows_concatenate_files_in_order(tmp_path: Path, dtype: str) -> None:
    paths, stream = _files(tmp_path, [10, 0, 7, 20], dtype="<u2" if dtype == "uint16" else "<u4")
    win = TokenWindows(paths, dtype, seq_len=8)
    assert len(win) == 37 // 8  # the 5-token tail is dropped
    expected = torch.from_numpy(stream[: 4 * 8].astype(np.int64).reshape(4, 8))
    torch.testing.assert_close(win.all(), expected)
    torch.testing.assert_close(win.get([2, 0]), expected[[2, 0]])  # straddles files 0 and 2


def test_max_tokens_keeps_leading_windows(tmp_path: Path) -> None:
    paths, _ = _files(tmp_path, [100])
    assert len(TokenWindows(paths, "uint16", seq_len=8, max_tokens=30)) == 3
    with pytest.raises(IndexError):
        TokenWindows(paths, "uint16", seq_len=8, max_tokens=30).get([3])


def test_epoch_permutation_is_deterministic_and_fresh_per_epoch() -> None:
    a = epoch_permutation(7, 0, 50)
    np.testing.assert_array_equal(a, epoch_permutation(7, 0, 50))
    assert sorted(a.tolist()) == list(range(50))
    assert not np.array_equal(a, epoch_permutation(7, 1, 50))
    assert not np.array_equal(a, epoch_permutation(8, 0, 50))


def test_schedule_covers_each_epoch_exactly_once() -> None:
    sched = TrainSchedule(n_windows=10, epochs=3.0, batch_size=4, seed=1)
    assert sched.total_samples == 30 and sched.total_steps == 8
    stream = np.concatenate([sched.windows(s) for s in range(sched.total_steps)])
    assert len(stream) == 30  # last step is short (2 samples)
    for epoch in range(3):
        chunk = stream[epoch * 10 : (epoch + 1) * 10]
        np.testing.assert_array_equal(chunk, epoch_permutation(1, epoch, 10))
    assert sched.epoch_after(sched.total_steps - 1) == pytest.approx(3.0)


def test_schedule_is_a_function_of_seed_and_step() -> None:
    fresh = TrainSchedule(n_windows=13, epochs=2.5, batch_size=5, seed=4)
    assert fresh.total_samples == 32  # round(2.5 * 13)
    # Asking for steps out of order (as a resumed run does) gives the same batches.
    late = TrainSchedule(n_windows=13, epochs=2.5, batch_size=5, seed=4)
    for step in (6, 2, 0, 4):
        np.testing.assert_array_equal(late.windows(step), fresh.windows(step))
    with pytest.raises(IndexError):
        fresh.windows(fresh.total_steps)


def test_empty_budget_is_an_error() -> None:
    with pytest.raises(ValueError, match="data"):
        TrainSchedule(n_windows=0, epochs=1.0, batch_size=2, seed=0)


def test_derived_seed_is_stable_and_separates_streams() -> None:
    from training_core.data import derived_seed

    assert derived_seed(0, 1, 5) == derived_seed(0, 1, 5)
    seeds = {
        derived_seed(seed, tag, step) for seed in range(3) for tag in (1, 2) for step in range(50)
    }
    assert len(seeds) == 3 * 2 * 50  # no collisions across (seed, stream, step)
    assert all(0 <= s < 2**63 for s in seeds)
