"""Attention of the style path over the content encoder (the first paper's section 5; DESIGN 7).

How the Disentangled VRNN will use it. Shapes: B sequences, T steps, r the style GRU's width,
c the content GRU's width, U = `units`.

  content encoder  c_{1:T} = GRU(phi_x(x_{1:T}))                      [B, T, c]
                   (today only the last state is kept: q(f | x) = head(c_T))
  step t           context_t, weights_t = ContentAttention(h_{t-1}, c_{1:T})
                                                                      [B, U], [B, T]
  decoder          p(x_t | phi_z(z_t), context_t, h_{t-1}) instead of phi_f(f), or beside it
  full             h_t = GRU([phi_x(x_t), phi_z(z_t), context_t], h_{t-1}): the context enters
                   the recurrence, so it is computed inside the step loop (the query h_{t-1}
                   exists only there) and the fused `VRNNCell.run_sequence` needs a per-step
                   cond computed in the loop;
  factorized       h never sees the context: after the recurrence one call with the query
                   h_{0:T-1} = style["h_prev"] [B, T, r] gives all T contexts [B, T, U].

What it does to the ELBO, and which code carries what. The context is a deterministic function
of x: whatever reaches the decoder through it is paid for in no KL, neither KL_f nor KL_z.
Worse, the content GRU runs forward over all T frames, so c_s for every s >= t has read x_t:
the decoder of x_t can read x_t itself. Its "reconstruction" term is then log p(x_t | ..., x_t),
not a likelihood, and neither -ELBO nor the IWAE bound bounds -log p(x) any more (and
`generate` has no x to encode). That is the leak the issue asks to measure: such a model's NLL
can fall towards 0 while f and z carry nothing; do not put its bounds beside the others. Three
variants, all served by this layer (keys/values and `content_mask` are the model's choice):

  A. deterministic, all states (the paper's words): leaks x_t as above. Only a demonstration.
  B. deterministic, causal: content_mask [B, T, T_c] allows s < t only, with a null state
     c_0 = 0 prepended so that step 1 attends to something (T_c = T + 1). The context is a
     function of x_{<t}, like h_{t-1}: the bounds stay bounds, the path is free like h's, and
     generation runs the content GRU over the frames generated so far.
  C. stochastic slots: each state gives its own code f_s ~ q(f_s | c_s) (a
     `ContentPosteriorHead` on c_s), with the content prior p(f_s) for each s; keys and values
     are phi_f(f_{1:T}), not c. KL_f = sum_s KL(q(f_s | x) || p(f_s)): every nat through the
     attention is paid; the IWAE proposal is prod_s q(f_s | x); generation draws f_{1:T} from
     the prior; swap and interpolation act on the set f_{1:T}.

Proposed: build C, and B beside it as the free-path comparison. C is the only variant in which
information reaching the decoder through the attention is priced in nats, so "does attention
help or leak?" becomes a measured split (KL of the slots against KL_z, the attention weights'
mass on s = t), while the bounds stay bounds and generate / fixed content / swap keep working
without an encoder over generated frames. Its caveat is measurable too: a slot f_s summarizes
x_{1:s}, so slots can carry per-frame style (paid like z_t); weights concentrated on s = t and
a falling swap accuracy would show it.

Built: C, as `--content_attention=slots` of the Disentangled VRNN (full and factorized;
`dvrnn_tf/models/families/disentangled_vrnn.py`, measured in docs/proposals.md). B is not
built: its context is a second unpriced path beside h_{t-1}, so it cannot say which code
carries what, and A is not a model of the data.

Why `keras.layers.MultiHeadAttention` and not `keras.layers.Attention`: the query (h, width r)
and the keys (c, width c) live in different spaces of different widths; `Attention` compares
raw vectors (dot or additive scores without projections), MultiHeadAttention learns the query,
key, value and output projections (to U), has heads, and returns its weights
(`return_attention_scores`).
"""
import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="dvrnn_tf")
class ContentAttention(keras.layers.Layer):
    """Each query attends over content states: (context, weights).

    call(query, content_states, content_mask=None):
      query: [B, T, r] (one per step) or [B, r] (one step);
      content_states: [B, T_c, c] (keys and values);
      content_mask: None, [B, T_c] or [B, T, T_c] booleans, True where a state may be attended.
        Every query must be allowed at least one state: Keras's masked softmax spreads a row
        with none uniformly over all states.
    Returns context [B, T, units] ([B, units] for one step) and weights [B, T, T_c]
    ([B, T_c]), the attention distribution averaged over heads: rows sum to 1 over the states.

    Args: units (width of the context), heads, key_dim (per head; default units // heads),
    dropout (on the attention weights, training only).
    """

    def __init__(self, units, heads=1, key_dim=None, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("units", units), ("heads", heads)):
            if isinstance(value, bool) or int(value) != value or int(value) <= 0:
                raise ValueError(f"`{name}` must be a positive integer, got {value}")
        if key_dim is None:
            if units % heads:
                raise ValueError(f"`units` ({units}) must be a multiple of `heads` ({heads}) "
                                 "unless `key_dim` is given")
            key_dim = units // heads
        if isinstance(key_dim, bool) or int(key_dim) != key_dim or int(key_dim) <= 0:
            raise ValueError(f"`key_dim` must be a positive integer, got {key_dim}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout}")
        self.units, self.heads, self.key_dim = int(units), int(heads), int(key_dim)
        self.dropout = float(dropout)
        self.attention = keras.layers.MultiHeadAttention(
            num_heads=self.heads, key_dim=self.key_dim, output_shape=self.units,
            dropout=self.dropout, dtype=self.dtype_policy, name="attention")

    def build(self, query_shape, content_states_shape):
        query_shape = tuple(query_shape)
        if len(query_shape) == 2:
            query_shape = (query_shape[0], 1, query_shape[1])
        self.attention.build(query_shape, tuple(content_states_shape))

    def call(self, query, content_states, content_mask=None, training=None):
        one_step = query.shape.rank == 2
        if one_step:
            query = query[:, None, :]
        mask = None
        if content_mask is not None:
            mask = tf.cast(content_mask, tf.bool)
            if mask.shape.rank == 2:
                mask = mask[:, None, :]
            shape = tf.concat([tf.shape(query)[:2], tf.shape(content_states)[1:2]], 0)
            mask = tf.broadcast_to(mask, shape)
        context, scores = self.attention(query, content_states, attention_mask=mask,
                                         return_attention_scores=True, training=training)
        weights = tf.reduce_mean(scores, axis=1)  # [B, heads, T, T_c] -> [B, T, T_c]
        if one_step:
            return context[:, 0], weights[:, 0]
        return context, weights

    def compute_output_shape(self, query_shape, content_states_shape):
        lead = tuple(query_shape[:-1])
        return lead + (self.units,), lead + (content_states_shape[1],)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "heads": self.heads,
                "key_dim": self.key_dim, "dropout": self.dropout}
