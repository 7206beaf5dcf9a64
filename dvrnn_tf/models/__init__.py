"""Models, one module per family. `MODELS` maps each `--model` flag value to its class."""
from dvrnn_tf.models.base import LatentVariableModel
from dvrnn_tf.models.beta_vae import BetaVAE
from dvrnn_tf.models.content_style import ContentStyleVAE
from dvrnn_tf.models.cvae import CVAE
from dvrnn_tf.models.disentangled import DisentangledVRNN
from dvrnn_tf.models.vrnn import VRNN

MODELS = {
    "vrnn": VRNN,
    "full": DisentangledVRNN,
    "factorized": DisentangledVRNN,
    "disentangled": ContentStyleVAE,
    "beta_vae": BetaVAE,
    "cvae": CVAE,
}

__all__ = ["MODELS", "BetaVAE", "CVAE", "ContentStyleVAE", "DisentangledVRNN", "LatentVariableModel", "VRNN"]
