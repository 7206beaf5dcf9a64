"""Moving MNIST: `--dataset=moving_mnist` (digits bouncing over a 64x64 canvas).

One or two MNIST digits (--moving_mnist_digits) moving with constant speed and bouncing off
the walls, T = --seq_len frames (20 by default), made with tensorflow-datasets'
`image_as_moving_sequence` (`dvrnn_tf.data.builders.moving_mnist`): train sequences from
MNIST's train digits, validation from its validation digits, test from its test digits.
Labels: the digit classes (static) and their positions (per frame, continuous). The set is
made once per (--data_seed, sizes, MNIST's prepared files) and cached under --data_dir.
"""
import functools
import hashlib

from dvrnn_tf.data import sequence_cache
from dvrnn_tf.data.array_sequences import ArraySequences
from dvrnn_tf.data.builders import moving_mnist
from dvrnn_tf.data.image_sets import load_split
from dvrnn_tf.data.registry import SequenceSource, register
from dvrnn_tf.data.settings import DATA_DIR, DATA_SEED, MANUAL_DIR, SEQ_LEN
from dvrnn_tf.data.spec import DataSpec, Factor
from dvrnn_tf.settings import Setting

RECIPE_VERSION = 1
SIZE = 64
DEFAULT_SEQ_LEN = 20
DIGITS = Setting("moving_mnist_digits", 2, "Moving MNIST: digits per sequence (1 or 2).",
                 lower=1, upper=moving_mnist.MAX_DIGITS)
SEQUENCES = Setting("moving_mnist_sequences", 10000, "Moving MNIST: training sequences "
                    "(validation gets a tenth as many, test a fifth).", lower=10)


@register
class MovingMNIST(SequenceSource):
    name = "moving_mnist"
    settings = (MANUAL_DIR, DATA_DIR, SEQ_LEN, DIGITS, SEQUENCES, DATA_SEED)
    metrics = ("likelihood", "probes")
    summary = "Moving MNIST: 1 or 2 digits bouncing over 64x64, T frames (default 20)"

    @property
    def seq_len(self):
        return self.values.seq_len or DEFAULT_SEQ_LEN

    @property
    def factors(self):
        d = self.values.moving_mnist_digits
        return (*(Factor(f"digit_{k}", 10) for k in range(d)),
                *(Factor(f"position_{k}", None, per_frame=True, shape=(2,)) for k in range(d)))

    def _counts(self):
        n = self.values.moving_mnist_sequences
        return {"train": n, "validation": max(1, n // 10), "test": max(1, n // 5)}

    @functools.cached_property
    def _entry(self):
        v = self.values
        load = dict(data_dir=v.data_dir or None, manual_dir=v.manual_dir or None)
        digits = {s: load_split("mnist", s, **load) for s in self._counts()}
        stamp = hashlib.sha256()
        for s in sorted(digits):  # the digits' bytes, cheaply: every 97th image
            stamp.update(digits[s].images[::97].tobytes())
        key = hashlib.sha256(
            f"moving_mnist\0{RECIPE_VERSION}\0{self.seq_len}\0{v.moving_mnist_digits}\0"
            f"{self._counts()}\0{v.data_seed}\0{stamp.hexdigest()}".encode()).hexdigest()[:16]

        def make_split(split):
            image_set = digits[split]
            # Each split its own stream of the seed: no sequence repeats across splits.
            return moving_mnist.make_moving_mnist(
                image_set.images, image_set.labels, self._counts()[split], seq_len=self.seq_len,
                num_digits=v.moving_mnist_digits, size=SIZE,
                seed=v.data_seed * 3 + ("train", "validation", "test").index(split))

        meta = {"source": self.name, "recipe_version": RECIPE_VERSION, "seq_len": self.seq_len,
                "digits": v.moving_mnist_digits, "data_seed": v.data_seed, "size": SIZE}
        return sequence_cache.ensure(sequence_cache.cache_root(v.data_dir) /
                                     f"moving_mnist-{key}", make_split, meta)

    def spec(self):
        return DataSpec((SIZE, SIZE, 1), self.seq_len, self.factors)

    def _make_split(self, name):
        x, labels = sequence_cache.load(self._entry, name)
        return ArraySequences(x, labels, self.factors, seed=self.seed, name=name,
                              binarize="dynamic" if self.binarize else "none")
