"""A checkpoint crafted to run code on load is refused, and the code provably does not run."""

from __future__ import annotations

import os
import pathlib

import pytest
import torch
from ckpt_helpers import new_store

from trainwell.checkpoint import load_checkpoint_dir
from trainwell.checkpoint.manifest import write_manifest
from trainwell.checkpoint.safe_load import safe_torch_load
from trainwell.errors import CheckpointError


class TouchMarker:
    """Unpickling this calls Path.touch(marker): the stand-in for arbitrary code."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


class ShellMarker:
    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def craft_checkpoint(store, step, payload):
    """A step directory whose manifest matches, so loading reaches the unpickler."""
    path = store.path_for(step)
    path.mkdir(parents=True)
    torch.save({"weight": torch.ones(2), "trap": payload}, path / "model.pt")
    write_manifest(path, step, {"model": "model.pt"}, {})
    return path


@pytest.mark.parametrize("payload_cls", [TouchMarker, ShellMarker])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, payload_cls):
    marker = tmp_path / "pwned"
    store = new_store(tmp_path)
    path = craft_checkpoint(store, 1, payload_cls(marker))
    assert store.latest_valid()[0].step == 1  # the manifest matches: hashes alone do not help

    with pytest.raises(CheckpointError) as err:
        store.load(1)
    msg = str(err.value)
    assert "refused: it holds objects other than tensors and plain data" in msg
    assert "loading it could run code" in msg
    assert "weights_only=False" not in msg  # never advise the unsafe retry
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint_dir(path)
    assert not marker.exists()


def test_the_payload_is_live(tmp_path):
    """Control: the same file does run code under an unsafe load, so the test above means something."""
    marker = tmp_path / "pwned"
    store = new_store(tmp_path)
    path = craft_checkpoint(store, 1, TouchMarker(marker))
    torch.load(path / "model.pt", weights_only=False)
    assert marker.exists()


def test_garbage_file_is_a_clear_error(tmp_path):
    f = tmp_path / "x.pt"
    f.write_bytes(b"this is not a torch file")
    with pytest.raises(CheckpointError, match="x.pt: not a readable torch file"):
        safe_torch_load(f)
