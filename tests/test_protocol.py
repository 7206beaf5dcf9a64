"""The field's protocol (DESIGN 6): which code each test keeps, what it judges against, the
scores of real sequences as generations, the reconstruction ceiling, the Sprites judge's data,
and clear refusals (inside `python -m dvrnn_tf.evaluate`: test_protocol_evaluate.py).

Stub models whose decoder reads only one code show, by value, that fixed dynamics keeps z and
draws f, fixed content keeps f and draws z, and the swap takes f from A and z from B. No test
trains the real Sprites judge: a stub judge reads the stub's pixels, and a small judge learns
the synthetic videos of test_sequence_judge.
"""
import math

import numpy as np
import pytest

from dvrnn_tf.data import Factor, open_source
from dvrnn_tf.metrics import judge_scores as js
from dvrnn_tf.metrics import protocol
from dvrnn_tf.metrics import sequence_judge as sj
from test_sequence_judge import FACTORS as VIDEO_FACTORS
from test_sequence_judge import synthetic_videos
from shared_data import SPRITES_DIR

SPRITES = str(SPRITES_DIR)
ROLES = ((Factor("colour", 3),), (Factor("motion", 3),))
T = 3


class OneCodeModel:
    """A model of a colour (f) and a motion (z): pixel (0, 0) of every frame shows the colour
    class / 2, pixel (0, 1) the motion class / 2. Its decoder reads only `reads` ("f", "z" or
    "both"); a code it does not read shows as class 0. Codes are one-hot x 3 (argmax: class)."""

    def __init__(self, reads, seed=0):
        self.reads, self.rng = reads, np.random.default_rng(seed)

    def encode(self, x, sample=True):
        assert not sample, "the protocol reads posterior means"
        x = np.asarray(x)
        colour, motion = (np.rint(x[:, :, 0, k, 0] * 2).astype(int) for k in (0, 1))
        return {"f_loc": np.eye(3)[colour[:, 0]] * 3.0, "z_loc": np.eye(3)[motion] * 3.0}

    def sample_content(self, n):
        return self.rng.normal(size=(n, 3))

    def decode(self, f, z=None):
        f = np.asarray(f)
        z = self.rng.normal(size=(len(f), T, 3)) if z is None else np.asarray(z)
        colour = f.argmax(-1)[:, None] * (self.reads in ("f", "both"))
        motion = z.argmax(-1) * (self.reads in ("z", "both"))
        return render(np.broadcast_to(colour, motion.shape), motion)


def render(colour, motion):
    """colour, motion [N, T] classes -> [N, T, 2, 2, 1] frames."""
    x = np.zeros(colour.shape + (2, 2, 1), np.float32)
    x[:, :, 0, 0, 0], x[:, :, 0, 1, 0] = colour / 2, motion / 2
    return x


def stub_judge(images):
    """Confident one-hot judgements of the pixels `render` writes (frame 0)."""
    return {name: np.eye(3)[np.rint(images[:, 0, 0, k, 0] * 2).astype(int)]
            for k, name in enumerate(("colour", "motion"))}


@pytest.fixture(scope="module")
def held_out():
    colour, motion = (v.ravel() for v in np.meshgrid(np.arange(3), np.arange(3)))
    colour, motion = np.tile(colour, 4), np.tile(motion, 4)          # 36, balanced, all pairs
    x = render(np.repeat(colour[:, None], T, 1), np.repeat(motion[:, None], T, 1))
    return x, {"colour": colour, "motion": motion}


def _run(test, reads, held_out, draws=5):
    model = OneCodeModel(reads)
    x, labels = held_out
    codes, got = protocol.encode_codes(model, [(x[:20], {k: v[:20] for k, v in labels.items()}),
                                               (x[20:], {k: v[20:] for k, v in labels.items()})])
    np.testing.assert_array_equal(got["motion"], labels["motion"])
    return protocol.run_test(test, model, stub_judge, codes, got, ROLES, draws=draws, seed=3,
                             batch_size=7)


def test_fixed_dynamics_keeps_z_and_draws_f(held_out):
    out = _run("fixed_dynamics", "z", held_out)
    motion = out["factors"]["motion"]
    assert motion["accuracy"]["values"] == [1.0] * 5 and motion["accuracy"]["std"] == 0.0
    assert motion["inception_score"]["mean"] == pytest.approx(3.0)
    assert motion["h_y_given_x"]["mean"] == pytest.approx(0.0, abs=1e-12)
    assert motion["h_y"]["mean"] == pytest.approx(math.log(3))
    assert motion["n_balanced"]["mean"] == 36 and out["num_sequences"] == 36
    # The colour comes from nowhere (this decoder ignores f): class 0, a third of the labels.
    assert out["other_factors"]["colour"]["accuracy"]["mean"] == pytest.approx(1 / 3)
    assert out["seeds"] == [3, 4, 5, 6, 7] and out["draws"] == 5

    # A decoder that reads only f: the kept z is lost, the drawn f differs from draw to draw.
    out = _run("fixed_dynamics", "f", held_out)
    assert out["factors"]["motion"]["accuracy"]["mean"] == pytest.approx(1 / 3)
    assert out["factors"]["motion"]["inception_score"]["mean"] == pytest.approx(1.0)
    colour = out["other_factors"]["colour"]["accuracy"]
    assert len(set(colour["values"])) > 1 and colour["mean"] < 0.7


def test_fixed_content_keeps_f_and_draws_z(held_out):
    out = _run("fixed_content", "both", held_out)
    colour = out["factors"]["colour"]
    assert colour["accuracy"]["values"] == [1.0] * 5
    assert colour["inception_score"]["mean"] == pytest.approx(3.0)
    motion = out["other_factors"]["motion"]["accuracy"]
    assert len(set(motion["values"])) > 1 and motion["mean"] < 0.7   # z drawn afresh

    # A decoder that reads only z: the kept f is lost (colour class 0 throughout).
    out = _run("fixed_content", "z", held_out)
    assert out["factors"]["colour"]["accuracy"]["mean"] == pytest.approx(1 / 3)
    assert out["factors"]["colour"]["h_y"]["mean"] == pytest.approx(0.0, abs=1e-12)


def test_the_swap_takes_content_from_a_and_dynamics_from_b(held_out):
    out = _run("factor_swap", "both", held_out)
    for name in ("colour", "motion"):
        scores = out["factors"][name]
        assert scores["accuracy"]["values"] == [1.0] * 5, name
        assert scores["other_accuracy"]["values"] == [0.0] * 5, name  # partners differ
    assert out["draws_vary"] == "the partner pairing"
    # A decoder that reads only z: B's motion arrives, A's colour does not.
    out = _run("factor_swap", "z", held_out)
    assert out["factors"]["motion"]["accuracy"]["mean"] == 1.0
    assert out["factors"]["colour"]["accuracy"]["mean"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("reads, colour, motion", [("both", 1.0, 1.0), ("z", 1 / 3, 1.0),
                                                   ("f", 1.0, 1 / 3)])
def test_the_reconstruction_ceiling_judges_what_the_decoder_keeps(held_out, reads, colour,
                                                                   motion):
    """decode(f, z) at the posterior means, every factor against the sequence's own: a factor
    the decoder drops is lost here, whichever code carries it."""
    model = OneCodeModel(reads)
    x, labels = held_out
    codes, got = protocol.encode_codes(model, [(x, labels)])
    out = protocol.reconstruction_ceiling(model, stub_judge, codes, got, ROLES, batch_size=5)
    assert out["num_sequences"] == 36
    assert out["factors"]["colour"]["accuracy"] == pytest.approx(colour)
    assert out["factors"]["motion"]["accuracy"] == pytest.approx(motion)
    kept = out["factors"]["motion" if reads == "z" else "colour"]
    assert kept["inception_score"] == pytest.approx(3.0) and kept["chance"] == pytest.approx(1 / 3)
    assert protocol.summary({"reconstruction": out})["reconstruction[colour]"] == \
        pytest.approx(colour)


def test_swap_partners_differ_in_every_factor_and_follow_the_seed(held_out):
    _, labels = held_out
    p = protocol.swap_partners(labels, ["colour", "motion"], seed=1)
    for name in ("colour", "motion"):
        assert np.all(labels[name][p] != labels[name])
    assert np.array_equal(p, protocol.swap_partners(labels, ["colour", "motion"], seed=1))
    assert not np.array_equal(p, protocol.swap_partners(labels, ["colour", "motion"], seed=2))


@pytest.fixture(scope="module")
def video_judge():
    """A judge of the synthetic videos (3 factors), untrained but made sure of itself (its heads'
    weights x 200): its own accuracy and scores on real sequences, whatever they are, are what
    the protocol must find when it is given those sequences as generations."""
    import keras

    keras.utils.set_random_seed(1)
    x, labels = synthetic_videos(240, 2)
    model = sj.build_sequence_judge((16, 16, 3), 4, VIDEO_FACTORS, channels=8, lstm_units=16)
    for f in VIDEO_FACTORS:
        kernel, bias = model.get_layer(f.name).get_weights()
        model.get_layer(f.name).set_weights([kernel * 200, bias])
    own = sj.judge_real_scores(model, x, labels, VIDEO_FACTORS)
    assert own["colour"]["inception_score"] > 1.1 and own["colour"]["h_y_given_x"] > 0.1
    return model, own, (x, labels)


class Replay:
    """A decoder that returns real test sequences: f (or z) holds the index of the one."""

    def __init__(self, x, reads):
        self.x, self.reads = x.astype(np.float32) / 255, reads

    def encode(self, x, sample=False):
        index = np.asarray(x)[:, 0, 0, 0, :1].astype(np.float32)         # set by the test
        return {"f_loc": index, "z_loc": np.repeat(index[:, None], self.x.shape[1], 1)}

    def sample_content(self, n):
        return np.zeros((n, 1))

    def decode(self, f, z=None):
        code = np.asarray(f)[:, 0] if self.reads == "f" else np.asarray(z)[:, 0, 0]
        return self.x[code.astype(int)]


def test_real_test_sequences_as_generations_score_the_judges_accuracy(video_judge):
    model, own_scores, (x, labels) = video_judge
    index = np.zeros(x.shape[:2] + (1, 1, 1), np.float32)
    index[:, 0, 0, 0, 0] = np.arange(len(x))
    predict = protocol.judge_predictor(model, batch_size=50)
    roles = ((VIDEO_FACTORS[0], VIDEO_FACTORS[1]), (VIDEO_FACTORS[2],))
    probs = sj.judge_predict(model, x)
    for test, reads, names in (("fixed_content", "f", ("colour", "background")),
                               ("fixed_dynamics", "z", ("motion",))):
        replay = Replay(x, reads)
        codes, got = protocol.encode_codes(replay, [(index, labels)])
        out = protocol.run_test(test, replay, predict, codes, got, roles, draws=2, seed=0,
                                batch_size=64)
        assert set(out["factors"]) == set(names)
        for name in names:
            scores = out["factors"][name]
            assert scores["accuracy"]["mean"] == pytest.approx(own_scores[name]["accuracy"])
            sub = js.class_balanced_subset(labels[name], 0)
            own = js.judge_scores(probs[name][sub], labels[name][sub])
            assert scores["inception_score"]["mean"] == pytest.approx(own["inception_score"],
                                                                      rel=1e-5)
            assert scores["h_y_given_x"]["mean"] == pytest.approx(own["h_y_given_x"], abs=1e-5)
            assert scores["inception_score"]["std"] == pytest.approx(0.0, abs=1e-9)


def test_sources_without_the_factors_are_refused_in_one_line(tmp_path):
    for dataset in ("digits", "moving_mnist"):
        source = open_source(dataset)
        with pytest.raises(protocol.ProtocolError, match=rf"^{dataset} has no factor labels the "
                           r"protocol can judge: it needs static class labels") as err:
            protocol.factor_roles(source)
        assert "\n" not in str(err.value)
        assert protocol.why_not(source).startswith("needs static class labels of content")
        with pytest.raises(protocol.ProtocolError, match="has no factor labels"):
            protocol.source_judge(source, judge_dir=str(tmp_path))

    class PerFrame:  # declares a per-frame position as its dynamics
        dataset = "fake"
        protocol_factors = {"content": ("digit",), "dynamics": ("position",)}

        def spec(self):
            from dvrnn_tf.data import DataSpec
            return DataSpec((8, 8, 1), 4, (Factor("digit", 10),
                                           Factor("position", None, True, (2,))))

    with pytest.raises(protocol.ProtocolError, match="dynamics factor 'position'.*static class"):
        protocol.factor_roles(PerFrame())
    with pytest.raises(protocol.ProtocolError, match="draws must be a positive integer"):
        protocol.run_test("fixed_content", None, None, {"f": np.zeros((1, 1))}, {}, ROLES,
                          draws=0)


def test_the_sprites_judge_learns_from_every_split_as_prepared(tmp_path, monkeypatch):
    source = open_source("sprites", {"manual_dir": SPRITES})
    content, dynamics = protocol.factor_roles(source)
    assert [f.name for f in content] == ["body", "bottomwear", "topwear", "hair"]
    assert [(f.name, f.num_classes) for f in dynamics] == [("motion", 9)]
    seen = {}

    def capture(cache_dir, *args, **kwargs):
        seen.update(cache_dir=cache_dir, args=args, kwargs=kwargs)
        return "judge", {"key": "k", "test_accuracy": {}}

    monkeypatch.setattr(sj, "load_or_train_sequence_judge", capture)
    model, info = protocol.source_judge(source, judge_dir=str(tmp_path), seed=2, epochs=3)
    assert model == "judge" and info["dynamics_factors"] == ["motion"]
    assert seen["cache_dir"] == tmp_path.resolve() / "sprites-sequence"
    x_train, l_train, x_val, _, x_test, l_test, factors = seen["args"]
    assert [f.name for f in factors] == ["body", "bottomwear", "topwear", "hair", "motion"]
    assert x_train.dtype == np.uint8 and x_train.shape == (8100, 8, 64, 64, 3)
    assert len(x_val) == 900 and len(x_test) == 2664 and isinstance(x_train, np.memmap)
    assert l_test["motion"].dtype == np.int64 and set(l_train) == {f.name for f in factors}
    np.testing.assert_array_equal(np.bincount(l_test["motion"]), [296] * 9)
    assert seen["kwargs"] == {**protocol.JUDGE_SETTINGS, "epochs": 3, "seed": 2, "verbose": 0,
                              "min_accuracy": sj.MIN_ACCURACY}
