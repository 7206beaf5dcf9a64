"""scripts/sprites_factor_distances.py: the pixel distance between Sprites characters that
differ in one static factor (docs/sprites.md quotes it for body and bottomwear)."""
import importlib.util

import numpy as np
import pytest

import shared_data

_SPEC = importlib.util.spec_from_file_location(
    "sprites_factor_distances", shared_data.ROOT / "scripts" / "sprites_factor_distances.py")
fd = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(fd)


def test_pair_distances_sum_over_a_frame_and_average_over_frames():
    frames = np.zeros((3, 2, 2, 2, 1))  # 3 variants, 2 frames of 2x2x1
    frames[1] = 0.5
    frames[2, 0] = 1.0  # variant 2: frame 0 white, frame 1 black
    d = fd.pair_distances(frames)
    assert d == pytest.approx({(0, 1): 4 * 0.25, (0, 2): (4 + 0) / 2, (1, 2): (4 * 0.25) * 2 / 2})


def test_factor_distances_on_the_sheets_rank_body_and_bottomwear_closest():
    d = fd.factor_distances(shared_data.sprites_dir(), characters=1, seed=0)
    assert set(d) == set(fd.STATIC) and all(len(pairs) == 15 for pairs in d.values())
    assert all(v > 0 for pairs in d.values() for v in pairs.values())  # every variant differs
    mean = {f: np.mean(list(pairs.values())) for f, pairs in d.items()}
    assert max(mean["body"], mean["bottomwear"]) < min(mean["topwear"], mean["hair"])
