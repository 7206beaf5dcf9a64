"""A model from a `TrainConfig`: the one place that maps flags to constructor arguments."""
from dvrnn_tf.objectives import kl_weight_from_flags


def kl_weights(config):
    """(beta_z, beta_f) as KLWeight objects from the per-term schedule flags."""
    common = dict(warmup_steps=config.warmup_steps, gamma=config.capacity_gamma,
                  capacity_steps=config.capacity_steps)
    beta_z = kl_weight_from_flags(config.kl_z_schedule, config.beta_z,
                                  c_max=config.capacity_z, **common)
    beta_f = kl_weight_from_flags(config.kl_f_schedule, config.beta_f,
                                  c_max=config.capacity_f, **common)
    return beta_z, beta_f


def build_model(config, image_shape, seq_len, num_classes=10):
    """The model named by config.model for frames of `image_shape` (H, W, C) and T = seq_len;
    `num_classes` (the data set's) sizes the CVAE's label input and split layers."""
    from dvrnn_tf.models import MODELS  # models import TensorFlow: keep config parsing light

    beta_z, beta_f = kl_weights(config)
    common = dict(image_shape=image_shape, seq_len=seq_len, likelihood=config.likelihood,
                  clip_norm=config.clip_norm, seed=config.seed, hidden_dim=config.hidden_dim,
                  z_dim=config.z_dim, beta_z=beta_z)
    cls = MODELS[config.model]
    if config.model == "vrnn":
        return cls(rnn_dim=config.rnn_dim, **common)
    if config.model in ("full", "factorized"):
        return cls(variant=config.model, rnn_dim=config.rnn_dim, f_dim=config.f_dim,
                   beta_f=beta_f, **common)
    if config.model == "disentangled":
        return cls(f_dim=config.f_dim, beta_f=beta_f, kl_z_free_bits=config.kl_z_free_bits,
                   style_sees_content=config.style_sees_content, **common)
    if config.model == "cvae":
        return cls(num_classes=num_classes, split_encoder=config.split_encoder,
                   split_decoder=config.split_decoder, **common)
    return cls(**common)
