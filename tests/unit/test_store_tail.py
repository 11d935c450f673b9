"""StoreTail: a live view reads only what was appended since its last look."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tomato_cli.store import JobStore
from tomato_cli.store.tail import StoreTail


def test_each_batch_is_read_once_in_order(tmp_path: Path) -> None:
    tail = StoreTail(tmp_path / "job")
    assert tail.new_batches() == []  # no store yet
    with JobStore(tmp_path / "job", durable=False) as store:
        store.append("a", [1.0, 2.0], {"v": [1, 2]}, {"v": "V"}, step=0)
        store.append("b", [1.5], {"w": [0.5]}, {}, step=1)
        first = tail.new_batches()
        assert [(role, list(b.uts), b.step) for role, b in first] == [
            ("a", [1.0, 2.0], 0),
            ("b", [1.5], 1),
        ]
        assert first[0][1].units == {"v": "V"}
        assert tail.new_batches() == []
        store.append("a", [3.0], {"v": [3]}, {"v": "V"}, step=2)
        again = tail.new_batches()
        assert [(role, list(b.columns["v"])) for role, b in again] == [("a", [3])]


def test_a_torn_record_is_read_once_it_is_whole(tmp_path: Path) -> None:
    with JobStore(tmp_path / "job", durable=False) as store:
        store.append("a", [1.0], {"v": [1]}, {})
    path = tmp_path / "job" / "data" / "a.tsr"
    whole = path.read_bytes()
    with JobStore(tmp_path / "other", durable=False) as store:
        store.append("a", [2.0], {"v": [2]}, {})
    record = (tmp_path / "other" / "data" / "a.tsr").read_bytes()[8:]  # after the file magic
    path.write_bytes(whole + record[:10])  # a writer in the middle of a record
    tail = StoreTail(tmp_path / "job")
    assert [list(b.uts) for _, b in tail.new_batches()] == [[1.0]]
    path.write_bytes(whole + record)
    assert [list(b.uts) for _, b in tail.new_batches()] == [[2.0]]
    np.testing.assert_array_equal(JobStore(tmp_path / "job").read("a").uts, [1.0, 2.0])


def test_traces_come_whole_with_their_batch(tmp_path: Path) -> None:
    tail = StoreTail(tmp_path / "job")
    with JobStore(tmp_path / "job", durable=False) as store:
        freq = np.arange(4.0)
        store.append(
            "vna", [1.0], {"s11": [freq * 2]}, {}, dims={"s11": ["freq"]}, coords={"freq": freq}
        )
        [(role, batch)] = tail.new_batches()
    assert role == "vna" and batch.columns["s11"].shape == (1, 4)
