"""Data: labelled image sets (sources) and same-class image sequences (sequences)."""
from dvrnn_tf.data.sources import (DataUnavailableError, ImageSet, available_datasets,
                                   load_split)

__all__ = ["DataUnavailableError", "ImageSet", "available_datasets", "load_split"]
from dvrnn_tf.data.sequences import BINARIZE, LAYOUTS, SequenceSampler

__all__ += ["BINARIZE", "LAYOUTS", "SequenceSampler"]
