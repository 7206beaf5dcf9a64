"""What a user does with a model of a content code f and style codes z_{1:T}.

Shared by the Disentangled VRNN and the content/style VAE: everything here is written in terms
of the model's `encode(x, sample)` (f_loc, z_loc, ...), `decode(f, z=None)` (z=None draws the
style from the model's own prior), its content code (`dvrnn_tf.models.content_codes`: draws
from the model's content prior, interpolation on the simplex for the simplex priors),
`normal_noise`, `seq_len` and `z_dim`.
"""
import tensorflow as tf


class ContentStyleGeneration:
    """Mixin: sample, fix, swap and interpolate the two codes (paper Fig. 4, and more)."""

    def generate(self, n):
        """n sequences with f ~ p(f) and each z_t from the model's style prior."""
        return self.decode(self.sample_content(n))

    def generate_fixed_content(self, n):
        """One f ~ p(f) for all n sequences, fresh z per sequence (paper Fig. 4 bottom)."""
        return self.decode(tf.repeat(self.sample_content(1), n, axis=0))

    def generate_fixed_style(self, n):
        """Per sequence one z ~ N(0, I) used at every step, a fresh f at each step (Fig. 4 top)."""
        z = tf.repeat(self.normal_noise((n, 1, self.z_dim)), self.seq_len, axis=1)
        return self.decode(self.sample_content_per_step(n), z)

    def swap(self, x_content, x_style):
        """f of each sequence in x_content decoded with the z_{1:T} of the one in x_style (means)."""
        # Fix: encode(sample=False), else the "means" of z followed a random path (and a random f).
        a, b = self.encode(x_content, sample=False), self.encode(x_style, sample=False)
        return self.decode(a["f_loc"], b["z_loc"])

    def interpolate(self, x_a, x_b, steps=8, code="f"):
        """Decode `steps` points on the line from A's code to B's (the other code kept from A).

        x_a, x_b: [1, T, H, W, C]; code: "f" or "z". Returns [steps, T, H, W, C].
        """
        if code not in ("f", "z"):
            raise ValueError(f"`code` must be 'f' or 'z', got {code!r}")
        # Fix: deterministic means, as in `swap`.
        a, b = self.encode(x_a, sample=False), self.encode(x_b, sample=False)
        w = tf.cast(tf.linspace(0.0, 1.0, steps), a["f_loc"].dtype)  # the codes' dtype
        f, z = tf.repeat(a["f_loc"], steps, 0), tf.repeat(a["z_loc"], steps, 0)
        if code == "f":
            f = self.interpolate_content(a["f_loc"], b["f_loc"], steps)
        else:
            z = (1 - w[:, None, None]) * a["z_loc"] + w[:, None, None] * b["z_loc"]
        return self.decode(f, z)
