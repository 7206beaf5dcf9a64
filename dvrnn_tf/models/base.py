"""What every model here shares: the variational training and evaluation steps.

A subclass defines `compute_terms(x, training)`, which returns per-image values in nats
(``nll`` and one ``kl_*`` per latent code), and passes a KL weight per code to this base
class. The loss is ``nll + sum_k weight_k.penalty(kl_k, step)``. One Keras metric tracks
each term (the keras-io VAE example's pattern), so `fit`, `evaluate`, TensorBoard and
`metrics.json` all see the same names.
"""
import keras
import tensorflow as tf

from dvrnn_tf.objectives import get_likelihood
from dvrnn_tf.objectives.kl_weights import KLWeight, deserialize, serialize


def images_from_data(data):
    """The image batch from what a dataset yields: x, (x, y) or (x, y, sample_weight)."""
    if isinstance(data, (tuple, list)):
        return data[0]
    return data


class LatentVariableModel(keras.Model):
    """Base of the VRNN, the Disentangled VRNN and the beta-VAE.

    Inputs everywhere are image sequences x [B, T, H, W, C], float32 in [0, 1]; models of
    single images (the beta-VAE) treat the T frames as independent images.

    Args:
      image_shape: (H, W, C) of one frame.
      seq_len: T, the length the SavedModel signatures are fixed to.
      likelihood: a name in `dvrnn_tf.objectives.LIKELIHOODS`.
      clip_norm: global gradient-norm clip, applied by the optimizer to the (unscaled,
        all-reduced) gradient before each update; 0 turns it off.
      seed: seeds the model's `SeedGenerator` (the noise of every latent sample).
      kl_weights: {term: KLWeight, float (a constant beta), or a serialized KLWeight}.
    """

    def __init__(self, image_shape, seq_len=8, likelihood="bernoulli", clip_norm=10.0,
                 seed=None, kl_weights=None, **kwargs):
        super().__init__(**kwargs)
        image_shape = tuple(int(d) for d in image_shape)
        if len(image_shape) != 3 or min(image_shape) <= 0:
            raise ValueError(f"`image_shape` must be (H, W, C) of positive sizes, got {image_shape}")
        if int(seq_len) <= 0:
            raise ValueError(f"`seq_len` must be a positive integer, got {seq_len}")
        if clip_norm < 0:
            raise ValueError(f"`clip_norm` must be >= 0 (0: no clipping), got {clip_norm}")
        self.image_shape = image_shape
        self.seq_len = int(seq_len)
        self.x_dim = image_shape[0] * image_shape[1] * image_shape[2]
        self.likelihood = get_likelihood(likelihood)
        self.clip_norm = float(clip_norm)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="seed_generator")
        # Tracked as a weight so that checkpoints, `.keras` files and BackupAndRestore carry
        # the noise state: a resumed run then draws the noise the uninterrupted one drew.
        self._track_variable(self.seed_generator.state)
        self.kl_weights = {k: deserialize(v) for k, v in (kl_weights or {}).items()}
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.metric_names}

    # ---- what a subclass provides -------------------------------------------------------

    def compute_terms(self, x, training=False):
        """x [B, T, H, W, C] -> {"nll": ..., "kl_<code>": ...}, each a scalar: batch mean, per image."""
        raise NotImplementedError

    # ---- shared machinery ---------------------------------------------------------------

    @property
    def metric_names(self):
        names = ["loss", "nll", *self.kl_weights]
        names += [f"capacity_{k}" for k, w in self.kl_weights.items() if w.target(0) is not None]
        return names

    @property
    def metrics(self):
        # Listed so that Keras resets them at each epoch and reports them from fit/evaluate.
        return list(self.trackers.values())

    def flatten_frames(self, x):
        """[B, T, H, W, C] -> [B, T, D]."""
        x = tf.convert_to_tensor(x, dtype=self.compute_dtype)
        return tf.reshape(x, [tf.shape(x)[0], tf.shape(x)[1], self.x_dim])

    def unflatten_frames(self, x):
        """[B, T, D] -> [B, T, H, W, C]."""
        return tf.reshape(x, tf.concat([tf.shape(x)[:2], self.image_shape], 0))

    def normal_noise(self, shape):
        """eps ~ N(0, I) from the model's seeded generator."""
        return keras.random.normal(shape, dtype=self.compute_dtype, seed=self.seed_generator)

    def nll_per_image(self, params, x_flat):
        """-log p(x_t | .) summed over pixels, averaged over batch and time: nats per image."""
        log_prob = self.likelihood.distribution(tf.cast(params, tf.float32)).log_prob(
            tf.cast(x_flat, tf.float32))
        return -tf.reduce_mean(log_prob)

    def total_loss(self, terms, step):
        loss = terms["nll"]
        for name, weight in self.kl_weights.items():
            loss += weight.penalty(terms[name], step)
        return loss

    def _record(self, loss, terms, step):
        self.trackers["loss"].update_state(loss)
        for name, value in terms.items():
            self.trackers[name].update_state(value)
        for name, weight in self.kl_weights.items():
            target = weight.target(step)
            if target is not None:
                self.trackers[f"capacity_{name}"].update_state(target)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def compile(self, optimizer="adam", **kwargs):
        """Like `keras.Model.compile`; also hands `clip_norm` to the optimizer.

        Keras's optimizer clips after loss-scale unscaling and after the cross-replica
        all-reduce, which is where a global-norm clip belongs; an optimizer that already
        clips keeps its own setting.
        """
        optimizer = keras.optimizers.get(optimizer)
        inner = getattr(optimizer, "inner_optimizer", optimizer)
        if self.clip_norm and not (inner.global_clipnorm or inner.clipnorm or inner.clipvalue):
            inner.global_clipnorm = self.clip_norm
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        # What keras.Model does, which it skips (with a warning) once `compile` is overridden:
        # without it a reloaded model would lose its optimizer state.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def train_step(self, data):
        x = images_from_data(data)
        # A snapshot: the variable itself would read one step later after `apply`.
        step = tf.identity(self.optimizer.iterations)
        with tf.GradientTape() as tape:
            terms = {k: tf.cast(v, tf.float32) for k, v in self.compute_terms(x, training=True).items()}
            loss = self.total_loss(terms, step)
            # Each replica's loss is its local mean; the optimizer sums across replicas.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(loss / replicas)
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        return self._record(loss, terms, step)

    def test_step(self, data):
        x = images_from_data(data)
        optimizer = getattr(self, "optimizer", None)
        step = optimizer.iterations if optimizer is not None else 0
        terms = {k: tf.cast(v, tf.float32) for k, v in self.compute_terms(x, training=False).items()}
        return self._record(self.total_loss(terms, step), terms, step)

    def get_config(self):
        return {
            **super().get_config(),
            "image_shape": list(self.image_shape), "seq_len": self.seq_len,
            "likelihood": self.likelihood.name, "clip_norm": self.clip_norm, "seed": self.seed,
            # A subclass names its weights as constructor arguments (beta_z, beta_f, ...).
            **{f"beta_{k[3:]}": serialize(v) for k, v in self.kl_weights.items()},
        }


def check_positive(**sizes):
    for name, value in sizes.items():
        if int(value) <= 0:
            raise ValueError(f"`{name}` must be a positive integer, got {value}")
