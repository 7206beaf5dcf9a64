"""dvrnn_tf.atomic: a file is replaced whole or not at all (run directories, caches, JSON)."""
import pytest

from dvrnn_tf.atomic import atomic_file


def test_atomic_file_replaces_on_success_and_keeps_the_old_file_on_error(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(path) as f:
            f.write("half of the new")
            assert path.read_text() == "old"  # nothing visible while writing
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left
    with atomic_file(path, "wb") as f:
        f.write(b"new")
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
