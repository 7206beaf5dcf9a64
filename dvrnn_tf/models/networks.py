"""The frame networks a sequence model is built with: MLP or convolutional (DESIGN 6).

A model maps each flattened frame x_t [..., D] to features with its frame encoder phi_x, and
its decoder's last hidden layer to the likelihood's parameters [..., P * D] with its frame
decoder (`dvrnn_tf.layers.frame_networks`). `--network=mlp` keeps the papers' Dense layers;
`--network=conv` uses DCGAN-like stride-2 4x4 convolutions of --conv_channels, --conv_layers
deep each way (and --decoder_refine_layers stride-1 layers after each of the decoder's).
Everything between (recurrences, codes, priors) is the family's own.
"""
from dvrnn_tf.layers.frame_networks import (NETWORKS, check_conv_shape, frame_decoder,
                                            frame_encoder)


class FrameNetworks:
    """Mixin for `LatentVariableModel`s: the choice of frame networks and their layers."""

    def _init_networks(self, network="mlp", conv_channels=32, conv_layers=4,
                       decoder_refine_layers=0):
        if network not in NETWORKS:
            raise ValueError(f"`network` must be one of {', '.join(NETWORKS)}, got {network!r}")
        if network == "conv":
            check_conv_shape(self.image_shape, conv_layers)
        self.network = network
        self.conv_channels, self.conv_layers = int(conv_channels), int(conv_layers)
        self.decoder_refine_layers = int(decoder_refine_layers)

    def frame_encoder_layer(self, hidden_dim, name="phi_x"):
        """phi_x: flat frames [..., D] -> features [..., hidden_dim]."""
        return frame_encoder(self.network, self.image_shape, hidden_dim, self.conv_channels,
                             self.conv_layers, name=name)

    def frame_decoder_layer(self, name="decoder_out"):
        """Hidden features [..., d] -> the likelihood's parameters [..., P * D]."""
        return frame_decoder(self.network, self.image_shape,
                             self.likelihood.params_per_pixel, self.conv_channels,
                             self.conv_layers, self.decoder_refine_layers, name=name)

    def network_config(self) -> dict:
        return {"network": self.network, "conv_channels": self.conv_channels,
                "conv_layers": self.conv_layers,
                "decoder_refine_layers": self.decoder_refine_layers}
