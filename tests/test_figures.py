"""Image grids, PNGs, disentanglement figures and the TensorBoard callback."""
import glob
import os

import numpy as np
import pytest
import tensorflow as tf
from matplotlib import image as mpimg

from dvrnn_tf import figures
from dvrnn_tf.models import VRNN, DisentangledVRNN

T, H, W, C = 8, 8, 8, 1
SMALL = dict(seq_len=T, hidden_dim=16, rnn_dim=16, z_dim=3, seed=0)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).uniform(size=(4, T, H, W, C)).astype("float32")


@pytest.fixture(scope="module")
def dvrnn():
    return DisentangledVRNN((H, W, C), variant="full", f_dim=4, **SMALL)


def cell(grid, i, j, h, w, pad=1):
    return grid[i * (h + pad):i * (h + pad) + h, j * (w + pad):j * (w + pad) + w]


def test_image_grid_places_each_image(tmp_path):
    images = np.zeros((2, 3, 4, 5, 1), np.float32)
    images[1, 2] = 1.0
    images[0, 1, 0, 0] = 0.5
    grid = figures.image_grid(images, path=tmp_path / "g.png")
    assert grid.shape == (2 * 5, 3 * 6, 3) and grid.dtype == np.uint8
    assert (cell(grid, 1, 2, 4, 5) == 255).all()
    assert (cell(grid, 0, 1, 4, 5)[0, 0] == 128).all() and cell(grid, 0, 1, 4, 5).sum() == 3 * 128
    for i, j in [(0, 0), (0, 2), (1, 0), (1, 1)]:
        assert (cell(grid, i, j, 4, 5) == 0).all()
    assert (grid[4] == figures.SEPARATOR).all() and (grid[:, 5] == figures.SEPARATOR).all()
    png = mpimg.imread(tmp_path / "g.png")
    # Small grids are enlarged by whole-pixel repetition: every f-th pixel is the grid.
    f = png.shape[1] // grid.shape[1]
    assert f > 1 and png.shape[:2] == (grid.shape[0] * f, grid.shape[1] * f)
    np.testing.assert_array_equal(np.round(png[::f, ::f, :3] * 255).astype(np.uint8), grid)


def test_image_grid_colour_and_clipping():
    rgb = np.zeros((1, 2, 3, 3, 3), np.float32)
    rgb[0, 1, ..., 0] = 2.0  # clipped to 1: pure red
    grid = figures.image_grid(rgb, pad=2)
    assert grid.shape == (5, 10, 3)
    np.testing.assert_array_equal(grid[:3, 5:8].reshape(-1, 3), [[255, 0, 0]] * 9)
    with pytest.raises(ValueError):
        figures.image_grid(np.zeros((2, 4, 4, 1)))


def test_sample_and_reconstruction_grid(x):
    model = VRNN((H, W, C), **SMALL)
    grid = figures.sample_and_reconstruction_grid(model, x, n=2)
    assert grid.shape == ((2 * 2 + 2) * (H + 1), T * (W + 1), 3)
    expected = figures.image_grid(x[None, 1])  # data row of sequence 1 is row 2
    np.testing.assert_array_equal(grid[2 * (H + 1):3 * (H + 1)], expected)
    recon = figures.image_grid(model.reconstruct(x[1:2]).numpy())
    np.testing.assert_array_equal(grid[3 * (H + 1):4 * (H + 1)], recon)


def test_swap_grid_layout(dvrnn, x):
    blocks = figures.swap_grid(dvrnn, x, k=3)
    assert blocks.shape == (4, 4 * (T + 1) - 1, H, W, C)
    np.testing.assert_array_equal(blocks[0, T + 1:2 * T + 1], x[0])  # style row
    np.testing.assert_array_equal(blocks[2, :T], x[1])  # content column
    assert (blocks[0, :T] == 0).all() and (blocks[:, T] == 0.5).all()
    np.testing.assert_allclose(blocks[1, 2 * (T + 1):3 * (T + 1) - 1],
                               dvrnn.swap(x[0:1], x[1:2])[0], atol=1e-5)


def test_disentanglement_figures(dvrnn, x, tmp_path):
    paths = figures.disentanglement_figures(dvrnn, x, tmp_path / "figs", n=3)
    assert set(paths) == set(figures.DISENTANGLEMENT)
    for name, path in paths.items():
        image = mpimg.imread(path)
        assert image.ndim == 3 and image.shape[0] > 0, name
    def cells(path):  # the PNG's size in grid cells, whatever its enlargement
        shape = mpimg.imread(path).shape
        f = shape[1] // (T * (W + 1))
        return shape[0] / f, shape[1] / f
    assert cells(paths["fixed_style"]) == (3 * (H + 1), T * (W + 1))
    assert cells(paths["interpolate_f"]) == (8 * (H + 1), T * (W + 1))
    assert figures.disentanglement_figures(VRNN((H, W, C), **SMALL), x, tmp_path / "v") == {}


def _image_tags(log_dir):
    tags = {}
    for path in glob.glob(os.path.join(log_dir, "**", "events.out.tfevents.*"), recursive=True):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags.setdefault(value.tag, set()).add(event.step)
    return tags


def test_write_tensorboard_images(tmp_path):
    grid = figures.image_grid(np.random.default_rng(1).uniform(size=(1, 2, 4, 4, 1)))
    figures.write_tensorboard_images(str(tmp_path), 7, {"a": grid, "b": grid})
    assert _image_tags(str(tmp_path)) == {"a": {7}, "b": {7}}
    # What TensorBoard's image plugin reads: [width, height, PNG] strings, plugin "images".
    (path,) = glob.glob(str(tmp_path / "events.out.tfevents.*"))
    values = [v for e in tf.compat.v1.train.summary_iterator(path) for v in e.summary.value]
    assert {v.metadata.plugin_data.plugin_name for v in values} == {"images"}
    width, height, png = tf.make_ndarray(values[0].tensor)
    assert (int(width), int(height)) == (grid.shape[1], grid.shape[0])
    np.testing.assert_array_equal(tf.io.decode_png(png, channels=3).numpy(), grid)


def test_figure_callback_in_fit(dvrnn, x, tmp_path):
    model = DisentangledVRNN((H, W, C), variant="factorized", f_dim=4, **SMALL)
    model.compile(optimizer="adam")
    callback = figures.FigureCallback(x[:2], tmp_path / "logs", n=2)
    model.fit(x, epochs=2, batch_size=2, callbacks=[callback], verbose=0)
    tags = _image_tags(str(tmp_path / "logs"))
    assert set(tags) == {"samples_reconstructions", *figures.DISENTANGLEMENT}
    assert all(steps == {0, 1} for steps in tags.values())
    # Figures leave the model's noise as they found it.
    before = model.seed_generator.state.numpy().copy()
    callback.grids()
    np.testing.assert_array_equal(model.seed_generator.state.numpy(), before)
