"""Image grids of samples, reconstructions and disentanglement, as PNGs and in TensorBoard.

Every grid is a uint8 RGB array [rows * (H + pad), cols * (W + pad), 3]: cell (i, j) is at
rows i * (H + pad) ... + H and columns j * (W + pad) ... + W, followed by a `pad`-wide grey
separator. In the grids of sequences, one row is one sequence with time along the columns.

PNGs are written with `matplotlib.image.imsave`, which needs no display (no GUI backend is
selected) and no absl.
"""
import os

import keras
import numpy as np
import tensorflow as tf
from matplotlib import image as mpimg

SEPARATOR = 128  # grey: apart from both black backgrounds and white strokes
SWAP_SIZE = 4    # sequences per side of the swap grid
DISENTANGLEMENT = ("fixed_style", "fixed_content", "swap", "interpolate_f", "interpolate_z")


def _numpy(x):
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x, dtype=np.float32)


def image_grid(images, path=None, pad=1):
    """images [rows, cols, H, W, C] in [0, 1] (C = 1 or 3) -> uint8 grid.

    The grid is [rows * (H + pad), cols * (W + pad), 3] (see the module's docstring); it is
    also written as a PNG at `path` when given.
    """
    images = _numpy(images)
    if images.ndim != 5 or images.shape[-1] not in (1, 3):
        raise ValueError(f"`images` must be [rows, cols, H, W, 1 or 3], got {images.shape}")
    rows, cols, h, w, c = images.shape
    cells = np.round(np.clip(np.nan_to_num(images), 0.0, 1.0) * 255).astype(np.uint8)
    if c == 1:
        cells = np.repeat(cells, 3, axis=-1)
    grid = np.full((rows, h + pad, cols, w + pad, 3), SEPARATOR, np.uint8)
    grid[:, :h, :, :w] = cells.transpose(0, 2, 1, 3, 4)
    grid = grid.reshape(rows * (h + pad), cols * (w + pad), 3)
    if path is not None:
        save_png(grid, path)
    return grid


def save_png(grid, path, min_width=480):
    """Write a uint8 grid [H, W, 3] as a PNG (parent folders created).

    Small grids (8x8 digits) are enlarged by whole-pixel repetition to about `min_width`
    pixels, so that a viewer shows them sharp instead of as a smudge.
    """
    grid = np.asarray(grid)
    factor = int(min(8, max(1, np.ceil(min_width / grid.shape[1]))))
    if factor > 1:
        grid = np.repeat(np.repeat(grid, factor, axis=0), factor, axis=1)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    mpimg.imsave(path, grid)


def sequences_grid(*blocks, path=None):
    """Sequences [B_k, T, H, W, C] stacked as rows (each row one sequence, time across)."""
    return image_grid(np.concatenate([_numpy(b) for b in blocks], axis=0), path)


def sample_and_reconstruction_grid(model, x, n=8):
    """Rows: data_1, reconstruction_1, ..., data_k, reconstruction_k (k = min(n, B)), then n
    prior samples; each row one sequence, time along the columns. -> uint8 grid."""
    x = _numpy(x)[:n]
    recon = _numpy(model.reconstruct(x))
    pairs = np.stack([x, recon], axis=1).reshape((-1,) + x.shape[1:])
    return sequences_grid(pairs, model.generate(n))


def swap_grid(model, x, k=SWAP_SIZE):
    """The swap matrix of k = min(k, B) sequences of x, for `sequences_grid`.

    Returns images [k + 1, (k + 1) * (T + 1) - 1, H, W, C], a (k + 1) x (k + 1) array of
    blocks of T frames.

    Row i >= 1, block j >= 1 is the whole sequence swap(x_i, x_j): the content of x_i with the
    style of x_j, time along the columns. Row 0 shows the style sequences x_j, block column 0
    the content sequences x_i, block (0, 0) is blank; on the diagonal, x_i decoded from its
    own codes. Blocks are separated by one grey frame.
    """
    x = _numpy(x)[:k]
    k, t = x.shape[0], x.shape[1]
    content = np.repeat(x, k, axis=0)  # x_0, x_0, ..., x_1, ...
    style = np.tile(x, (k, 1, 1, 1, 1))  # x_0, x_1, ..., x_0, ...
    swapped = _numpy(model.swap(content, style)).reshape((k, k) + x.shape[1:])
    blocks = np.full((k + 1, k + 1, t + 1) + x.shape[2:], 0.5, np.float32)
    blocks[0, 0, :t] = 0.0
    blocks[0, 1:, :t], blocks[1:, 0, :t], blocks[1:, 1:, :t] = x, x, swapped
    # [k+1, k+1, T+1, ...] -> [k+1, (k+1)*(T+1), ...]: a row's blocks side by side.
    return blocks.reshape((k + 1, (k + 1) * (t + 1)) + x.shape[2:])[:, :-1]


def has_disentanglement(model):
    return all(callable(getattr(model, m, None)) for m in
               ("generate_fixed_style", "generate_fixed_content", "swap", "interpolate"))


def disentanglement_grids(model, x, n=8, steps=8):
    """{name: uint8 grid} of the figures of the paper's Fig. 4 and more, for what `model` has.

    fixed_style: n rows from generate_fixed_style (one z per row, f varying along time);
    fixed_content: n rows from generate_fixed_content (one f for all rows);
    swap: `swap_grid` of x; interpolate_f / interpolate_z: `steps` rows from x_0 to x_1
    (x_0 to itself when B = 1) along the content / the style code.
    """
    x = _numpy(x)
    grids = {}
    if callable(getattr(model, "generate_fixed_style", None)):
        grids["fixed_style"] = sequences_grid(model.generate_fixed_style(n))
    if callable(getattr(model, "generate_fixed_content", None)):
        grids["fixed_content"] = sequences_grid(model.generate_fixed_content(n))
    if callable(getattr(model, "swap", None)):
        grids["swap"] = sequences_grid(swap_grid(model, x))
    if callable(getattr(model, "interpolate", None)):
        x_a, x_b = x[:1], x[1:2] if len(x) > 1 else x[:1]
        for code in ("f", "z"):
            grids[f"interpolate_{code}"] = sequences_grid(
                model.interpolate(x_a, x_b, steps=steps, code=code))
    return grids


def disentanglement_figures(model, x, out_dir, n=8):
    """Write the `disentanglement_grids` of `model` as `<out_dir>/<name>.png`; -> {name: path}."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    for name, grid in disentanglement_grids(model, x, n=n).items():
        paths[name] = os.path.join(out_dir, f"{name}.png")
        save_png(grid, paths[name])
    return paths


def write_tensorboard_images(log_dir, step, grids):
    """An image summary of each uint8 grid [H, W, 3] in `grids` at `step`.

    log_dir: a directory (a writer is opened, written and closed) or a `SummaryWriter`.
    """
    own = not isinstance(log_dir, tf.summary.SummaryWriter)
    writer = tf.summary.create_file_writer(os.fspath(log_dir)) if own else log_dir
    with writer.as_default():
        for name, grid in grids.items():
            tf.summary.image(name, np.asarray(grid)[None], step=int(step))
    writer.flush()
    if own:
        writer.close()


class _FrozenSeed:
    """Restore the model's seed state on exit, so that figures neither perturb the training
    noise nor change from epoch to epoch except through the weights."""

    def __init__(self, model):
        gen = getattr(model, "seed_generator", None)
        self.state = getattr(gen, "state", None)

    def __enter__(self):
        self.saved = None if self.state is None else np.array(self.state.numpy())

    def __exit__(self, *exc):
        if self.saved is not None:
            self.state.assign(self.saved)


class FigureCallback(keras.callbacks.Callback):
    """At each epoch end, writes image grids of a fixed held-out batch to TensorBoard.

    Always `samples_reconstructions` (`sample_and_reconstruction_grid`); for models with
    content and style codes also the `disentanglement_grids`. The same noise is used at every
    epoch (the model's seed state is restored afterwards).

    Args:
      x: held-out sequences [B, T, H, W, C] in [0, 1].
      log_dir: where the event files go.
      n: sequences per figure; every: write every `every` epochs.
    """

    def __init__(self, x, log_dir, n=8, every=1):
        super().__init__()
        self.x, self.log_dir, self.n, self.every = _numpy(x), os.fspath(log_dir), n, every
        self.writer = None

    def grids(self):
        with _FrozenSeed(self.model):
            grids = {"samples_reconstructions":
                     sample_and_reconstruction_grid(self.model, self.x, self.n)}
            if has_disentanglement(self.model):
                grids.update(disentanglement_grids(self.model, self.x, self.n))
        return grids

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        if self.writer is None:
            self.writer = tf.summary.create_file_writer(self.log_dir)
        write_tensorboard_images(self.writer, epoch, self.grids())

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
