"""Vision Transformers of lee2024 (ViT-Tiny) and hernandez-garcia2025.

Both are pre-norm ViTs (Dosovitskiy et al. 2020) with a class token,
learned position embeddings, GELU MLPs and dropout on the embeddings, the
attention weights, the attention output and both MLP layers. `preset`
picks the reference repo's variant (docs/reference_codes.md §2.3,
§3.4); sizes left as None take the preset's:

- "hare_tortoise" (lee2024, lucidrains' vit-pytorch as the H&T repo uses
  it): dim 192, depth 12, 3 heads, MLP 768. Patches flattened in
  (row, col, channel) order → LayerNorm → Linear → LayerNorm; a bias-free
  fused qkv projection; class token and position embedding N(0, 1); every
  Linear PyTorch's default U(±1/√fan_in); LayerNorm eps 1e-5.
- "swr" (hernandez-garcia2025 §5, torchvision's ViT as modified by the SWR
  repo): dim 384, depth 8, 12 heads, MLP 1536. A conv patch stem (kernel
  N(0, 1/fan_in): torch's trunc_normal_ cuts at ±2 absolute, ≈ 14 std, so
  it is a plain normal; zero bias); nn.MultiheadAttention's packed in-proj
  Xavier-uniform over the whole (dim → 3·dim) matrix, zero in/out biases,
  out-proj U(±1/√dim); MLP weights and biases U(±1/√fan_in); class token
  0; position embedding N(0, 0.02); head zero-initialised. The paper's
  code builds its LayerNorms as `torch.nn.LayerNorm` (eps 1e-5, not
  torchvision's 1e-6) and the reparameterised ones with eps 1e-6; that is
  the default here (`layer_norm_epsilon` overrides it).

Attention is our own: one fused `block<i>_qkv` Dense (each reference has a
single fused tensor, so its init is exact: Keras' Glorot on a (dim, 3·dim)
kernel is torch's Xavier on the packed (3·dim, dim) weight), a weightless
`block<i>_attention` layer, and a `block<i>_attn_out` Dense. Every weight
is in a top-level Dense, LayerNorm or the `embedding` layer, with a
predictable name, for per-tensor (SWR) and per-unit (CBP/ReDo on
block<i>_mlp1 → block<i>_mlp2) methods.
"""

import math

import keras
from keras import ops

import gin
from zapkeras import settings
from zapkeras.errors import UsageError
from zapkeras.models import layers

PRESETS = {
    "hare_tortoise": {"dim": 192, "depth": 12, "heads": 3, "mlp_dim": 768},
    "swr": {"dim": 384, "depth": 8, "heads": 12, "mlp_dim": 1536},
}
LAYER_NORMS = ("standard", "reparam")
POOLS = ("cls", "mean")
_PRESET = settings.OneOf(
    *PRESETS,
    hint="use 'hare_tortoise' (lee2024 ViT-Tiny) or 'swr' "
    "(hernandez-garcia2025).",
)
_LAYER_NORM = settings.OneOf(
    *LAYER_NORMS,
    hint="use 'standard' or 'reparam' (x̂·(1 + γ) + β, "
    "hernandez-garcia2025 §5).",
)
_DROPOUT = settings.Fraction(high_open=True)


@keras.saving.register_keras_serializable(package="zapkeras")
class TokenEmbedding(keras.layers.Layer):
    """Prepends a learned class token and adds learned position embeddings.

    Weights `class_token` [1, 1, dim] and `position_embedding`
    [1, 1 + tokens, dim], drawn by the given initializers (attributes named
    `<weight>_initializer`, so SWR and ReDo can resample from them).
    """

    def __init__(
        self, class_token_initializer, position_embedding_initializer, **kwargs
    ):
        super().__init__(**kwargs)
        self.class_token_initializer = keras.initializers.get(
            class_token_initializer
        )
        self.position_embedding_initializer = keras.initializers.get(
            position_embedding_initializer
        )

    def build(self, input_shape):
        tokens, dim = input_shape[1], input_shape[2]
        self.class_token = self.add_weight(
            shape=(1, 1, dim),
            initializer=self.class_token_initializer,
            name="class_token",
        )
        self.position_embedding = self.add_weight(
            shape=(1, tokens + 1, dim),
            initializer=self.position_embedding_initializer,
            name="position_embedding",
        )

    def call(self, inputs):
        batch = ops.shape(inputs)[0]
        token = ops.broadcast_to(
            self.class_token, (batch, 1, self.class_token.shape[-1])
        )
        tokens = ops.concatenate([ops.cast(token, inputs.dtype), inputs], 1)
        return tokens + self.position_embedding

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1] + 1, input_shape[2])

    def get_config(self):
        return {
            **super().get_config(),
            "class_token_initializer": keras.initializers.serialize(
                self.class_token_initializer
            ),
            "position_embedding_initializer": keras.initializers.serialize(
                self.position_embedding_initializer
            ),
        }


@keras.saving.register_keras_serializable(package="zapkeras")
class SelfAttention(keras.layers.Layer):
    """Multi-head scaled dot-product attention of a fused qkv tensor.

    Input [B, N, 3·dim] laid out as torch's packed in-proj and lucidrains'
    `chunk(3)`: q, k, v along the last axis, each split into `heads`
    contiguous groups of dim/heads. softmax(q·kᵀ/√(dim/heads)), dropout on
    the attention weights, then the weighted values, heads concatenated:
    [B, N, dim]. No weights.
    """

    def __init__(self, heads, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.heads = heads
        self.rate = dropout
        self.dropout = keras.layers.Dropout(dropout)

    def call(self, qkv, training=None):
        tokens, dim = qkv.shape[1], qkv.shape[2] // 3
        head_dim = dim // self.heads
        qkv = ops.reshape(qkv, (-1, tokens, 3, self.heads, head_dim))
        q, k, v = ops.unstack(ops.transpose(qkv, (2, 0, 3, 1, 4)), 3)
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))
        weights = ops.softmax(scores / math.sqrt(head_dim), axis=-1)
        weights = self.dropout(weights, training=training)
        out = ops.transpose(ops.matmul(weights, v), (0, 2, 1, 3))
        return ops.reshape(out, (-1, tokens, dim))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:2], input_shape[2] // 3)

    def get_config(self):
        return {
            **super().get_config(),
            "heads": self.heads,
            "dropout": self.rate,
        }


@keras.saving.register_keras_serializable(package="zapkeras")
class TokenPool(keras.layers.Layer):
    """The class token ('cls') or the mean of all tokens ('mean')."""

    def __init__(self, mode="cls", **kwargs):
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, tokens):
        if self.mode == "cls":
            return tokens[:, 0]
        return ops.mean(tokens, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def _reference_init(preset, role, fan_in):
    """The reference code's initializers of one Dense/Conv (module doc)."""
    if preset == "hare_tortoise":
        return layers.torch_default(fan_in, use_bias=role != "qkv")
    zeros = {"bias_initializer": "zeros"}
    if role == "qkv":
        return {"kernel_initializer": "glorot_uniform", **zeros}
    if role == "attn_out":
        return {"kernel_initializer": layers.torch_uniform(fan_in), **zeros}
    if role == "mlp":
        return layers.torch_default(fan_in)
    if role == "patch":
        std = math.sqrt(1.0 / fan_in)
        normal = keras.initializers.RandomNormal(stddev=std)
        return {"kernel_initializer": normal, **zeros}
    return {"kernel_initializer": "zeros", **zeros}  # the classifier


def _check(image_size, patch_size, dim, heads):
    """The sizes that must divide one another."""
    if image_size % patch_size:
        raise UsageError(
            f"vit.image_size = {image_size}, vit.patch_size = {patch_size}; "
            "the patch size must divide the image size."
        )
    if dim % heads:
        raise UsageError(
            f"vit.dim = {dim}, vit.heads = {heads}; dim must be a multiple "
            "of the number of heads."
        )


@gin.configurable
@settings.declared("vit")
def vit(
    num_classes: settings.PositiveInt(example=100),
    *,
    image_size: settings.PositiveInt = 32,
    channels: settings.PositiveInt = 3,
    patch_size: settings.PositiveInt = 4,
    preset: _PRESET = "hare_tortoise",
    dim: settings.Maybe(settings.PositiveInt(example=192)) = None,
    depth: settings.Maybe(settings.NonNegativeInt(example=12)) = None,
    heads: settings.Maybe(settings.PositiveInt(example=3)) = None,
    mlp_dim: settings.Maybe(settings.PositiveInt(example=768)) = None,
    dropout: _DROPOUT = 0.1,
    emb_dropout: _DROPOUT = 0.1,
    pool: settings.OneOf(*POOLS) = "cls",
    layer_norm: _LAYER_NORM = "standard",
    layer_norm_epsilon=None,
    init: layers.Init = "reference",
):
    """Builds a ViT on float32 [B, image_size, image_size, channels] images.

    Args:
      num_classes: logits of the `classifier` Dense layer.
      image_size, channels, patch_size: square images cut in square patches.
      preset: 'hare_tortoise' or 'swr': the reference's architecture
        details and inits, and the defaults of dim/depth/heads/mlp_dim.
      dim, depth, heads, mlp_dim: token width, blocks, attention heads,
        MLP hidden width; None takes the preset's.
      dropout: on attention weights, attention output and MLP layers.
      emb_dropout: on the embedded tokens (the SWR repo uses `dropout`).
      pool: 'cls' (class token) or 'mean' (all tokens) before the head.
      layer_norm: 'standard' or 'reparam' (every LayerNorm).
      layer_norm_epsilon: None = the preset's (module doc).
      init: 'reference' = the preset repo's inits (module doc); 'keras' =
        Keras' defaults for every Dense/Conv (Glorot, zero bias; the
        tokens keep the preset's init).

    Layers: [patch_norm], patch_embed, [embed_norm], patches, embedding,
    embed_dropout; per block i: block<i>_norm1, _qkv, _attention,
    _attn_out, _attn_dropout, _attn_add, _norm2, _mlp1, _gelu,
    _mlp_dropout1, _mlp2, _mlp_dropout2, _mlp_add; final_norm, pool,
    classifier.
    """
    defaults = PRESETS[preset]
    dim = defaults["dim"] if dim is None else dim
    depth = defaults["depth"] if depth is None else depth
    heads = defaults["heads"] if heads is None else heads
    mlp_dim = defaults["mlp_dim"] if mlp_dim is None else mlp_dim
    _check(image_size, patch_size, dim, heads)
    if layer_norm_epsilon is None:
        reparam_swr = preset == "swr" and layer_norm == "reparam"
        layer_norm_epsilon = 1e-6 if reparam_swr else 1e-5

    def norm(name):
        if layer_norm == "reparam":
            return layers.ReparamLayerNorm(layer_norm_epsilon, name=name)
        return keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, name=name
        )

    def dense(units, fan_in, role, name):
        use_bias = not (preset == "hare_tortoise" and role == "qkv")
        kwargs = {"use_bias": use_bias}
        if init == "reference":
            kwargs.update(_reference_init(preset, role, fan_in))
        return keras.layers.Dense(units, name=name, **kwargs)

    grid = image_size // patch_size
    patch_dim = patch_size * patch_size * channels
    inputs = keras.Input((image_size, image_size, channels), name="images")
    if preset == "swr":
        kwargs = {}
        if init == "reference":
            kwargs = _reference_init(preset, "patch", patch_dim)
        x = keras.layers.Conv2D(
            dim, patch_size, strides=patch_size, name="patch_embed", **kwargs
        )(inputs)
        x = keras.layers.Reshape((grid * grid, dim), name="patches")(x)
        class_token = "zeros"
        position = keras.initializers.RandomNormal(stddev=0.02)
    else:
        shape = (grid, patch_size, grid, patch_size, channels)
        x = keras.layers.Reshape(shape, name="patch_grid")(inputs)
        x = keras.layers.Permute((1, 3, 2, 4, 5), name="patch_order")(x)
        x = keras.layers.Reshape((grid * grid, patch_dim), name="patches")(x)
        x = norm("patch_norm")(x)
        x = dense(dim, patch_dim, "patch", "patch_embed")(x)
        x = norm("embed_norm")(x)
        class_token = keras.initializers.RandomNormal(stddev=1.0)
        position = keras.initializers.RandomNormal(stddev=1.0)
    x = TokenEmbedding(class_token, position, name="embedding")(x)
    x = keras.layers.Dropout(emb_dropout, name="embed_dropout")(x)
    for i in range(depth):
        h = norm(f"block{i}_norm1")(x)
        h = dense(3 * dim, dim, "qkv", f"block{i}_qkv")(h)
        h = SelfAttention(heads, dropout, name=f"block{i}_attention")(h)
        h = dense(dim, dim, "attn_out", f"block{i}_attn_out")(h)
        h = keras.layers.Dropout(dropout, name=f"block{i}_attn_dropout")(h)
        x = keras.layers.Add(name=f"block{i}_attn_add")([x, h])
        h = norm(f"block{i}_norm2")(x)
        h = dense(mlp_dim, dim, "mlp", f"block{i}_mlp1")(h)
        h = keras.layers.Activation("gelu", name=f"block{i}_gelu")(h)
        h = keras.layers.Dropout(dropout, name=f"block{i}_mlp_dropout1")(h)
        h = dense(dim, mlp_dim, "mlp", f"block{i}_mlp2")(h)
        h = keras.layers.Dropout(dropout, name=f"block{i}_mlp_dropout2")(h)
        x = keras.layers.Add(name=f"block{i}_mlp_add")([x, h])
    x = norm("final_norm")(x)
    x = TokenPool(pool, name="pool")(x)
    outputs = dense(num_classes, dim, "classifier", "classifier")(x)
    return keras.Model(inputs, outputs, name=f"vit_{preset}")
