"""Data: sequence sources (one module each in `sources/`), the samplers that make tf.data
pipelines of them, and the labelled image sets the same-class sequences are drawn from."""
from dvrnn_tf.data.image_sets import (DataUnavailableError, ImageSet, available_datasets,
                                      load_split)
from dvrnn_tf.data.image_sequences import LAYOUTS, SequenceSampler
from dvrnn_tf.data.pipeline import BINARIZE
from dvrnn_tf.data.registry import SPLITS, SequenceSource, open_source
from dvrnn_tf.data.spec import DataSpec, Factor

__all__ = ["BINARIZE", "DataSpec", "DataUnavailableError", "Factor", "ImageSet", "LAYOUTS",
           "SPLITS", "SequenceSampler", "SequenceSource", "available_datasets", "load_split",
           "open_source"]
