"""Settings that several sequence sources share (one flag each; a source lists those it takes)."""
from dvrnn_tf.settings import Setting

DATA_DIR = Setting("data_dir", "", "Where prepared data sets are kept (tfds's data_dir; the "
                   "generated video sets too). Default: tfds's own, and "
                   "$DVRNN_CACHE_DIR or ~/.cache/dvrnn_tf for generated sets.")
MANUAL_DIR = Setting("manual_dir", "", "A folder with the data set's original files, from "
                     "which it is prepared offline (MNIST's four .gz files, e.g. "
                     "../shared/data/mnist; the Sprites sheets, e.g. ../shared/data/sprites).")
SEQ_LEN = Setting("seq_len", 8, "T, frames per sequence.", lower=1)
