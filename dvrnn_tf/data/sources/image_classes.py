"""Same-class sequences from a labelled image set: digits, MNIST, any tfds classification set.

The first paper's data (Fig. 2): an element is T images of one class drawn independently, and
the class; or, with `--layout=rows`, the rows of one image as its T steps. The images come
from `dvrnn_tf.data.image_sets` (test from the set's test split; validation a fixed share of
its train split).
"""
from dvrnn_tf.data.image_sequences import DEFAULT_SEQ_LEN, LAYOUTS, SequenceSampler
from dvrnn_tf.data.image_sets import load_split
from dvrnn_tf.data.registry import SequenceSource, register
from dvrnn_tf.data.settings import DATA_DIR, MANUAL_DIR, SEQ_LEN
from dvrnn_tf.data.spec import DataSpec
from dvrnn_tf.settings import Setting

LAYOUT = Setting("layout", "sequences", "`sequences`: T same-class images; `rows`: an "
                 "image's rows are the time steps.", choices=LAYOUTS)
# Metrics that judge whole frames as images: meaningless when a frame is one row of an image.
_IMAGE_METRICS = ("judge", "swap", "label_preservation", "style_preservation", "knn")


@register
class ImageClassSequences(SequenceSource):
    name = "image_classes"
    fallback = True
    settings = (DATA_DIR, MANUAL_DIR, LAYOUT, SEQ_LEN)
    metrics = ("likelihood", *_IMAGE_METRICS, "probes", "concepts")
    summary = ("digits (embedded), mnist, or any tensorflow-datasets image-classification "
               "set by name (fashion_mnist, kmnist, ...)")

    def applicable_metrics(self):
        if self.values.layout == "rows":
            return tuple(m for m in self.metrics if m not in _IMAGE_METRICS)
        return self.metrics

    def why_not(self, metric):
        if self.values.layout == "rows" and metric in _IMAGE_METRICS:
            return "layout=rows: a frame is one row of an image, which the judge cannot classify"
        return super().why_not(metric)

    def image_set(self, split):
        return load_split(self.dataset, split, data_dir=self.values.data_dir or None,
                          manual_dir=self.values.manual_dir or None)

    def _make_split(self, name):
        image_set = self.image_set(name)
        layout, seq_len = self.values.layout, self.values.seq_len or DEFAULT_SEQ_LEN
        if layout == "rows":
            height = image_set.image_shape[0]
            if self.values.seq_len not in (0, DEFAULT_SEQ_LEN, height):
                raise ValueError(
                    f"--seq_len={seq_len} contradicts --layout=rows: the time steps are the "
                    f"image's {height} rows (leave --seq_len out or set it to that)")
            seq_len = None
        return SequenceSampler(image_set, seq_len=seq_len, layout=layout,
                               binarize="dynamic" if self.binarize else "none", seed=self.seed,
                               label_key="class")

    def spec(self):
        train = self.split("train")
        return DataSpec(train.image_shape, train.seq_len, train.factors)
