"""Disentanglement metrics (DESIGN 4): label preservation, swap accuracy, style preservation by
morphometrics, and the beta-VAE's kNN accuracy (the probes: `dvrnn_tf.metrics.probes`).

Each function takes a model (duck-typed: only the methods it names are called), a judge (a
Keras classifier of single images, see `dvrnn_tf.metrics.judge`) and held-out sequences
x [N, T, H, W, C] with their class labels y [N]. Generation noise comes from the model's own
seed generator, set from `seed` for the duration of the call and restored afterwards, so every
number is reproducible and measuring does not change the model.
"""
from __future__ import annotations

import contextlib
import inspect

import numpy as np
from scipy import special
from sklearn.metrics import confusion_matrix

from dvrnn_tf.metrics import judge_scores as js
from dvrnn_tf.metrics import morphometry
from dvrnn_tf.metrics.judge import predict_logits


@contextlib.contextmanager
def seeded(model, seed: int):
    """Run with the model's seed generator at a state given by `seed`; restore it afterwards."""
    gen = getattr(model, "seed_generator", None)
    state = getattr(gen, "state", None)
    if state is None:
        yield
        return
    saved = np.array(state.numpy())
    new = np.zeros_like(saved)
    new.flat[0] = int(seed) * 7919 + 12345
    state.assign(new)
    try:
        yield
    finally:
        state.assign(saved)


def _np(x):
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x, np.float32)


def _batched(fn, n, batch_size):
    """Concatenate fn(start, stop) over [0, n) in steps of batch_size (dict or array outputs)."""
    parts = [fn(i, min(n, i + batch_size)) for i in range(0, n, batch_size)]
    if isinstance(parts[0], dict):
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return np.concatenate(parts)


def _judged(judge, images):
    """(classes int64 [...], softmax float64 [..., K]) of the image judge on images
    [..., H, W, C]: one pass gives both the labels and the field's scores."""
    lead = np.shape(images)[:-3]
    probs = special.softmax(predict_logits(judge, images).astype(np.float64), axis=-1)
    return probs.argmax(-1).reshape(lead), probs.reshape(lead + (-1,))


def _frame_scores(probs, y, seed: int) -> dict:
    """`judge_scores` (accuracy, IS, H(y|x), H(y), n) of judged frames probs [N, T, K] of
    sequences labelled y [N], on a class-balanced subset of the sequences (every frame)."""
    sub = js.class_balanced_subset(y, seed)
    return js.judge_scores(probs[sub].reshape(-1, probs.shape[-1]),
                           np.repeat(np.asarray(y)[sub], probs.shape[1]))


def _accuracy(pred, labels):
    """Overall and per-step share of pred [N, T] equal to labels [N]."""
    hit = pred == np.asarray(labels)[:, None]
    return float(hit.mean()), hit.mean(axis=0).tolist()


def _by_class(pred, labels, num_classes):
    """(accuracy per true class (None for a class with no sequence), confusion counts
    [true class][judged class]) of pred [N, T] against labels [N]."""
    labels = np.broadcast_to(np.asarray(labels)[:, None], pred.shape).ravel()
    confusion = confusion_matrix(labels, pred.ravel(), labels=np.arange(num_classes))
    totals = confusion.sum(axis=1)
    per_class = [float(confusion[c, c] / totals[c]) if totals[c] else None
                 for c in range(num_classes)]
    return per_class, confusion.tolist()


# ---- label preservation -------------------------------------------------------------------

def label_preservation(model, judge, x, y, num_styles: int = 4, seed: int = 0,
                       num_prior_contents: int = 100, batch_size: int = 256) -> dict:
    """Content fixed, style varied: the share judged as the content's class.

    posterior_f: the content of each held-out sequence (its posterior mean f) decoded with
      `num_styles` fresh style paths z ~ p(z_t | h_{t-1}); judged against the sequence's label.
    prior_f: `num_prior_contents` draws f ~ p(f), each decoded with num_styles fresh styles
      (what `generate_fixed_content` does); a prior content has no label, so the score is the
      share of its images judged as its majority class (consistency), and `classes_covered`
      counts the distinct majority classes (a model that always draws one digit scores 1 too).
    scores: the field's IS, H(y|x), H(y) from the judge's softmax (`judge_scores`): for
      posterior_f per style draw on a class-balanced subset of the contents (every frame),
      mean and std over the num_styles draws; for prior_f over every frame (no labels).
    """
    x, y = _np(x), np.asarray(y)
    with seeded(model, seed):
        f = _batched(lambda a, b: _np(model.encode(x[a:b], sample=False)["f_loc"]), len(x),
                     batch_size)
        rep = np.repeat(f, num_styles, axis=0)
        images = _batched(lambda a, b: _np(model.decode(rep[a:b])), len(rep), batch_size)
        pred, probs = _judged(judge, images)  # [N * S, T], [N * S, T, K]
        acc, per_step = _accuracy(pred, np.repeat(y, num_styles))
        draws = [_frame_scores(probs[s::num_styles], y, seed) for s in range(num_styles)]
        # generate_fixed_content(num_styles) for each of num_prior_contents contents, batched.
        prior_f = np.repeat(_np(model.sample_content(num_prior_contents)), num_styles, axis=0)
        prior_images = _batched(lambda a, b: _np(model.decode(prior_f[a:b])), len(prior_f),
                                batch_size)
    shares, majorities = [], []
    prior_pred, prior_probs = _judged(judge, prior_images)
    prior_scores = js.judge_scores(prior_probs.reshape(-1, prior_probs.shape[-1]))
    for p in prior_pred.reshape(num_prior_contents, -1):
        counts = np.bincount(p)
        majorities.append(int(counts.argmax()))
        shares.append(counts.max() / len(p))
    return {"posterior_f": {"accuracy": acc, "per_step": per_step, "num_contents": int(len(x)),
                            "styles_per_content": int(num_styles),
                            "num_images": int(pred.size), "scores": js.mean_and_std(draws),
                            "scores_subset": "class-balanced contents, every frame, per style "
                                             "draw"},
            "prior_f": {"consistency": float(np.mean(shares)) if shares else None,
                        "num_contents": int(num_prior_contents),
                        "styles_per_content": int(num_styles),
                        "classes_covered": int(len(set(majorities))), "scores": prior_scores},
            "chance": 1.0 / max(1, judge.output_shape[-1]), "seed": int(seed)}


# ---- swap ------------------------------------------------------------------------------------

def swap_pairs(y, seed: int = 0):
    """For each sequence i an index j with y[j] != y[i] (a random one), when some exist."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    partner = np.empty(len(y), np.int64)
    for i, label in enumerate(y):
        others = np.flatnonzero(y != label)
        partner[i] = rng.choice(others) if len(others) else i
    return partner


def swap_accuracy(model, judge, x, y, seed: int = 0, batch_size: int = 256) -> dict:
    """Content of sequence A with the style of a sequence B of another class (`model.swap`).

    accuracy: the share of swapped frames judged as A's class, overall and per time step (the
    first frame, decoded from h_0, differs from the rest); style_class_share: the share judged
    as B's class (content leaking through the style code); per_class, confusion: the accuracy
    by A's class and the counts of (A's class, judged class), which say whether the errors are
    a leak (judged as B's class) or a content the style makes ambiguous (e.g. a 1 drawn wide
    reads as a 7); judge_accuracy_on_content: the
    judge's accuracy on A's own frames, the ceiling of `accuracy`; scores: accuracy, IS,
    H(y|x), H(y) from the judge's softmax on a class-balanced subset of the pairs (by A's
    class, every frame), beside the same of A's own frames (`judge_scores_on_content`).
    """
    x, y = _np(x), np.asarray(y)
    partner = swap_pairs(y, seed)
    with seeded(model, seed):
        images = _batched(lambda a, b: _np(model.swap(x[a:b], x[partner[a:b]])), len(x),
                          batch_size)
    pred, probs = _judged(judge, images)
    acc, per_step = _accuracy(pred, y)
    per_class, confusion = _by_class(pred, y, probs.shape[-1])
    style_share, style_per_step = _accuracy(pred, y[partner])
    own_pred, own_probs = _judged(judge, x)
    own, own_per_step = _accuracy(own_pred, y)
    return {"accuracy": acc, "per_step": per_step, "first_step": per_step[0],
            "per_class": per_class, "confusion": confusion,
            "later_steps": float(np.mean(per_step[1:])) if len(per_step) > 1 else None,
            "style_class_share": style_share, "style_class_share_per_step": style_per_step,
            "judge_accuracy_on_content": own, "num_pairs": int(len(x)),
            "scores": _frame_scores(probs, y, seed),
            "judge_scores_on_content": _frame_scores(own_probs, y, seed),
            "num_images": int(pred.size), "chance": 1.0 / max(1, judge.output_shape[-1]),
            "seed": int(seed)}


def _codes(model, x, sample: bool, batch_size: int):
    """model.encode over x in batches; `sample` reaches models whose encode takes it (the
    VRNN's and the beta-VAE's encode always sample, and return the means beside the samples)."""
    takes_sample = "sample" in inspect.signature(model.encode).parameters

    def enc(a, b):
        out = model.encode(x[a:b], sample=sample) if takes_sample else model.encode(x[a:b])
        return {k: _np(v) for k, v in out.items()}
    return _batched(enc, len(x), batch_size)


# ---- style preservation ------------------------------------------------------------------------

def style_preservation(model, x, y, num_styles: int = 20, seed: int = 0,
                       batch_size: int = 256, scale: int = 4) -> dict:
    """Morphometrics of one style decoded with the content of every class.

    Style sources: the z_1..z_T (posterior means) of the first `num_styles` sequences; contents:
    the f (posterior mean) of the first held-out sequence of each class. Every style is decoded
    with every content, and each frame is measured (`morphometry.measure_images`). Style source
    = (sequence, time step). Returns the share of each measure's variance explained by the
    style source and by the content class (eta squared, averaged over measures), each beside
    its chance level (a random grouping of the same sizes), and the raw measures.
    """
    x, y = _np(x), np.asarray(y)
    classes = np.unique(y)
    content_idx = np.array([np.flatnonzero(y == c)[0] for c in classes])
    style_idx = np.arange(min(num_styles, len(x)))
    with seeded(model, seed):
        codes_c = _codes(model, x[content_idx], False, batch_size)
        codes_s = _codes(model, x[style_idx], False, batch_size)
        s, c = len(style_idx), len(content_idx)
        f_c = codes_c["f_loc"]  # [c, f], or [c, S, f]: a model's content slots
        f = np.tile(f_c, (s,) + (1,) * (f_c.ndim - 1))         # [s*c, f]: content varies fastest
        z = np.repeat(codes_s["z_loc"], c, axis=0)             # [s*c, T, z]
        images = _batched(lambda a, b: _np(model.decode(f[a:b], z[a:b])), len(f), batch_size)
    t = images.shape[1]
    images = images.reshape((s, c) + images.shape[1:])        # [s, c, T, H, W, C]
    measures = morphometry.measure_images(images, scale=scale)  # each [s, c, T]
    style_group = (np.arange(s)[:, None, None] * t + np.arange(t)[None, None, :]) \
        * np.ones((1, c, 1), np.int64)
    class_group = np.broadcast_to(classes[None, :, None], (s, c, t))
    shares = morphometry.variance_shares({k: v.ravel() for k, v in measures.items()},
                                         {"style_source": style_group.ravel(),
                                          "content_class": class_group.ravel()})
    return {"style_source": shares["style_source"], "content_class": shares["content_class"],
            "num_styles": int(s), "num_contents": int(c), "seq_len": int(t),
            "num_images": int(images.shape[0] * images.shape[1] * t),
            "unmeasurable_images": int(np.sum(~np.isfinite(measures["slant"]))),
            "seed": int(seed), "measures": {k: v.tolist() for k, v in measures.items()},
            "classes": classes.tolist(), "images": images}


def reconstruction_fidelity(model, x, batch_size: int = 256, scale: int = 4) -> dict:
    """How well the model's reconstructions keep each morphometric of the data.

    Per measure, the squared correlation (R^2) between the measure of each frame of x and of
    its reconstruction (`model.reconstruct`, the decoder's mean at the posterior means). A
    measure the reconstructions do not keep cannot be expected to survive a swap either, so
    this is the yardstick beside `style_preservation`: a low value says the measure is noisy
    on decoded (grey, blurred) images, not that style leaked.
    """
    x = _np(x)
    rec = _batched(lambda a, b: _np(model.reconstruct(x[a:b])), len(x), batch_size)
    data, decoded = (morphometry.measure_images(v, scale=scale) for v in (x, rec))
    out = {}
    for k in data:
        a, b = np.ravel(data[k]), np.ravel(decoded[k])
        ok = np.isfinite(a) & np.isfinite(b)
        out[k] = (float(np.corrcoef(a[ok], b[ok])[0, 1] ** 2)
                  if ok.sum() > 2 and a[ok].std() > 0 and b[ok].std() > 0 else None)
    return {"r2": out, "num_images": int(np.prod(np.shape(data["slant"])))}


# ---- beta-VAE ----------------------------------------------------------------------------------

def knn_latent_accuracy(model, train_images, train_labels, test_images, test_labels,
                        k: int = 5) -> dict:
    """kNN class accuracy of posterior means (`dvrnn_tf.analysis.knn_accuracy`), single images."""
    from dvrnn_tf.analysis import encode_means, knn_accuracy

    train_codes = encode_means(model, train_images)
    test_codes = encode_means(model, test_images)
    return {"accuracy": knn_accuracy(train_codes, train_labels, test_codes, test_labels, k=k),
            "k": int(k), "n_train": int(len(train_labels)), "n_test": int(len(test_labels)),
            # The majority class's share: what answering one class for everything scores.
            "chance": float(np.bincount(np.asarray(test_labels)).max() / len(test_labels))}
