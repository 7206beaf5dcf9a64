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
# Imported here so that a `.keras` file saved with it loads wherever the models do.
from dvrnn_tf.objectives.optimizers import FusedAdam


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
      gaussian_scale: the standard deviation of likelihood="gaussian_fixed" (None: its
        default, 0.1); ignored by the other likelihoods.
    """

    def __init__(self, image_shape, seq_len=8, likelihood="bernoulli", clip_norm=10.0,
                 seed=None, kl_weights=None, gaussian_scale=None, **kwargs):
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
        self.likelihood = get_likelihood(likelihood, gaussian_scale)
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

    def terms_from_data(self, data, training=False):
        """`compute_terms` of what the dataset yields; a model that reads the labels (the
        CVAE) overrides this to pass them on."""
        return self.compute_terms(images_from_data(data), training=training)

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

    def check_inputs(self, x, name="x"):
        """x as a float tensor once it is known to be images this model can take.

        Used by `call` (so by `model(x)` and `model.predict`), cheaply: the dtype, and the
        shape where it is known, are checked when the function is traced (TypeError /
        ValueError naming the expected [batch, T, H, W, C]); the rest when it runs
        (InvalidArgumentError: a shape `predict` left unknown, an empty batch, more than
        `dvrnn_tf.checks.MAX_BATCH` sequences, NaN or Inf, values outside [0, 1]). The
        training and evaluation steps skip the checks.
        """
        from dvrnn_tf.checks import after, check_images

        x = tf.convert_to_tensor(x)
        if not x.dtype.is_floating:
            raise TypeError(f"`{name}` must be float32 images in [0, 1], got dtype {x.dtype.name}"
                            " (scale 0..255 integer images to [0, 1] floats first)")
        expected = [self.seq_len, *self.image_shape]
        message = (f"`{name}` must have shape [batch, {', '.join(map(str, expected))}] (this "
                   f"{type(self).__name__} takes sequences of T={self.seq_len} frames of "
                   f"{'x'.join(map(str, self.image_shape))})")
        shape = x.shape.as_list() if x.shape.rank is not None else None
        if shape is not None and (len(shape) != 5 or any(
                d is not None and d != e for d, e in zip(shape[1:], expected))):
            raise ValueError(f"{message}, got shape {shape}")
        x = tf.cast(x, self.compute_dtype)
        if shape is None or None in shape[1:]:  # e.g. `predict` traces with unknown sizes
            rank = tf.debugging.assert_rank(x, 5, message=message)
            with tf.control_dependencies([rank] if rank is not None else []):
                same = tf.debugging.assert_equal(tf.shape(x)[1:], tf.constant(expected),
                                                 message=message)
            x = after([same], x)
        return check_images(x, name)

    def predict(self, x, *args, **kwargs):
        # Keras fails on an empty input with an UnboundLocalError; say what is wrong instead.
        if getattr(x, "shape", None) is not None and len(x.shape) and x.shape[0] == 0:
            raise ValueError("`x`: empty batch: predict needs at least one sequence")
        return super().predict(x, *args, **kwargs)

    def flatten_frames(self, x, dtype=None):
        """[B, T, H, W, C] -> [B, T, D], in `dtype` (default: the compute dtype; the
        likelihood takes the data in float32, not its round trip through bfloat16)."""
        # A cast, not convert_to_tensor(dtype=): float32 data into a float16/bfloat16 model.
        x = tf.cast(tf.convert_to_tensor(x), dtype or self.compute_dtype)
        return tf.reshape(x, [tf.shape(x)[0], tf.shape(x)[1], self.x_dim])

    def unflatten_frames(self, x):
        """[B, T, D] -> [B, T, H, W, C]."""
        return tf.reshape(x, tf.concat([tf.shape(x)[:2], self.image_shape], 0))

    def normal_noise(self, shape):
        """eps ~ N(0, I) of `shape` (batch first) from the model's seeded generator.

        Under a tf.distribute strategy with R replicas, each replica draws the noise of the
        whole global batch (R * shape[0] rows, a small tensor) and keeps its own rows, in the
        order the strategy splits the batch: the replicas' noise is independent, and a step
        on R replicas sees the noise one device would see for the same global batch.
        """
        return self._replica_noise(keras.random.normal, shape)

    def uniform_noise(self, shape):
        """u ~ U(0, 1) of `shape` (batch first), drawn like `normal_noise` (the stick-breaking
        content code's noise)."""
        return self._replica_noise(keras.random.uniform, shape)

    def _replica_noise(self, draw, shape):
        replica = tf.distribute.get_replica_context()
        replicas = replica.num_replicas_in_sync if replica is not None else 1
        if replicas == 1:
            return draw(shape, dtype=self.compute_dtype, seed=self.seed_generator)
        shape = tf.unstack(tf.cast(shape, tf.int32)) if tf.is_tensor(shape) else list(shape)
        noise = draw([replicas * shape[0], *shape[1:]], dtype=self.compute_dtype,
                     seed=self.seed_generator)
        return tf.reshape(noise, [replicas, -1, *shape[1:]])[replica.replica_id_in_sync_group]

    def nll_per_image(self, params, x_flat):
        """-log p(x_t | .) summed over pixels, averaged over batch and time: nats per image.
        x_flat: the data, `flatten_frames(x, tf.float32)` (cast here if not float32)."""
        return tf.reduce_mean(
            self.likelihood.nll(tf.cast(params, tf.float32), tf.cast(x_flat, tf.float32)))

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
        logs = {name: tracker.result() for name, tracker in self.trackers.items()}
        strategy = tf.distribute.get_strategy()
        if (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
                and strategy.extended._in_multi_worker_mode()):
            # keras 3.15 all-reduces the logs of several workers with axis=0, which a scalar
            # lacks (tensorflow/tensorflow#72388): give each a leading axis of 1, which that
            # reduce removes again.
            logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs

    def compile(self, optimizer="adam", **kwargs):
        """Like `keras.Model.compile`; also hands `clip_norm` to the optimizer.

        optimizer="adam" (the default) is `FusedAdam`: Keras's Adam, one kernel per variable.

        Keras's optimizer clips after loss-scale unscaling and after the cross-replica
        all-reduce, which is where a global-norm clip belongs; an optimizer that already
        clips keeps its own setting.
        """
        if isinstance(optimizer, str) and optimizer.lower() == "adam":
            optimizer = FusedAdam()
        optimizer = keras.optimizers.get(optimizer)
        inner = getattr(optimizer, "inner_optimizer", optimizer)
        if self.clip_norm and not (inner.global_clipnorm or inner.clipnorm or inner.clipvalue):
            inner.global_clipnorm = self.clip_norm
        super().compile(optimizer=optimizer, **kwargs)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # These models build their weights in __init__ and compile no loss or metrics, so only
        # the optimizer is left to build, here, in the strategy's scope (keras 3.15 differs):
        # - without a strategy keras builds nothing here; the optimizer's slots were then made
        #   inside the first trace of the train function, and a tf.function that creates
        #   variables is traced twice (the first call took twice as long);
        # - under a strategy keras pulls a batch and all-reduces it only to build what is
        #   unbuilt from its shapes; with MultiWorkerMirroredStrategy that reduce fails on
        #   (x, y) batches.
        pending = [getattr(self, "_compile_metrics", None), getattr(self, "_compile_loss", None)]
        if (not all(layer.built for layer in self._flatten_layers())
                or any(p is not None and not p.built for p in pending)):
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        with self.distribute_strategy.scope():
            self._symbolic_build()

    def compile_from_config(self, config):
        # What keras.Model does, which it skips (with a warning) once `compile` is overridden:
        # without it a reloaded model would lose its optimizer state.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def train_step(self, data):
        # A snapshot: the variable itself would read one step later after `apply`.
        step = tf.identity(self.optimizer.iterations)
        with tf.GradientTape() as tape:
            terms = {k: tf.cast(v, tf.float32)
                     for k, v in self.terms_from_data(data, training=True).items()}
            loss = self.total_loss(terms, step)
            # Each replica's loss is its local mean; the optimizer sums across replicas.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(loss / replicas)
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        return self._record(loss, terms, step)

    def test_step(self, data):
        optimizer = getattr(self, "optimizer", None)
        step = optimizer.iterations if optimizer is not None else 0
        terms = {k: tf.cast(v, tf.float32)
                 for k, v in self.terms_from_data(data, training=False).items()}
        return self._record(self.total_loss(terms, step), terms, step)

    @classmethod
    def from_config(cls, config):
        # A model's layers are made in its constructor and take the global dtype policy, as
        # every Keras layer does: a `.keras` file of a mixed_bfloat16 run, loaded where the
        # policy is float32, would otherwise mix float32 layers into a bfloat16 model.
        policy = config.get("dtype")
        if policy is None:
            return cls(**config)
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(keras.dtype_policies.get(policy))
        try:
            return cls(**config)
        finally:
            keras.mixed_precision.set_global_policy(previous)

    def get_config(self):
        return {
            **super().get_config(),
            "image_shape": list(self.image_shape), "seq_len": self.seq_len,
            "likelihood": self.likelihood.name, "gaussian_scale": self.likelihood.scale,
            "clip_norm": self.clip_norm, "seed": self.seed,
            # A subclass names its weights as constructor arguments (beta_z, beta_f, ...).
            **{f"beta_{k[3:]}": serialize(v) for k, v in self.kl_weights.items()},
        }


def check_positive(**sizes):
    for name, value in sizes.items():
        if int(value) <= 0:
            raise ValueError(f"`{name}` must be a positive integer, got {value}")


def no_content_terms(n):
    """The content entries of `posterior_terms` for a model without a content code f:
    zero log densities and KL, zero-width codes, for n rows."""
    zeros = tf.zeros([n, 1])
    empty = tf.zeros([n, 0])
    return {"log_pf": zeros, "log_qf": zeros, "kl_f": tf.zeros([n]), "kl_f_dims": empty,
            "f_loc": empty, "f_sample": empty}
