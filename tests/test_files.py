"""sasa_viz.files: checksums of files, and files written whole or not at all."""
import hashlib

import pytest

from sasa_viz.files import atomic_path, file_digest


@pytest.mark.parametrize("algorithm", ["sha256", "md5"])
def test_file_digest_is_hashlib_on_the_bytes(algorithm, tmp_path):
    path = tmp_path / "data.bin"
    payload = bytes(range(256)) * 5000                      # more than one read's worth
    path.write_bytes(payload)
    assert file_digest(path, algorithm) == hashlib.new(algorithm, payload).hexdigest()


def test_a_finished_write_takes_the_name_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "new" / "folder" / "card.json"
    with atomic_path(target) as partial:
        assert partial.parent == target.parent and partial != target
        partial.write_text("complete")
        assert not target.exists()                          # not before the block ends
    assert target.read_text() == "complete"
    assert list(target.parent.iterdir()) == [target]


def test_a_failed_write_keeps_the_previous_file_and_no_partial(tmp_path):
    target = tmp_path / "weights.bin"
    target.write_text("previous")
    with pytest.raises(OSError, match="disk full"):
        with atomic_path(target) as partial:
            partial.write_text("half of the new")
            raise OSError("disk full")
    assert target.read_text() == "previous"
    assert list(tmp_path.iterdir()) == [target]


def test_two_writers_get_their_own_temporary_files(tmp_path):
    target = tmp_path / "kernel.so"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second
        first.write_text("one")
        second.write_text("two")
    assert target.read_text() == "one"                      # the last to finish wins
