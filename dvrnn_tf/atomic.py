"""Files written whole or not at all: a temporary sibling, renamed into place when complete."""
import contextlib
import os
import pathlib
import tempfile


@contextlib.contextmanager
def atomic_file(path, mode: str = "w"):
    """Yield a file open for writing in place of `path` ("w" text, "wb" bytes).

    What is written goes to a temporary sibling, flushed to disk and renamed to `path` when
    the block ends; if the block raises, the temporary file is removed and `path` keeps its
    previous version. Readers never see half a file.
    """
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
