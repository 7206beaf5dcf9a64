"""Where the shared data the tests read lives: ``../shared/data/<name>`` beside the checkout,
or the folder an environment variable names (``$DVRNN_SPRITES_DIR``)."""
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SPRITES_DIR = pathlib.Path(os.environ.get("DVRNN_SPRITES_DIR",
                                          ROOT.parent / "shared" / "data" / "sprites")).resolve()


def sprites_dir() -> pathlib.Path:
    """The Sprites folder (the one holding sheets/); fails, never skips, without the sheets."""
    path = SPRITES_DIR.parent if SPRITES_DIR.name == "sheets" else SPRITES_DIR
    if not (path / "sheets" / "shoes" / "1.png").is_file():
        pytest.fail(f"the Sprites sheets are not in {path}/sheets; set DVRNN_SPRITES_DIR")
    return path
