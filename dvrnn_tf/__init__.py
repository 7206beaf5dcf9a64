"""dvrnn_tf: disentangled content and style codes from image sequences (Keras 3 + TFP)."""
__version__ = "0.1.0"
