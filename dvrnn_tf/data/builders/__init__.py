"""How sequence sets are made: generated (Sprites, Moving MNIST) or read and checked (the
user's arrays and frame folders). The sources (`dvrnn_tf.data.sources`) cache what these make
(`dvrnn_tf.data.sequence_cache`)."""
