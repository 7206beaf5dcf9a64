"""Models: the shared base class and recurrences, and one module per family in `families/`.

`dvrnn_tf.models.registry` says which `--model` names exist and builds them; importing this
package registers every family (and the Keras classes `keras.models.load_model` needs).
"""
from dvrnn_tf.models.base import LatentVariableModel
from dvrnn_tf.models.families.beta_vae import BetaVAE
from dvrnn_tf.models.families.content_style import ContentStyleVAE
from dvrnn_tf.models.families.cvae import CVAE
from dvrnn_tf.models.families.disentangled_vrnn import DisentangledVRNN
from dvrnn_tf.models.families.vrnn import VRNN
from dvrnn_tf.models.registry import build_model, family_of, get_family, model_names

__all__ = ["BetaVAE", "CVAE", "ContentStyleVAE", "DisentangledVRNN", "LatentVariableModel",
           "VRNN", "build_model", "family_of", "get_family", "model_names"]
