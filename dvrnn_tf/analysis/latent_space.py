"""What the first paper did with its beta-VAE (section 4.1, Fig. 3; DESIGN 2.3).

For a trained `BetaVAE` and labelled images: the posterior means of the test images scattered
and coloured by class, the k-nearest-neighbour class accuracy in latent space, and the decoded
images of the training latents nearest to some test latents.

Figures are drawn on `matplotlib.figure.Figure` objects with the Agg canvas, never through
pyplot: no global backend switch, no window, safe in threads and on headless machines.
"""
import json
import os

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors


def encode_means(model, images, batch_size=512):
    """Posterior means of single images.

    images: [N, H, W, C] float in [0, 1]. Each image is fed as a sequence of one frame
    ([b, 1, H, W, C]); the beta-VAE treats frames independently, so T does not matter.
    Returns float32 [N, z_dim].
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"`images` must be [N, H, W, C], got shape {images.shape}")
    codes = [np.asarray(model.encode(images[i:i + batch_size, None])["z_loc"])[:, 0]
             for i in range(0, len(images), batch_size)]
    if not codes:
        return np.zeros((0, model.z_dim), np.float32)
    return np.concatenate(codes).astype(np.float32)


def knn_accuracy(train_codes, train_labels, test_codes, test_labels, k=5):
    """Share of test codes whose k nearest training codes (majority vote) give their class."""
    classifier = KNeighborsClassifier(n_neighbors=k).fit(train_codes, np.asarray(train_labels))
    return float(classifier.score(test_codes, np.asarray(test_labels)))


def _new_figure(width, height):
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return str(path)


def scatter_by_class(codes, labels, path, title="beta-VAE latent space"):
    """Scatter of 2-D codes coloured by class (paper Fig. 3); writes a PNG, returns its path.

    codes: [N, z_dim] with z_dim >= 1; for z_dim > 2 only dimensions 0 and 1 are drawn (the
    title says so), for z_dim == 1 the code is drawn against the class.
    """
    codes, labels = np.asarray(codes), np.asarray(labels)
    z_dim = codes.shape[1]
    if z_dim == 1:
        xy, ylabel = np.stack([codes[:, 0], labels], axis=1), "class"
    else:
        xy, ylabel = codes[:, :2], "z[1]"
    if z_dim > 2:
        title = f"{title} (dims 0 and 1 of {z_dim})"
    fig = _new_figure(6, 6)
    ax = fig.subplots()
    classes = np.unique(labels)
    cmap = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
    for i, c in enumerate(classes):
        sel = labels == c
        ax.scatter(xy[sel, 0], xy[sel, 1], s=4, alpha=0.6, label=str(c), color=cmap(i % cmap.N))
    ax.set_xlabel("z[0]")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(markerscale=3, fontsize="small", loc="best", title="class")
    return _save(fig, path)


def _tiles(images):
    """[R, K, H, W, C] in [0, 1] -> one [R*(H+1)-1, K*(W+1)-1, C'] mosaic, 1-pixel gaps."""
    r, k, h, w, c = images.shape
    grid = np.ones((r * (h + 1) - 1, k * (w + 1) - 1, c), np.float32)
    for i in range(r):
        for j in range(k):
            grid[i * (h + 1):i * (h + 1) + h, j * (w + 1):j * (w + 1) + w] = images[i, j]
    return grid[..., 0] if c == 1 else grid


def nearest_latent_decodes(model, codes, query_codes, k=8, path=None, labels=None,
                           query_labels=None):
    """Decode the k training latents nearest to each query latent.

    codes: [N, z_dim] training latents; query_codes: [Q, z_dim]; labels [N] and query_labels
    [Q], if given, title each row (query class and the classes of its neighbours).
    Writes a grid PNG to `path` (if given): one row per query, its decoded query latent first,
    then the k neighbours nearest first. Returns the neighbours' decodes [Q, k, H, W, C].
    """
    codes, query_codes = np.asarray(codes), np.asarray(query_codes)
    index = NearestNeighbors(n_neighbors=k).fit(codes).kneighbors(
        query_codes, return_distance=False)  # [Q, k]
    # [Q, k, z_dim] is a "sequence" of k codes per query: decode gives [Q, k, H, W, C].
    decoded = np.asarray(model.decode(codes[index].astype(np.float32)))
    if path is not None:
        query_images = np.asarray(model.decode(query_codes[:, None].astype(np.float32)))
        fig = _new_figure(1 + 0.6 * (k + 1), 0.8 + 0.6 * len(query_codes))
        ax = fig.subplots()
        ax.imshow(_tiles(np.concatenate([query_images, decoded], axis=1)), cmap="gray",
                  vmin=0.0, vmax=1.0)
        ax.set_xticks([])
        h, w = decoded.shape[2:4]
        ax.axvline(w + 0.5, color="red", linewidth=1.5)  # query | neighbours
        if labels is not None:
            rows = [f"{'' if query_labels is None else str(query_labels[i]) + ': '}"
                    + " ".join(str(labels[j]) for j in index[i]) for i in range(len(index))]
            ax.set_yticks([i * (h + 1) + h / 2 for i in range(len(index))], rows,
                          fontsize="x-small")
        else:
            ax.set_yticks([])
        ax.set_title(f"query decode | its {k} nearest training latents, decoded", fontsize="small")
        _save(fig, path)
    return decoded


def _subsample(images, labels, max_points, rng):
    if max_points is None or len(labels) <= max_points:
        return images, labels
    keep = np.sort(rng.choice(len(labels), size=max_points, replace=False))
    return images[keep], labels[keep]


def _queries_by_class(labels, n, rng):
    """Up to n indices into labels, taking the classes in turn so every class shows up."""
    by_class = [list(rng.permutation(np.flatnonzero(labels == c))) for c in np.unique(labels)]
    queries = []
    while len(queries) < n and any(by_class):
        for idx in by_class:
            if idx and len(queries) < n:
                queries.append(idx.pop())
    return np.asarray(queries, dtype=np.int64)


def analyze(model, train_set, test_set, out_dir, seed=0, max_points=10000, k=5,
            n_queries=10, n_neighbors=8, batch_size=512):
    """The section 4.1 analysis: kNN accuracy, latent scatter and nearest-latent decodes.

    train_set, test_set: objects with `as_float()` ([N, H, W, C] in [0, 1]) and `labels`
    ([N]), such as `dvrnn_tf.data.ImageSet`. At most `max_points` images of each set are used
    (a seeded random subset; None: all). Queries are test latents, one per class in turn.
    Writes latent_scatter.png, nearest_latents.png and latent_space.json to `out_dir`;
    returns the JSON's content: the metrics with their seed and data split, and the paths.
    """
    rng = np.random.default_rng(seed)
    train_x, train_y = _subsample(train_set.as_float(), np.asarray(train_set.labels),
                                  max_points, rng)
    test_x, test_y = _subsample(test_set.as_float(), np.asarray(test_set.labels), max_points, rng)
    train_codes = encode_means(model, train_x, batch_size)
    test_codes = encode_means(model, test_x, batch_size)
    os.makedirs(out_dir, exist_ok=True)
    scatter = scatter_by_class(test_codes, test_y, os.path.join(out_dir, "latent_scatter.png"),
                               title=f"beta-VAE test latents (z_dim={test_codes.shape[1]})")
    queries = _queries_by_class(test_y, n_queries, rng)
    nearest = os.path.join(out_dir, "nearest_latents.png")
    nearest_latent_decodes(model, train_codes, test_codes[queries], k=n_neighbors, path=nearest,
                           labels=train_y, query_labels=test_y[queries])
    _, counts = np.unique(test_y, return_counts=True)
    result = {
        "knn_accuracy": knn_accuracy(train_codes, train_y, test_codes, test_y, k=k),
        "k": int(k), "n_train": int(len(train_y)), "n_test": int(len(test_y)),
        "chance_accuracy": float(counts.max() / counts.sum()),  # majority-class baseline
        "z_dim": int(test_codes.shape[1]), "seed": int(seed),
        "dataset": getattr(test_set, "name", None),
        "train_split": getattr(train_set, "split", "train"),
        "test_split": getattr(test_set, "split", "test"),
        "scatter_png": scatter, "nearest_latents_png": nearest,
    }
    with open(os.path.join(out_dir, "latent_space.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result
