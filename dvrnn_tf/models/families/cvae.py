"""The conditional VAE of the second paper (Shu et al., "Rethinking style and content
disentanglement in VAEs"; DESIGN 3), with split layers and label-dependent transforms.

Generative model, per frame: y ~ p(y) uniform over K classes, z ~ p(z) = N(0, I),
  x ~ p(x | y, z), decoded by omega_p(y, z): an MLP on z with onehot(y) appended to the input
  of every layer (of the first only with label_every_layer=False).
Inference: q(z | x, y) = N(mu_q(x, y), sigma_q(x, y)) from omega_q: an MLP on x, onehot(y)
  appended likewise (y left out altogether with `mask_label`).
Like the beta-VAE it models single images: fed sequences x [B, T, H, W, C] with one class per
sequence y [B] (what `SequenceSampler` yields), it treats the B*T frames as independent images
of class y. p(y) is uniform and y is observed, so log p(y) is a constant left out of the loss.

Layers are numbered from the input: encoder layers 0..L-1 (L-1, the last, is the Gaussian head
whose 2*z_dim outputs are the mean and the pre-softplus scale), decoder layers 0..L-1 (0 reads
z, L-1 outputs the pixel parameters); L = num_hidden + 1. Any of them can be
*split* (`SplitDense`: one independent copy per class, chosen by y). In the paper's appendix
the encoder's last layer is l, so "encoder layer l-3" is encoder layer L-4 (0 for L = 4), and
the decoder's first layer is l, so "decoder layer l+3" is decoder layer 3.

Competition (paper appendix B): with `label_transform` set, the decoder reads T_y(z) instead
of z: x -> omega_q -> z -> T_y(z) -> omega_p. `decode(z, y)` is always the raw decoder
mu_p(y, z); `decode_transformed(z, y)` is mu'_p(y, z) = mu_p(y, T_y(z)), the generator the
encoder's code space defines. T_y is orthogonal, so T_y(z) ~ N(0, I) when z ~ N(0, I) and
the ELBO of the composite model is that of an ordinary CVAE.
"""
import re

import keras
import numpy as np
import tensorflow as tf

from dvrnn_tf.layers import SplitDense, bias_add, diag_gaussian
from dvrnn_tf.layers.distributions import MIN_SCALE
from dvrnn_tf.models import settings as ms
from dvrnn_tf.models.base import LatentVariableModel, check_positive
from dvrnn_tf.models.registry import ModelFamily, register
from dvrnn_tf.settings import Setting

TRANSFORMS = ("none", "rotation", "reflection")
# The factor label a source must have for this model: its y.
CLASS_FACTOR = "class"


def parse_split(spec, num_layers, what="split"):
    """Layer indices from a split spec: "" / "none" / None -> (), "all" -> every layer,
    "0,2" or [0, 2] -> (0, 2); negative indices count from the end (-1: the last layer).

    Raises ValueError for anything else or an index outside 0..num_layers-1.
    """
    if spec is None:
        return ()
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text in ("", "none"):
            return ()
        if text == "all":
            return tuple(range(num_layers))
        try:
            items = [int(s) for s in text.replace(" ", "").split(",") if s != ""]
        except ValueError:
            raise ValueError(f"`{what}` must be 'all', 'none' or comma-separated layer indices "
                             f"(0..{num_layers - 1}), got {spec!r}") from None
    else:
        items = [int(s) for s in spec]
    out = set()
    for i in items:
        j = i + num_layers if i < 0 else i
        if not 0 <= j < num_layers:
            raise ValueError(f"`{what}`: layer {i} does not exist; there are {num_layers} layers "
                             f"(0..{num_layers - 1}, -1 the last)")
        out.add(j)
    return tuple(sorted(out))


def label_transforms(kind, num_classes, z_dim, seed=0):
    """The transforms {T_i} as matrices [K, z_dim, z_dim] (float64), or None for "none".

    rotation: K independent random rotations (orthogonal, det +1), drawn with
      `scipy.stats.special_ortho_group` from `seed` (the same seed gives the same T's).
    reflection: the paper's T_i = (-1)^{1[i < K/2]} I, i.e. -I for classes 0..4 of ten and
      +I for 5..9 (orthogonal; det (-1)^z_dim for the first half).
    """
    if kind in (None, "none"):
        return None
    if kind == "rotation":
        if z_dim == 1:
            return np.ones((num_classes, 1, 1))
        from scipy.stats import special_ortho_group
        mats = special_ortho_group.rvs(z_dim, size=num_classes,
                                       random_state=np.random.default_rng(seed))
        return np.asarray(mats, np.float64).reshape(num_classes, z_dim, z_dim)
    if kind == "reflection":
        signs = np.where(np.arange(num_classes) < num_classes / 2, -1.0, 1.0)
        return signs[:, None, None] * np.eye(z_dim)[None]
    raise ValueError(f"`label_transform` must be one of {TRANSFORMS}, got {kind!r}")


@keras.saving.register_keras_serializable(package="dvrnn_tf")
class CVAE(LatentVariableModel):
    """Conditional VAE with optionally split encoder / decoder layers.

    Args (beyond `LatentVariableModel`'s):
      num_classes: K, from the data (`ImageSet.num_classes`).
      hidden_dim: width of every hidden layer.
      z_dim: latent size.
      num_hidden: hidden layers of the encoder and of the decoder (each has num_hidden + 1
        layers with its output layer; the paper's appendix needs at least 4).
      split_encoder, split_decoder: which layers are split (see `parse_split`): "all",
        "none", "0,1", or a list of indices.
      mask_label: the encoder does not see y (q(z | x)); cannot be combined with a split
        encoder layer (its copy would be chosen by y).
      label_every_layer: append onehot(y) to the input of every layer (default), not only of
        the first: a shared network then learns to use y within a few thousand steps instead
        of first putting the class into z (see `docs/win_rates.md`).
      label_transform: "none", "rotation" or "reflection": the decoder reads T_y(z).
      transform_seed: seeds the random rotations.
      beta_z: weight of KL_z (float, `KLWeight` or its serialized form).
    """

    def __init__(self, image_shape, num_classes=10, seq_len=8, hidden_dim=256, z_dim=8,
                 num_hidden=3, split_encoder=(), split_decoder=(), mask_label=False,
                 label_every_layer=True, label_transform="none", transform_seed=0, beta_z=1.0,
                 likelihood="bernoulli", clip_norm=10.0, seed=None, **kwargs):
        check_positive(num_classes=num_classes, hidden_dim=hidden_dim, z_dim=z_dim)
        if int(num_hidden) < 0:
            raise ValueError(f"`num_hidden` must be >= 0, got {num_hidden}")
        super().__init__(image_shape, seq_len=seq_len, likelihood=likelihood,
                         clip_norm=clip_norm, seed=seed, kl_weights={"kl_z": beta_z}, **kwargs)
        self.num_classes, self.hidden_dim = int(num_classes), int(hidden_dim)
        self.z_dim, self.num_hidden = int(z_dim), int(num_hidden)
        n = self.num_hidden + 1
        self.split_encoder = parse_split(split_encoder, n, "split_encoder")
        self.split_decoder = parse_split(split_decoder, n, "split_decoder")
        self.mask_label = bool(mask_label)
        self.label_every_layer = bool(label_every_layer)
        if self.mask_label and self.split_encoder:
            raise ValueError("`mask_label` hides y from the encoder, but a split encoder layer "
                             f"({list(self.split_encoder)}) is chosen by y: use one or the other")
        self.label_transform = "none" if label_transform in (None, "") else str(label_transform)
        self.transform_seed = int(transform_seed)
        mats = label_transforms(self.label_transform, self.num_classes, self.z_dim,
                                self.transform_seed)
        self.transforms = None if mats is None else tf.constant(mats, tf.float32)

        out_units = self.x_dim * self.likelihood.params_per_pixel
        enc_units = [self.hidden_dim] * self.num_hidden + [2 * self.z_dim]
        dec_units = [self.hidden_dim] * self.num_hidden + [out_units]
        self.encoder_layers = [self._layer(u, i < self.num_hidden, i in self.split_encoder,
                                           f"encoder_{i}") for i, u in enumerate(enc_units)]
        self.decoder_layers = [self._layer(u, i < self.num_hidden, i in self.split_decoder,
                                           f"decoder_{i}") for i, u in enumerate(dec_units)]
        self.build()

    def _layer(self, units, hidden, split, name):
        activation = "relu" if hidden else None
        if split:
            return SplitDense(units, self.num_classes, activation=activation, name=name)
        return bias_add.Dense(units, activation=activation, name=name)

    def build(self, input_shape=None):
        enc_label = 0 if self.mask_label else self.num_classes
        for i, layer in enumerate(self.encoder_layers):
            d = self.x_dim if i == 0 else self.encoder_layers[i - 1].units
            layer.build((None, d + (enc_label if i == 0 or self.label_every_layer else 0)))
        for i, layer in enumerate(self.decoder_layers):
            d = self.z_dim if i == 0 else self.decoder_layers[i - 1].units
            layer.build((None, d + (self.num_classes if i == 0 or self.label_every_layer
                                    else 0)))
        self.built = True

    # ---- networks ------------------------------------------------------------------------

    def _run(self, layers, h, y, with_label=True):
        """The layers on h [..., d]; the one-hot label is appended to the input of the first
        layer (of every layer with `label_every_layer`) unless with_label is False."""
        onehot = tf.one_hot(y, self.num_classes, dtype=h.dtype) if with_label else None
        for i, layer in enumerate(layers):
            if onehot is not None and (i == 0 or self.label_every_layer):
                h = tf.concat([h, onehot], -1)
            h = layer(h, y) if isinstance(layer, SplitDense) else layer(h)
        return h

    def _labels_like(self, y, codes):
        """y [B] (or already [B, T]) as int32 broadcast to codes.shape[:-1]."""
        y = tf.cast(tf.convert_to_tensor(y), tf.int32)
        target = tf.shape(codes)[:-1]
        extra = codes.shape.rank - 1 - y.shape.rank
        if extra < 0:
            raise ValueError(f"y of rank {y.shape.rank} does not fit codes of rank "
                             f"{codes.shape.rank}")
        y = tf.reshape(y, tf.concat([tf.shape(y), tf.ones([extra], tf.int32)], 0))
        return tf.broadcast_to(y, target)

    def posterior_params(self, x_flat, y):
        """q(z | x, y) for x_flat [..., D], y broadcastable to [...]: (loc, scale) [..., z_dim]."""
        y = self._labels_like(y, x_flat)
        out = self._run(self.encoder_layers, x_flat, y, with_label=not self.mask_label)
        loc, raw = tf.split(out, 2, axis=-1)
        return loc, tf.nn.softplus(raw) + MIN_SCALE

    def posterior_distribution(self, x_flat, y):
        return diag_gaussian(*self.posterior_params(x_flat, y))

    def prior_distribution(self, batch_shape):
        zeros = tf.zeros(tf.concat([batch_shape, [self.z_dim]], 0), self.compute_dtype)
        return diag_gaussian(zeros, tf.ones_like(zeros))

    def transform(self, z, y):
        """T_y(z) for z [..., z_dim] and y broadcastable to [...]; z itself without transform."""
        z = tf.convert_to_tensor(z, self.compute_dtype)
        if self.transforms is None:
            return z
        y = self._labels_like(y, z)
        mats = tf.cast(tf.gather(self.transforms, y), z.dtype)  # [..., z, z]
        return tf.linalg.matvec(mats, z)

    def decoder_params(self, z, y):
        """Parameters of p(x | y, z) from the raw decoder omega_p(y, z): [..., ppp * D]."""
        z = tf.convert_to_tensor(z, self.compute_dtype)
        y = self._labels_like(y, z)
        return self._run(self.decoder_layers, z, y)

    # ---- the model -------------------------------------------------------------------------

    def terms_from_data(self, data, training=False):
        if not isinstance(data, (tuple, list)) or len(data) < 2:
            raise ValueError("the CVAE trains on labelled batches (x, y): x [B, T, H, W, C] and "
                             "y [B], the class of each sequence")
        y = data[1]
        if isinstance(y, dict):  # a sequence source's labels: {factor: [B]}
            y = y[CLASS_FACTOR]
        return self.compute_terms(data[0], training=training, y=y)

    def compute_terms(self, x, training=False, y=None):
        if y is None:
            raise ValueError("CVAE.compute_terms needs the labels y [B]")
        x_flat = self.flatten_frames(x)
        y = self._labels_like(y, x_flat)
        loc, scale = self.posterior_params(x_flat, y)
        z = loc + scale * self.normal_noise(tf.shape(loc))
        posterior = diag_gaussian(loc, scale)
        kl_z = tf.reduce_mean(posterior.kl_divergence(self.prior_distribution(tf.shape(loc)[:-1])))
        params = self.decoder_params(self.transform(z, y), y)
        return {"nll": self.nll_per_image(params, self.flatten_frames(x, tf.float32)),
                "kl_z": kl_z}

    def elbo_per_class(self, x):
        """[B, K]: for each sequence and class k, sum over frames of the ELBO of (x_t, k)
        evaluated at the posterior mean (-log p(x_t | k, mu_q) - KL): a deterministic score."""
        x_flat = self.flatten_frames(x)  # [B, T, D]
        b, t = tf.shape(x_flat)[0], tf.shape(x_flat)[1]
        k = self.num_classes
        tiled = tf.repeat(x_flat[:, None], k, axis=1)  # [B, K, T, D]
        y = tf.broadcast_to(tf.range(k)[None, :, None], tf.stack([b, k, t]))
        loc, scale = self.posterior_params(tiled, y)
        kl = diag_gaussian(loc, scale).kl_divergence(
            self.prior_distribution(tf.shape(loc)[:-1]))
        params = tf.cast(self.decoder_params(self.transform(loc, y), y), tf.float32)
        nll = self.likelihood.nll(params, tf.cast(tiled, tf.float32))
        return -tf.reduce_sum(nll + tf.cast(kl, tf.float32), axis=-1)

    def classify(self, x):
        """The class of each sequence x [B, T, H, W, C]: argmax_k of `elbo_per_class` [B]."""
        return tf.argmax(self.elbo_per_class(x), axis=-1, output_type=tf.int32)

    def _labels_or_classify(self, x, y):
        return self.classify(x) if y is None else tf.cast(tf.convert_to_tensor(y), tf.int32)

    def call(self, x, training=False):
        """The reconstruction (labels inferred by `classify`): [B, T, H, W, C]."""
        return self.reconstruct(self.check_inputs(x))

    def encode(self, x, y=None):
        """Posterior of each frame's z given the sequence's class (inferred when y is None):
        loc, scale and a sample, each [B, T, z_dim]."""
        y = self._labels_or_classify(x, y)
        loc, scale = self.posterior_params(self.flatten_frames(x), y)
        return {"z_loc": loc, "z_scale": scale,
                "z_sample": loc + scale * self.normal_noise(tf.shape(loc))}

    def reconstruct(self, x, y=None):
        """Decoder mean at the posterior means, through T_y when set: [B, T, H, W, C]."""
        y = self._labels_or_classify(x, y)
        loc, _ = self.posterior_params(self.flatten_frames(x), y)
        return self.decode_transformed(loc, y)

    def decode(self, z, y):
        """mu_p(y, z), the raw decoder's mean image: z [..., z_dim], y broadcastable to [...]
        (e.g. [n] for z [n, T, z_dim]) -> [..., H, W, C]."""
        z = tf.convert_to_tensor(z, self.compute_dtype)
        mean = tf.cast(self.likelihood.mean(self.decoder_params(z, y)), self.compute_dtype)
        return tf.reshape(mean, tf.concat([tf.shape(z)[:-1], self.image_shape], 0))

    def decode_transformed(self, z, y):
        """mu'_p(y, z) = mu_p(y, T_y(z)): the generator as the encoder's code space sees it
        (equal to `decode` without a transform)."""
        return self.decode(self.transform(z, y), y)

    def sample_prior(self, n):
        """z ~ p(z) for n sequences of T = seq_len frames: [n, T, z_dim]."""
        return self.normal_noise((n, self.seq_len, self.z_dim))

    def sample_labels(self, n):
        """y ~ p(y) uniform: int32 [n]."""
        return keras.random.randint((n,), 0, self.num_classes, dtype="int32",
                                    seed=self.seed_generator)

    def generate(self, n, y=None):
        """n sequences, each of one class (y [n], or drawn from p(y)) and fresh z per frame,
        decoded through the model's generator: [n, T, H, W, C]."""
        y = self.sample_labels(n) if y is None else y
        return self.decode_transformed(self.sample_prior(n), y)

    def grid(self, z, classes=None, transformed=False):
        """The paper's Fig. 2 grid: cell (i, j) = mu_p(i, z_j) (mu'_p with `transformed`).

        z: [J, z_dim]; classes: [I] (default all K). -> [I, J, H, W, C].
        """
        z = tf.convert_to_tensor(z, self.compute_dtype)
        classes = tf.range(self.num_classes) if classes is None else tf.constant(classes)
        i, j = tf.shape(classes)[0], tf.shape(z)[0]
        zz = tf.broadcast_to(z[None], tf.stack([i, j, self.z_dim]))
        yy = tf.broadcast_to(tf.cast(classes, tf.int32)[:, None], tf.stack([i, j]))
        return (self.decode_transformed if transformed else self.decode)(zz, yy)

    # ---- serving -------------------------------------------------------------------------

    def labelled_endpoints(self, images):
        """Endpoints that take the labels (added by `dvrnn_tf.export`): {name: (fn, specs)}."""
        from dvrnn_tf.checks import check_codes, check_images

        labels = tf.TensorSpec([None], tf.int32)
        codes = tf.TensorSpec([None, self.seq_len, self.z_dim], tf.float32)
        return {
            "reconstruct_given_label": (
                lambda x, y: self.reconstruct(check_images(x), self._checked_labels(y)),
                {"x": images, "y": labels}),
            "encode_given_label": (
                lambda x, y: dict(self.encode(check_images(x), self._checked_labels(y))),
                {"x": images, "y": labels}),
            "elbo_per_class": (lambda x: self.elbo_per_class(check_images(x)), {"x": images}),
            "decode": (lambda z, y: self.decode(check_codes(z, "z"), self._checked_labels(y)),
                       {"z": codes, "y": labels}),
        }

    def _checked_labels(self, y):
        from dvrnn_tf.checks import check_labels

        return check_labels(y, self.num_classes)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "hidden_dim": self.hidden_dim, "z_dim": self.z_dim, "num_hidden": self.num_hidden,
                "split_encoder": list(self.split_encoder),
                "split_decoder": list(self.split_decoder), "mask_label": self.mask_label,
                "label_every_layer": self.label_every_layer,
                "label_transform": self.label_transform, "transform_seed": self.transform_seed}


# ---- the family ---------------------------------------------------------------------------

SPLIT_ENCODER = Setting("split_encoder", "", "Encoder layers split into one copy per class: "
                        "`all`, `none`/empty, or indices `0,1` (0 = first; 3 = the Gaussian "
                        "head).")
SPLIT_DECODER = Setting("split_decoder", "", "Decoder layers split into one copy per class: "
                        "`all`, `none`/empty, or indices `0,1` (0 = the layer reading (y, z)).")


def _check(name, values, data):
    for setting in (SPLIT_ENCODER, SPLIT_DECODER):
        value = values[setting.name]
        if not re.fullmatch(r"\s*(|none|all|-?\d+(\s*,\s*-?\d+)*)\s*", value.lower()):
            raise ValueError(f"--{setting.name}={value!r} is not allowed; use `all`, `none` or "
                             "comma-separated layer indices such as 0,1")
    if data is not None and data.factor(CLASS_FACTOR) is None:
        raise ValueError(f"--model={name} needs data with a {CLASS_FACTOR!r} label; this data "
                         f"has {', '.join(data.factor_names) or 'no labels'}")


def _build(name, values, data, *, seed, clip_norm):
    return CVAE(data.image_shape, num_classes=data.factor(CLASS_FACTOR).num_classes,
                seq_len=data.seq_len, hidden_dim=values.hidden_dim, z_dim=values.z_dim,
                split_encoder=values.split_encoder, split_decoder=values.split_decoder,
                beta_z=ms.kl_weight(values, "z"), **ms.likelihood_args(values),
                clip_norm=clip_norm, seed=seed)


FAMILY = register(ModelFamily(
    names=("cvae",), model_class=CVAE,
    settings=(*ms.LIKELIHOOD_SETTINGS, ms.HIDDEN_DIM, ms.Z_DIM, *ms.KL_Z_SETTINGS, SPLIT_ENCODER,
              SPLIT_DECODER),
    build=_build, check=_check, metrics=(),
    summary="the second paper's conditional VAE p(x | y, z), with split layers"))
