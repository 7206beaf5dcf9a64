"""The field's protocol (DESIGN 6): a sequence judge scores generations with one code fixed.

A source that records which of its static class labels the content code f should carry and
which the dynamics z_{1:T} should carry (`protocol_factors`, e.g. Sprites: body, bottomwear,
topwear, hair; motion) gets three tests of a model with f and z (`encode(x, sample)`,
`decode(f, z=None)`, `sample_content(n)`), all from the posterior means of held-out sequences:

* fixed_dynamics (the "action" test): each sequence's z_{1:T} with f ~ p(f); the dynamics
  factors are judged against the sequence's own;
* fixed_content (the static test): each sequence's f with z_{1:T} from the style prior
  (`decode(f)`); the content factors are judged against the sequence's own;
* factor_swap: f of A with z_{1:T} of B (B differs from A in every judged factor); content
  factors judged against A, dynamics against B.

Beside them, `reconstruction_ceiling`: the judge on decode(f, z) with neither code replaced,
what the decoder keeps of each factor at all (the ceiling of the tests).

Each test reports, per judged factor, the accuracy over every sequence and, on a
class-balanced subset, IS, H(y|x), H(y) (`judge_scores`), as mean and std over `draws` draws of
the prior samples (the swap: of the pairing); beside them, the factors the kept code should
*not* carry, judged against the sequence that lent it (they should fall to chance).
The judge (`source_judge`) is trained once per source and settings and cached; it refuses to
judge below 99.5% on any factor of the real test sequences.
"""
from __future__ import annotations

import pathlib

import numpy as np

from dvrnn_tf.metrics import judge_scores as js
from dvrnn_tf.metrics import sequence_judge as sj

METRICS = ("fixed_dynamics", "fixed_content", "factor_swap")
DEFAULT_DRAWS = 5
# The judge's size and training. On Sprites (8,100 train sequences, 2 CPU cores shared with other
# jobs, load ~7): 26 minutes; 100% on every factor of the 2,664 real test sequences, motion
# IS 8.93 of 9 with H(y|x) 0.008, the static factors IS 5.89-5.94 of 6 with H(y|x) <= 0.017.
# The same size trained 8 epochs at batch 64 and 1e-3 was right as often but unsure (motion
# H(y|x) 0.11, IS 8.04): its confidence, not its accuracy, would have capped every IS.
JUDGE_SETTINGS = dict(epochs=12, batch_size=32, channels=16, lstm_units=64, learning_rate=3e-3)


class ProtocolError(ValueError):
    """A source or a request the protocol cannot measure; the message (one line) says why."""


# ---- which factors, and the judge --------------------------------------------------------------

def factor_roles(source) -> tuple:
    """(content factors, dynamics factors) of `source`: `dvrnn_tf.data.Factor`s, static and
    categorical, as the source declares them in `protocol_factors`; ProtocolError otherwise."""
    factors = {f.name: f for f in source.spec().factors}
    declared = getattr(source, "protocol_factors", None) or {}
    have = ", ".join(f"{n} ({f.kind})" for n, f in factors.items()) or "no factor labels"
    if not declared.get("content") or not declared.get("dynamics"):
        raise ProtocolError(
            f"{source.dataset} has no factor labels the protocol can judge: it needs static "
            f"class labels of content (carried by f) and of dynamics (carried by z), as sprites "
            f"declares them (body, bottomwear, topwear, hair; motion); {source.dataset} has "
            f"{have}")
    roles = []
    for role in ("content", "dynamics"):
        chosen = []
        for name in declared[role]:
            f = factors.get(name)
            if f is None or f.per_frame or not f.categorical:
                raise ProtocolError(f"{source.dataset} declares {role} factor {name!r} for the "
                                    f"protocol, but its labels are {have}: the protocol judges "
                                    f"static class labels")
            chosen.append(f)
        roles.append(tuple(chosen))
    return tuple(roles)


def why_not(source) -> str:
    """Why the protocol does not apply to `source` (for the evaluator's messages)."""
    try:
        factor_roles(source)
    except ProtocolError as e:
        return "needs " + str(e).split(": it needs ", 1)[-1]
    return f"is not among the metrics {source.dataset} supports"


def judge_arrays(source, split: str):
    """(x [N, T, H, W, C], {label: [N]}) of a split to train or test the judge on: the prepared
    uint8 arrays when the source offers them (`raw_arrays`, memory-mapped), else its floats."""
    raw = getattr(source, "raw_arrays", None)
    if raw is not None:
        return raw(split)
    sampler = source.split(split)
    if getattr(sampler, "binarize", "none") != "none":
        raise ProtocolError(f"{source.dataset} gives binarized sequences and no raw arrays: "
                            f"its judge must learn from the data as recorded")
    return sampler.arrays()


def judge_folder(source, judge_dir=None) -> pathlib.Path:
    """Where the sequence judges of `source` are cached: ``<judge_dir>/<dataset>-sequence``
    (judge_dir: `dvrnn_tf.metrics.judge.default_judge_dir()` unless given)."""
    from dvrnn_tf.metrics.judge import default_judge_dir

    root = pathlib.Path(judge_dir).expanduser().resolve() if judge_dir else default_judge_dir()
    return root / (source.dataset.replace("/", "_").replace(":", "_") + "-sequence")


def source_judge(source, *, judge_dir=None, seed: int = 0, epochs: int = 0, verbose=0,
                 min_accuracy: float = sj.MIN_ACCURACY, **settings):
    """The sequence judge of `source` (content and dynamics factors), cached; -> (model, info).

    Trained on the train split, validated on validation, measured on test
    (`sequence_judge.load_or_train_sequence_judge`, whose key covers the settings, the seed and
    the data). epochs 0 and omitted settings: `JUDGE_SETTINGS`. Raises JudgeNotGoodEnough (one
    line) when a factor's accuracy on the real test sequences is below `min_accuracy`.
    """
    content, dynamics = factor_roles(source)
    factors = tuple(sj.Factor(f.name, int(f.num_classes)) for f in content + dynamics)
    recipe = {**JUDGE_SETTINGS, **settings}
    if epochs:
        recipe["epochs"] = epochs
    data = []
    for split in ("train", "validation", "test"):
        x, labels = judge_arrays(source, split)
        data += [x, {f.name: np.asarray(labels[f.name]).astype(np.int64) for f in factors}]
    model, info = sj.load_or_train_sequence_judge(
        judge_folder(source, judge_dir), *data, factors, seed=seed, verbose=verbose,
        min_accuracy=min_accuracy, **recipe)
    return model, {**info, "dataset": source.dataset,
                   "content_factors": [f.name for f in content],
                   "dynamics_factors": [f.name for f in dynamics]}


def judge_record(info: dict) -> dict:
    """What eval.json keeps of a judge: where, which key, its settings and time, and its own
    accuracy and scores on the real test sequences (the ceilings of every test)."""
    keep = ("path", "key", "recipe", "recipe_version", "train_seconds", "cached", "min_accuracy",
            "test_accuracy", "test_scores", "train_sequences", "val_sequences",
            "test_sequences", "content_factors", "dynamics_factors")
    return {k: info[k] for k in keep if k in info}


def judge_predictor(model, batch_size: int = 64):
    """images [B, T, H, W, C] in [0, 1] -> {factor: probs [B, K]} of a sequence judge."""
    return lambda images: sj.judge_predict(model, images, batch_size)


# ---- the tests ---------------------------------------------------------------------------------

def _np(v):
    return np.asarray(v.numpy() if hasattr(v, "numpy") else v, np.float32)


def encode_codes(model, batches):
    """Posterior means of every sequence: ({"f": [N, f_dim], "z": [N, T, z_dim]},
    {label: [N]}) from batches of (x [B, T, H, W, C], {label: [B, ...]})."""
    fs, zs, labels = [], [], {}
    for x, y in batches:
        q = model.encode(x, sample=False)
        fs.append(_np(q["f_loc"]))
        zs.append(_np(q["z_loc"]))
        for k, v in y.items():
            labels.setdefault(k, []).append(np.asarray(v))
    if not fs:
        raise ProtocolError("the protocol got no held-out sequences to encode")
    return ({"f": np.concatenate(fs), "z": np.concatenate(zs)},
            {k: np.concatenate(v) for k, v in labels.items()})


def swap_partners(labels, names, seed: int) -> np.ndarray:
    """For each sequence i a partner j differing from it in every factor of `names` (drawn
    with `seed`); sequences that have none get one differing in as many as possible."""
    y = np.stack([np.asarray(labels[n]) for n in names], axis=1)           # [N, F]
    rng = np.random.default_rng(seed)
    partner = np.empty(len(y), np.int64)
    for i in range(len(y)):
        differ = np.sum(y != y[i], axis=1)
        differ[i] = -1
        partner[i] = rng.choice(np.flatnonzero(differ == differ.max()))
    return partner


def _judged(predict, make, n: int, batch_size: int) -> dict:
    """{factor: probs [n, K]} of the generations make(a, b) -> [b - a, T, H, W, C]."""
    parts = [predict(_np(make(a, min(n, a + batch_size)))) for a in range(0, n, batch_size)]
    return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}


def _draw_scores(probs, truth, judged, others, seed: int) -> dict:
    """One draw: {factor: scores} for the judged factors (accuracy over all; IS, H(y|x),
    H(y) and accuracy on a class-balanced subset drawn with `seed`) and the others' accuracy."""
    out = {}
    for f in judged:
        p, y = probs[f.name], truth[f.name]
        sub = js.class_balanced_subset(y, seed)
        s = js.judge_scores(p[sub], y[sub])
        out[f.name] = {"accuracy": float(np.mean(p.argmax(1) == y)),
                       "balanced_accuracy": s["accuracy"], "n_balanced": s["n"],
                       **{k: s[k] for k in ("inception_score", "h_y_given_x", "h_y")}}
    for f in others:
        out[f.name] = {"accuracy": float(np.mean(probs[f.name].argmax(1) == truth[f.name]))}
    return out


def run_test(test: str, model, predict, codes, labels, roles, *, draws: int = DEFAULT_DRAWS,
             seed: int = 0, batch_size: int = 64) -> dict:
    """One test of `METRICS` on the codes of N held-out sequences (`encode_codes`).

    predict: images -> {factor: probs} (`judge_predictor`); roles: (content, dynamics)
    factors (`factor_roles`). Draw d runs with the model's seed generator at seed + d (the
    swap: partners drawn with seed + d). Returns the per-factor mean/std/values, the
    not-kept factors' accuracy beside their chance, and what was drawn.
    """
    from dvrnn_tf.metrics.disentanglement import seeded

    if test not in METRICS:
        raise ProtocolError(f"unknown protocol test {test!r}; choose from {', '.join(METRICS)}")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ProtocolError(f"draws must be a positive integer, got {draws!r}")
    content, dynamics = roles
    judged, others = {"fixed_dynamics": (dynamics, content), "fixed_content": (content, dynamics),
                      "factor_swap": (content + dynamics, ())}[test]
    n = len(codes["f"])
    own = {f.name: np.asarray(labels[f.name]) for f in content + dynamics}
    per_draw = []
    for d in range(draws):
        with seeded(model, seed + d):
            probs, truth, other = _generate(test, model, predict, codes, own, roles, seed + d,
                                            batch_size)
        scored = _draw_scores(probs, truth, judged, others, seed)
        for name, y in other.items():  # the swap: against the sequence that lent the other code
            scored[name]["other_accuracy"] = float(np.mean(probs[name].argmax(1) == y))
        per_draw.append(scored)
    return _summary(test, per_draw, judged, others, n, draws, seed)


def _generate(test, model, predict, codes, own, roles, seed, batch_size):
    """(probs, truth, other) of one draw: the judge's {factor: probs [N, K]} of the test's
    generations, the labels each factor should show, and (swap) those it should not."""
    f_post, z_post, n = codes["f"], codes["z"], len(codes["f"])
    if test == "fixed_dynamics":
        f = _np(model.sample_content(n))
        make = lambda a, b: model.decode(f[a:b], z_post[a:b])  # noqa: E731
        return _judged(predict, make, n, batch_size), own, {}
    if test == "fixed_content":
        make = lambda a, b: model.decode(f_post[a:b])  # noqa: E731  # z from the style prior
        return _judged(predict, make, n, batch_size), own, {}
    content, dynamics = roles
    partner = swap_partners(own, [f.name for f in content + dynamics], seed)
    make = lambda a, b: model.decode(f_post[a:b], z_post[partner[a:b]])  # noqa: E731
    names = {f.name for f in dynamics}
    truth = {k: (y[partner] if k in names else y) for k, y in own.items()}
    other = {k: (y if k in names else y[partner]) for k, y in own.items()}
    return _judged(predict, make, n, batch_size), truth, other


def reconstruction_ceiling(model, predict, codes, labels, roles, *, seed: int = 0,
                           batch_size: int = 64) -> dict:
    """The judge on the model's reconstructions, decode(f, z) at both posterior means, every
    factor against the sequence's own: what the decoder keeps of each factor with no code
    replaced, the ceiling of the tests (a factor it loses here no disentangling can keep)."""
    content, dynamics = roles
    factors = content + dynamics
    own = {f.name: np.asarray(labels[f.name]) for f in factors}
    make = lambda a, b: model.decode(codes["f"][a:b], codes["z"][a:b])  # noqa: E731
    scored = _draw_scores(_judged(predict, make, len(codes["f"]), batch_size), own, factors,
                          (), seed)
    return {"factors": {f.name: {**scored[f.name], "chance": 1.0 / f.num_classes}
                        for f in factors},
            "protocol": "decode(f, z) at each sequence's posterior means, every factor judged "
                        "against the sequence: the ceiling of the tests",
            "num_sequences": int(len(codes["f"])), "seed": int(seed),
            "balanced_subset": f"class-balanced per factor, seed {int(seed)}"}


_AGAINST = {
    "fixed_dynamics": ("each sequence's posterior z_{1:T} (means) with f ~ p(f): dynamics "
                       "judged against the sequence; content against it too (should be chance)"),
    "fixed_content": ("each sequence's posterior f (mean) with z_{1:T} from the style prior: "
                      "content judged against the sequence; dynamics too (should be chance)"),
    "factor_swap": ("f of A with z_{1:T} of B (posterior means; B differs from A in every "
                    "judged factor): content judged against A, dynamics against B; "
                    "other_accuracy: against the other sequence (should be chance)"),
}


def _summary(test, per_draw, judged, others, n, draws, seed) -> dict:
    out = {"factors": {}, "other_factors": {}, "protocol": _AGAINST[test],
           "num_sequences": int(n), "draws": int(draws), "seed": int(seed),
           "seeds": [int(seed) + d for d in range(draws)],
           "draws_vary": "the partner pairing" if test == "factor_swap" else "the prior samples",
           "balanced_subset": f"class-balanced per factor, seed {int(seed)}"}
    for f in judged:
        out["factors"][f.name] = {**js.mean_and_std([d[f.name] for d in per_draw]),
                                  "chance": 1.0 / f.num_classes}
    for f in others:
        out["other_factors"][f.name] = {**js.mean_and_std([d[f.name] for d in per_draw]),
                                        "chance": 1.0 / f.num_classes}
    return out


# ---- in `python -m dvrnn_tf.evaluate` ------------------------------------------------------------

def held_out_batches(held_out, limit: int = 0, batch_size: int = 64):
    """(x, labels) numpy batches of a split: `limit` sequences spread over it (0: all of it,
    streamed, never the whole split in memory as floats)."""
    if limit and limit < held_out.num_sequences:
        x, labels = held_out.examples(limit)
        for a in range(0, len(x), batch_size):
            yield x[a:a + batch_size], {k: v[a:a + batch_size] for k, v in labels.items()}
        return
    for x, labels in held_out.dataset(batch_size, training=False):
        yield x.numpy(), {k: v.numpy() for k, v in labels.items()}


def measure(model, source, held_out, tests, *, split: str, judge_dir=None, judge_seed: int = 0,
            judge_epochs: int = 0, sequences: int = 0, draws: int = DEFAULT_DRAWS,
            seed: int = 0, batch_size: int = 64) -> dict:
    """{"sequence_judge": its record, "reconstruction": `reconstruction_ceiling`, test:
    `run_test`'s result for each of `tests`}, every test on the same `sequences` held-out
    sequences of `held_out` (0: all of the split)."""
    import time

    roles = factor_roles(source)
    start = time.perf_counter()
    judge, info = source_judge(source, judge_dir=judge_dir, seed=judge_seed, epochs=judge_epochs)
    record = {**judge_record(info), "load_or_train_seconds": time.perf_counter() - start}
    codes, labels = encode_codes(model, held_out_batches(held_out, sequences, batch_size))
    predict = judge_predictor(judge, batch_size)
    out = {"sequence_judge": record, "reconstruction": reconstruction_ceiling(
        model, predict, codes, labels, roles, seed=seed, batch_size=batch_size)}
    for test in tests:
        start = time.perf_counter()
        r = run_test(test, model, predict, codes, labels, roles, draws=draws, seed=seed,
                     batch_size=batch_size)
        r.update(split=split, seconds=time.perf_counter() - start, judge={
            "key": record["key"], "path": record.get("path"),
            "test_accuracy": {f: record["test_accuracy"][f] for f in r["factors"]},
            "test_scores": {f: record["test_scores"][f] for f in r["factors"]}})
        out[test] = r
    return out


def figure_sequences(model, x, seed: int = 0, rows: int = 3, samples: int = 2) -> dict:
    """Sequences for the report, {test: [R, T, H, W, C]}: per sequence of x picked (`rows`,
    spread over x), the sequence, then `samples` generations of the test (the swap: A, B and
    f of A with z of B)."""
    pick = np.unique(np.linspace(0, len(x) - 1, min(rows, len(x))).round().astype(int))
    xs = _np(x[pick])
    q = model.encode(xs, sample=False)
    f, z = _np(q["f_loc"]), _np(q["z_loc"])
    from dvrnn_tf.metrics.disentanglement import seeded

    out = {t: [] for t in METRICS}
    with seeded(model, seed):
        for i in range(len(xs)):
            new_f = _np(model.sample_content(samples))
            out["fixed_dynamics"] += [xs[i:i + 1], _np(model.decode(
                new_f, np.repeat(z[i:i + 1], samples, 0)))]
            out["fixed_content"] += [xs[i:i + 1], _np(model.decode(
                np.repeat(f[i:i + 1], samples, 0)))]
            j = (i + 1) % len(xs)
            out["factor_swap"] += [xs[i:i + 1], xs[j:j + 1],
                                   _np(model.decode(f[i:i + 1], z[j:j + 1]))]
    return {t: np.clip(np.concatenate(v), 0.0, 1.0) for t, v in out.items()}


def summary(result) -> dict:
    """Headline numbers of the tests in an evaluation's result, flat: per judged factor the
    mean accuracy; for the fixed tests also the mean IS and H(y|x); the reconstructions'
    accuracy per factor (`reconstruction_ceiling`)."""
    s = {f"reconstruction[{name}]": scores["accuracy"]
         for name, scores in result.get("reconstruction", {}).get("factors", {}).items()}
    for test in METRICS:
        for name, scores in result.get(test, {}).get("factors", {}).items():
            s[f"{test}[{name}]"] = scores["accuracy"]["mean"]
            if test != "factor_swap":
                s[f"{test}_is[{name}]"] = scores["inception_score"]["mean"]
                s[f"{test}_h_y_given_x[{name}]"] = scores["h_y_given_x"]["mean"]
    return s
