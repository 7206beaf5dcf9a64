"""Settings that several model families share (one flag each; a family lists those it takes).

A family's own settings (e.g. the CVAE's split layers) are declared in its module; these are
the ones whose meaning is the same wherever they appear.
"""
from dvrnn_tf.layers.content_priors import CONTENT_PRIORS
from dvrnn_tf.objectives import LIKELIHOODS, SCHEDULES, kl_weight_from_flags
from dvrnn_tf.settings import Setting

LIKELIHOOD = Setting("likelihood", "bernoulli", "Observation model p(x_t | .); `bernoulli` "
                     "binarizes the data dynamically and is the one whose loss is in nats.",
                     choices=tuple(LIKELIHOODS))
HIDDEN_DIM = Setting("hidden_dim", 100, "Width of every feature MLP.", lower=1)
RNN_DIM = Setting("rnn_dim", 100, "GRU state size (VRNN models).", lower=1)
Z_DIM = Setting("z_dim", 3, "Style code size per step (the beta-VAE's latent size).", lower=1)
F_DIM = Setting("f_dim", 20, "Content code size.", lower=1)

NETWORK = Setting("network", "mlp", "Frame encoder and decoder: `mlp` (Dense layers on "
                  "flattened pixels) or `conv` (DCGAN-like stride-2 4x4 convolutions).",
                  choices=("mlp", "conv"))
CONV_CHANNELS = Setting("conv_channels", 32, "--network=conv: channels of the first "
                        "convolution (doubled at each stride-2 layer).", lower=1)
CONV_LAYERS = Setting("conv_layers", 4, "--network=conv: stride-2 layers each way; H and W "
                      "must be divisible by 2**conv_layers.", lower=1, upper=8)
DECODER_REFINE_LAYERS = Setting("decoder_refine_layers", 0, "--network=conv: 3x3 stride-1 "
                                "convolutions after each of the decoder's transposed "
                                "convolutions (a deeper decoder at the same resolutions).",
                                lower=0, upper=8)
NETWORK_SETTINGS = (NETWORK, CONV_CHANNELS, CONV_LAYERS, DECODER_REFINE_LAYERS)

# KL weights, one schedule per term.
BETA_Z = Setting("beta_z", 1.0, "Weight of KL_z (constant or warm-up schedules).", lower=0.0)
BETA_F = Setting("beta_f", 1.0, "Weight of KL_f (constant or warm-up schedules).", lower=0.0)
KL_Z_SCHEDULE = Setting("kl_z_schedule", "constant", "Schedule of KL_z.",
                        choices=tuple(SCHEDULES))
KL_F_SCHEDULE = Setting("kl_f_schedule", "constant", "Schedule of KL_f.",
                        choices=tuple(SCHEDULES))
WARMUP_STEPS = Setting("warmup_steps", 1000, "Steps of the linear warm-up of a beta.", lower=0)
CAPACITY_GAMMA = Setting("capacity_gamma", 100.0, "gamma of the capacity objective "
                         "gamma*|KL - C|.", lower=0.0)
CAPACITY_Z = Setting("capacity_z", 5.0, "C_max of KL_z, nats per image (capacity schedule).",
                     lower=0.0)
CAPACITY_F = Setting("capacity_f", 5.0, "C_max of KL_f, nats per image (capacity schedule).",
                     lower=0.0)
CAPACITY_STEPS = Setting("capacity_steps", 10000, "Steps over which C rises linearly from 0 "
                         "to C_max.", lower=0)
_SCHEDULE_PARAMS = (WARMUP_STEPS, CAPACITY_GAMMA, CAPACITY_STEPS)
KL_Z_SETTINGS = (BETA_Z, KL_Z_SCHEDULE, CAPACITY_Z, *_SCHEDULE_PARAMS)
KL_F_SETTINGS = (BETA_F, KL_F_SCHEDULE, CAPACITY_F, *_SCHEDULE_PARAMS)


def kl_weight(values, term: str):
    """The `KLWeight` of KL_<term> ("z" or "f") from a family's setting values."""
    return kl_weight_from_flags(values[f"kl_{term}_schedule"], values[f"beta_{term}"],
                                warmup_steps=values["warmup_steps"],
                                gamma=values["capacity_gamma"], c_max=values[f"capacity_{term}"],
                                capacity_steps=values["capacity_steps"])


GAUSSIAN_SCALE = Setting("gaussian_scale", 0.1, "--likelihood=gaussian_fixed: the standard "
                         "deviation of every pixel.", lower=1e-4)
LIKELIHOOD_SETTINGS = (LIKELIHOOD, GAUSSIAN_SCALE)


def likelihood_args(values) -> dict:
    """The observation model's constructor arguments from a family's setting values."""
    return {"likelihood": values.likelihood, "gaussian_scale": values.gaussian_scale}


def network_args(values) -> dict:
    """The frame networks' constructor arguments from a family's setting values."""
    return {s.name: values[s.name] for s in NETWORK_SETTINGS}


def check_network(name, values, data) -> None:
    """A family's `check` for the frame networks: `--network=conv` needs frames the stride-2
    stack divides (ValueError naming --conv_layers and the frame size)."""
    from dvrnn_tf.layers.frame_networks import check_conv_shape

    if data is not None and values["network"] == "conv":
        check_conv_shape(data.image_shape, values["conv_layers"])


# The content code's prior (issue 15; DESIGN 7): shared by the Disentangled VRNN and the
# content/style VAE (`dvrnn_tf.models.content_codes`).
CONTENT_PRIOR = Setting("content_prior", "gaussian", "Posterior and prior of the content code "
                        "f: `gaussian` (N(0, I)), `dirichlet` (Dirichlet VAE: f on the "
                        "simplex) or `stick_breaking` (Kumaraswamy sticks against Beta(1, "
                        "alpha): f on the simplex, K = f_dim components).",
                        choices=CONTENT_PRIORS)
DIRICHLET_CONCENTRATION = Setting("dirichlet_concentration", 1.0, "--content_prior=dirichlet: "
                                  "the prior's concentration per component (1: uniform on the "
                                  "simplex; below 1: sparse codes).", lower=0.01, upper=100.0)
STICK_BREAKING_ALPHA = Setting("stick_breaking_alpha", 5.0, "--content_prior=stick_breaking: "
                               "alpha of the Beta(1, alpha) prior of each stick (larger: mass "
                               "spread over more components).", lower=0.01, upper=100.0)
CONTENT_PRIOR_SETTINGS = (CONTENT_PRIOR, DIRICHLET_CONCENTRATION, STICK_BREAKING_ALPHA)


def content_prior_args(values) -> dict:
    """The content code's constructor arguments from a family's setting values."""
    return {s.name: values[s.name] for s in CONTENT_PRIOR_SETTINGS}


def check_content_prior(values) -> None:
    """A code on the simplex needs two components at least (ValueError naming --f_dim)."""
    if values["content_prior"] != "gaussian" and values["f_dim"] < 2:
        raise ValueError(f"--f_dim={values['f_dim']} is too small for "
                         f"--content_prior={values['content_prior']}: a code on the simplex "
                         "needs f_dim >= 2")


def check_network_and_content(name, values, data) -> None:
    """`check_network` and `check_content_prior`: the check of the families with f."""
    check_network(name, values, data)
    check_content_prior(values)


# What `evaluate` measures of a model with a content code f and a style code z_{1:T}
# (`ModelFamily.metrics`; the data source decides which of them it can feed).
CONTENT_AND_STYLE_METRICS = ("likelihood", "judge", "swap", "label_preservation", "probes",
                             "style_preservation", "concepts",
                             "fixed_dynamics", "fixed_content", "factor_swap")
