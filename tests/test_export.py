"""SavedModel export: endpoints served without the package, input checks, atomic writes."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from dvrnn_tf import export
from dvrnn_tf.checks import check_outputs
from dvrnn_tf.models import VRNN, DisentangledVRNN
from dvrnn_tf.models import BetaVAE

T, H, W, C = 8, 8, 8, 1
SMALL = dict(seq_len=T, hidden_dim=16, rnn_dim=16, z_dim=3)
ALL_DISENTANGLED = {"reconstruct", "encode", "generate", "generate_fixed_content",
                    "generate_fixed_style", "swap", "interpolate_f", "interpolate_z", "decode"}


def make(kind, seed=0):
    if kind == "vrnn":
        return VRNN((H, W, C), seed=seed, **SMALL)
    if kind == "beta_vae":
        return BetaVAE((H, W, C), seq_len=T, hidden_dim=16, z_dim=3, seed=seed)
    return DisentangledVRNN((H, W, C), variant=kind, f_dim=4, seed=seed, **SMALL)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).uniform(size=(3, T, H, W, C)).astype("float32")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, x):
    """The four models exported once; the serving subprocess is started at once, so that it
    runs while the other tests do.

    {"models": {kind: (model, path, endpoint names)}, "proc": Popen, "dir": its directory}.
    """
    root = tmp_path_factory.mktemp("export")
    models = {}
    for kind in ("vrnn", "full", "factorized", "beta_vae"):
        model = make(kind)
        models[kind] = (model, str(root / kind), export.export_saved_model(model, root / kind))
    np.save(root / "x.npy", x)
    dirs = {k: v[1] for k, v in models.items()}
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ""}
    with open(root / "stderr.txt", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVE, json.dumps(dirs), str(root / "x.npy"),
             str(root / "report.json")],
            cwd=root, env=env, stdout=err, stderr=subprocess.STDOUT)
    yield {"models": models, "proc": proc, "dir": root}
    if proc.poll() is None:
        proc.kill()
        proc.wait()


# Runs in a fresh interpreter that never imports dvrnn_tf: calls every endpoint listed in
# endpoints.json with inputs built from its specs, and reports output shapes.
SERVE = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    dirs, x_path, out_path = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    x = np.load(x_path)
    report, arrays = {}, {}
    for kind, d in dirs.items():
        m = tf.saved_model.load(d)
        spec = json.load(open(d + "/endpoints.json"))["endpoints"]
        codes = {k[:-4]: v for k, v in m.encode(x).items() if k.endswith("_loc")}
        shapes = {}
        for name, inputs in spec.items():
            args = []
            for arg, s in inputs.items():
                if s["dtype"] == "int32":
                    args.append(tf.constant(3))
                elif arg in codes:
                    args.append(codes[arg])
                elif s["shape"][0] == 1:
                    args.append(x[:1] if arg == "x_a" else x[1:2])
                else:
                    args.append(x)
            out = getattr(m, name)(*args)
            shapes[name] = ({k: v.shape.as_list() for k, v in out.items()}
                            if isinstance(out, dict) else out.shape.as_list())
        arrays[kind] = m.reconstruct(x).numpy()
        by_signature = m.signatures["reconstruct"](x=tf.constant(x))["output_0"].numpy()
        shapes["signature_matches"] = bool(np.allclose(by_signature, arrays[kind]))
        seed = m.seed_state[0].numpy().copy()
        a, b = m.generate(tf.constant(2)), m.generate(tf.constant(2))
        shapes["generate_differs"] = bool(np.abs(a.numpy() - b.numpy()).max() > 0)
        shapes["seed_advanced"] = bool((m.seed_state[0].numpy() != seed).any())
        shapes["signatures"] = sorted(m.signatures)
        report[kind] = shapes
    # What a client reads first when it sends a bad input: str(error)'s first lines.
    m, bad = tf.saved_model.load(dirs["full"]), x.copy()
    bad[0, 1, 2, 3, 0], bad[1, 0, 0, 0, 0] = np.nan, np.inf
    report["errors"] = {}
    for case, call in {"nan": lambda: m.reconstruct(bad), "range": lambda: m.reconstruct(x + 1),
                       "empty": lambda: m.reconstruct(x[:0]), "style": lambda: m.swap(x, x - 2),
                       "count": lambda: m.generate(tf.constant(0))}.items():
        try:
            call()
            report["errors"][case] = None
        except tf.errors.InvalidArgumentError as e:
            report["errors"][case] = [str(e).splitlines()[:3], e.message.splitlines()[:3]]
    assert "dvrnn_tf" not in sys.modules, "the package was imported"
    report["modules"] = sorted(k for k in sys.modules if k.startswith("dvrnn"))
    np.savez(out_path + ".npz", **arrays)
    json.dump(report, open(out_path, "w"))
""")


def _raises(fn, *args, match):
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        fn(*args)


def test_bad_inputs_are_rejected(exported, x):
    loaded = tf.saved_model.load(exported["models"]["full"][1])
    nan = x.copy()
    nan[0, 1, 2, 3, 0] = np.nan
    _raises(loaded.reconstruct, nan, match="must be finite")
    _raises(loaded.encode, np.where(np.isnan(nan), np.inf, x).astype("float32"),
            match="must be finite")
    _raises(loaded.reconstruct, x + 1.0, match=r"values must be in \[0, 1\]")
    _raises(loaded.reconstruct, x - 1.0, match=r"values must be in \[0, 1\]")
    _raises(loaded.reconstruct, x[:0], match="empty batch")
    _raises(loaded.swap, x, x + 2, match=r"`x_style`: values must be in \[0, 1\]")
    _raises(loaded.swap, x, x[:2], match="same batch size")
    _raises(loaded.interpolate_f, x[:1], nan[:1], match="must be finite")
    for name in ("generate", "generate_fixed_content", "generate_fixed_style"):
        _raises(getattr(loaded, name), tf.constant(0), match="must be >= 1")
    _raises(loaded.generate, tf.constant(-2), match="must be >= 1")
    codes = loaded.encode(x)
    _raises(loaded.decode, codes["f_loc"] * np.nan, codes["z_loc"], match="must be finite")
    _raises(loaded.decode, codes["f_loc"][:2], codes["z_loc"], match="same batch size")
    # Wrong rank, shape or dtype never reach the graph: the fixed signatures reject them.
    for bad in (x[0], x[:, :4], np.zeros((2, T, 4, 4, C), "float32"), tf.constant(x, tf.float64),
                tf.constant(x.astype("int32"))):
        with pytest.raises((TypeError, ValueError)):
            loaded.reconstruct(bad)
    with pytest.raises((TypeError, ValueError)):
        loaded.generate(tf.constant(2, tf.int64))
    with pytest.raises((TypeError, ValueError)):
        loaded.interpolate_z(x[:2], x[:2])


def _leftovers(parent, name):
    return [p for p in os.listdir(parent) if p != name]


def test_export_is_atomic(tmp_path, x, monkeypatch):
    """Exporting twice replaces; a failure leaves the previous export loadable and no debris."""
    path = tmp_path / "model"
    a, b = make("vrnn", seed=1), make("vrnn", seed=2)
    expected = b.reconstruct(x).numpy()
    assert not np.allclose(a.reconstruct(x).numpy(), expected, atol=1e-3)

    def check_still_b():
        loaded = tf.saved_model.load(str(path))  # keep a reference: it owns the variables
        np.testing.assert_allclose(loaded.reconstruct(x), expected, atol=1e-5)

    traced = []  # each endpoint traced once (check_outputs runs once per trace)
    with monkeypatch.context() as patch:
        patch.setattr(export, "check_outputs",
                      lambda out, name: traced.append(name) or check_outputs(out, name))
        names = export.export_saved_model(a, path)
    assert sorted(traced) == sorted(names)
    export.export_saved_model(b, path)  # a second export to the same path replaces the first
    check_still_b()

    # A failure part-way through writing the temporary copy.
    def fail_part_way(archive, filepath, **kwargs):
        open(os.path.join(filepath, "saved_model.pb"), "wb").write(b"\0partial")
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(tf.saved_model, "save", fail_part_way)
        with pytest.raises(OSError, match="disk full"):
            export.export_saved_model(a, path)
    assert _leftovers(tmp_path, "model") == []
    check_still_b()

    # The temporary copy is complete but moving it into place fails: the old one is put back.
    def fake_write(archive, filepath, **kwargs):
        open(os.path.join(filepath, "saved_model.pb"), "wb").write(b"\0new")

    rename = os.rename

    def flaky_rename(src, dst):
        if os.path.basename(src).startswith(".model.tmp-"):
            raise OSError("rename failed")
        return rename(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(tf.saved_model, "save", fake_write)
        patch.setattr(export, "_exchange", lambda a, b: False)  # the two-rename fallback
        patch.setattr(export.os, "rename", flaky_rename)
        with pytest.raises(OSError, match="rename failed"):
            export.export_saved_model(a, path)
    assert _leftovers(tmp_path, "model") == []
    check_still_b()


@pytest.mark.slow  # a subprocess
def test_endpoints_served_without_the_package(exported, x):
    models = exported["models"]
    assert set(models["vrnn"][2]) == {"reconstruct", "encode", "generate"}
    assert set(models["beta_vae"][2]) == {"reconstruct", "encode", "generate", "decode"}
    for kind in ("full", "factorized"):
        assert set(models[kind][2]) == ALL_DISENTANGLED
    proc, root = exported["proc"], exported["dir"]
    proc.wait(timeout=180)
    assert proc.returncode == 0, (root / "stderr.txt").read_text()[-3000:]
    report = json.load(open(root / "report.json"))
    recon = np.load(root / "report.json.npz")
    assert report["modules"] == []
    images = [3, T, H, W, C]
    for kind, (model, path, names) in models.items():
        r = report[kind]
        assert set(r["signatures"]) == {*names, "serving_default"}
        assert r["reconstruct"] == r["generate"] == images  # generate(3)
        assert r["generate_differs"], f"{kind}: generate gave the same samples twice"
        assert r["seed_advanced"] and r["signature_matches"]
        assert {r["encode"][k] == [3, T, 3] for k in ("z_loc", "z_scale", "z_sample")} == {True}
        np.testing.assert_allclose(recon[kind], model.reconstruct(x).numpy(), atol=1e-5)
        if kind == "beta_vae":
            assert r["decode"] == images
        elif kind != "vrnn":
            assert {r["encode"][k] == [3, 4] for k in ("f_loc", "f_scale", "f_sample")} == {True}
            for name in ("generate_fixed_content", "generate_fixed_style", "swap", "decode"):
                assert r[name] == images, name
            assert r["interpolate_f"] == r["interpolate_z"] == [8, T, H, W, C]
        manifest = json.load(open(os.path.join(path, "endpoints.json")))
        assert set(manifest["endpoints"]) == set(names)
        assert manifest["endpoints"]["reconstruct"]["x"] == {
            "shape": [None, T, H, W, C], "dtype": "float32"}


# The line a client reads after TensorFlow's own first line: TF 2.21 rewrites every error raised
# inside a loaded function as "Graph execution error:\n\n..." (dvrnn_tf.checks says why the
# exporting side cannot change that line, and how the next one is made the check's).
FIRST_LINES = {
    "nan": "assertion failed: [`x` must be finite (images are floats in [0, 1]); values that are "
           "NaN or Inf:] [2]",
    "range": "assertion failed: [`x`: values must be in [0, 1] (0..255 pixels: divide by 255), "
             "got min and max] [",
    "empty": "assertion failed: [`x`: empty batch; a call takes 1 to 4096 sequences]",
    "style": "assertion failed: [`x_style`: values must be in [0, 1] (0..255 pixels: divide by "
             "255), got min and max] [-",
    "count": "assertion failed: [`n` must be >= 1, got] [0]"}


@pytest.mark.slow  # the same subprocess
def test_endpoint_errors_lead_with_the_input(exported):
    proc, root = exported["proc"], exported["dir"]
    proc.wait(timeout=180)
    assert proc.returncode == 0, (root / "stderr.txt").read_text()[-3000:]
    errors = json.load(open(root / "report.json"))["errors"]
    assert set(errors) == set(FIRST_LINES)
    for case, expected in FIRST_LINES.items():
        for lines in errors[case]:  # str(e), then e.message
            assert lines[:2] == ["Graph execution error:", ""], (case, lines)
            assert lines[2].startswith(expected), (case, lines)

