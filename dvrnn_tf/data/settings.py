"""Settings that several sequence sources share (one flag each; a source lists those it takes)."""
from dvrnn_tf.settings import Setting

DATA_DIR = Setting("data_dir", "", "Where prepared data sets are kept: tfds's data_dir, and "
                   "the generated and converted sequence sets (default: tfds's own, and "
                   "$DVRNN_CACHE_DIR/data or ~/.cache/dvrnn_tf/data).")
MANUAL_DIR = Setting("manual_dir", "", "A folder with the data set's original files, from "
                     "which it is prepared offline (MNIST's four .gz files, e.g. "
                     "../shared/data/mnist; the Sprites sheets, e.g. ../shared/data/sprites).")
SEQ_LEN = Setting("seq_len", 0, "T, frames per sequence; 0: the data set's default (8 "
                  "same-class images, 20 Moving MNIST frames).", lower=0)
DATA_SEED = Setting("data_seed", 0, "Seeds how a sequence set is made and split (not the "
                    "run's --seed: runs of several seeds see the same data).", lower=0)
VALIDATION_FRACTION = Setting("validation_fraction", 0.1, "Share of the sequences held out "
                              "as validation.", lower=0.0, upper=1.0)
TEST_FRACTION = Setting("test_fraction", 0.1, "Share of the sequences held out as test.",
                        lower=0.0, upper=1.0)
