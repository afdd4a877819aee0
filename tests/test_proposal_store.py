"""The per-image proposal store: round trip, settings refused when they differ, stale rows, resuming."""

from __future__ import annotations

import os
import pickle
import time

import numpy as np
import pytest
import torch

from incdet.engine import Execution, propose_folder
from incdet.multibox.proposer import Proposer
from incdet.errors import InputError
from incdet.io import write_image
from incdet.proposals.settings import SearchSettings
from incdet.proposals.store import FileStamp, ProposalStore
from incdet.structures import BOTH, MULTIBOX, SELECTIVE_SEARCH, ImageRecord, Proposals

SETTINGS = SearchSettings(superpixel_scale=2.0).to_dict()


def _proposals(n: int, seed: int = 0) -> Proposals:
    rng = np.random.default_rng(seed)
    xy = rng.random((n, 2), dtype=np.float32) * 100
    boxes = np.concatenate([xy, xy + 1 + rng.random((n, 2), dtype=np.float32) * 50], axis=1)
    return Proposals(boxes, rng.integers(0, 3, n).astype(np.uint8))


def test_rows_round_trip_exactly_with_their_sources(tmp_path) -> None:
    store = ProposalStore(tmp_path / "p.db", SETTINGS)
    written = {"a.jpg": _proposals(7, 1), "sub/a.jpg": _proposals(0), "b.png": _proposals(300, 2)}
    for key, props in written.items():
        store.put(key, props, width=160, height=120, seconds=0.5)
    reopened = ProposalStore(tmp_path / "p.db", readonly=True)
    assert sorted(reopened) == sorted(written) and len(reopened) == 3
    for key, props in written.items():
        got = reopened[key]
        assert torch.equal(got.boxes, props.boxes) and torch.equal(got.source, props.source)
    entry = reopened.entry("a.jpg")
    assert (entry.width, entry.height, entry.seconds) == (160, 120, 0.5)
    assert reopened.settings == SETTINGS
    assert "missing.jpg" not in reopened and reopened.entry("missing.jpg") is None
    assert Proposals.from_boxes(np.zeros((2, 4)), MULTIBOX).source_names() == [MULTIBOX, MULTIBOX]
    assert _proposals(0).counts() == {SELECTIVE_SEARCH: 0, MULTIBOX: 0, BOTH: 0, "total": 0}


def test_other_settings_are_refused_naming_the_difference(tmp_path) -> None:
    ProposalStore(tmp_path / "p.db", SETTINGS).put("a.jpg", _proposals(3))
    other = SearchSettings(superpixel_scale=1.0).to_dict()
    with pytest.raises(InputError, match=r"p\.db: holds proposals made with other settings: superpixel_scale 2\.0 \(now 1\.0\)"):
        ProposalStore(tmp_path / "p.db", other)


@pytest.mark.parametrize("readonly", [True, False])
def test_a_file_that_is_not_a_store_is_an_input_error(tmp_path, readonly: bool) -> None:
    path = tmp_path / "p.db"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(InputError, match="p.db: not a readable proposal store"):
        ProposalStore(path, SETTINGS, readonly=readonly)["x"]


def test_bad_paths_are_refused(tmp_path) -> None:
    with pytest.raises(InputError, match="ending in .db"):
        ProposalStore(tmp_path / "p.npz")
    with pytest.raises(InputError, match="no such proposal store"):
        ProposalStore(tmp_path / "missing.db", readonly=True)


def test_a_corrupt_row_names_its_key(tmp_path) -> None:
    store = ProposalStore(tmp_path / "p.db", SETTINGS)
    store.put("a.jpg", _proposals(2))
    with store._db() as db:
        db.execute("UPDATE proposals SET boxes = ? WHERE key = 'a.jpg'", (b"123",))
    with pytest.raises(InputError, match="'a.jpg' is corrupt"):
        store["a.jpg"]


def test_a_store_survives_pickling_into_another_process(tmp_path) -> None:
    store = ProposalStore(tmp_path / "p.db", SETTINGS)
    store.put("a.jpg", _proposals(4))
    store["a.jpg"]  # opens a connection, which must not travel
    clone = pickle.loads(pickle.dumps(store))
    pid = os.fork()
    if pid == 0:  # child: read through the clone
        os._exit(0 if torch.equal(clone["a.jpg"].boxes, _proposals(4).boxes) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0


def test_shard_stores_merge_into_one(tmp_path) -> None:
    one, two = ProposalStore(tmp_path / "1.db", SETTINGS), ProposalStore(tmp_path / "2.db", SETTINGS)
    one.put("a.jpg", _proposals(2))
    two.put("b.jpg", _proposals(3))
    assert one.update_from(two) == 1
    assert sorted(one) == ["a.jpg", "b.jpg"]
    with pytest.raises(InputError, match="other settings"):
        one.update_from(ProposalStore(tmp_path / "3.db", SearchSettings(superpixel_scale=1.0).to_dict()))


def test_propose_folder_searches_only_missing_and_stale_images(tmp_path) -> None:
    rng = np.random.default_rng(0)
    paths = {}
    for name in ("a.png", "b.png"):
        image = rng.integers(0, 255, (60, 80, 3)).astype(np.uint8)
        image[10:40, 20:60] = (200, 30, 30)
        write_image(tmp_path / name, image)
        paths[name] = tmp_path / name
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    paths["broken.jpg"] = tmp_path / "broken.jpg"
    settings = SearchSettings()
    store = ProposalStore(tmp_path / "p.db", settings.to_dict())
    records = [ImageRecord(path, key, i) for i, (key, path) in enumerate(paths.items())]
    searched = []
    skipped = propose_folder(records, store, Proposer(settings, device="cpu"), execution=Execution(workers=1), on_result=searched.append)
    assert sorted(store) == ["a.png", "b.png"] and len(searched) == 3
    assert skipped.messages()[0].startswith(f"{paths['broken.jpg']}: not a readable image")
    assert store.entry("a.png").stamp == FileStamp.of(paths["a.png"])

    searched.clear()
    propose_folder(records, store, Proposer(settings, device="cpu"), execution=Execution(workers=1), on_result=searched.append)
    assert [r.image.path.name for r in searched] == ["broken.jpg"]  # done images are not searched again

    time.sleep(0.01)
    write_image(paths["a.png"], np.zeros((60, 80, 3), np.uint8))  # regenerated: its boxes are stale
    searched.clear()
    propose_folder(records, store, Proposer(settings, device="cpu"), execution=Execution(workers=1), on_result=searched.append)
    assert sorted(r.image.path.name for r in searched) == ["a.png", "broken.jpg"]
    assert store.is_current("a.png", paths["a.png"])


def test_a_store_is_identified_by_its_settings_and_rows_not_its_bytes(tmp_path) -> None:
    path = tmp_path / "s.db"
    with ProposalStore(path, {"scale": 2}) as store:
        store.put("a.jpg", Proposals.from_boxes(np.array([[0, 0, 10, 10]], np.float32)), width=20, height=20)
        store.put("b.jpg", Proposals.from_boxes(np.array([[1, 1, 5, 5]], np.float32)), width=20, height=20)
        before = store.identity()
    with ProposalStore(path, readonly=True) as reopened:
        assert reopened.identity() == before and before["rows"] == 2 and before["settings"] == {"scale": 2}
    with ProposalStore(path, {"scale": 2}) as store:
        store.put("b.jpg", Proposals.from_boxes(np.array([[1, 1, 5, 5], [2, 2, 9, 9]], np.float32)), width=20, height=20)
        assert store.identity()["rows_sha256"] != before["rows_sha256"] and store.identity()["rows"] == 2
