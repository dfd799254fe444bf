"""The ViTs of lee2024 (H&T ViT-Tiny) and hernandez-garcia2025 (SWR):
parameter counts, exact attention and patching, per-tensor reference
inits, dropout, serialisation and a mirrored training step."""

import keras
import numpy as np
import pytest

from zapkeras import distribute
from zapkeras import models
from zapkeras.errors import UsageError
from zapkeras.models.vit import SelfAttention
from zapkeras.models.vit import vit

MIRRORED = ("/cpu:0", "/cpu:1")


def _count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _hare_tortoise_params(dim, depth, mlp, classes, patch_dim=48, tokens=64):
    """lucidrains' ViT by hand: LN(patch) → Linear → LN, cls + pos, per
    block LN, bias-free qkv, out-proj, LN, two MLP Linears; LN; head."""
    block = 2 * dim + 3 * dim * dim + dim * dim + dim + 2 * dim
    block += dim * mlp + mlp + mlp * dim + dim
    embed = 2 * patch_dim + patch_dim * dim + dim + 2 * dim
    embed += dim + (tokens + 1) * dim
    return embed + depth * block + 2 * dim + dim * classes + classes


def _swr_params(dim, depth, mlp, classes, patch_dim=48, tokens=64):
    """torchvision's ViT by hand: conv stem, cls + pos, per block LN,
    packed in-proj with bias, out-proj, LN, MLP; LN; head."""
    block = 2 * dim + 3 * dim * dim + 3 * dim + dim * dim + dim + 2 * dim
    block += dim * mlp + mlp + mlp * dim + dim
    embed = patch_dim * dim + dim + dim + (tokens + 1) * dim
    return embed + depth * block + 2 * dim + dim * classes + classes


@pytest.fixture(scope="module")
def hare_tortoise():
    keras.utils.set_random_seed(0)
    return vit(100)


@pytest.fixture(scope="module")
def swr():
    keras.utils.set_random_seed(0)
    return vit(100, preset="swr")


def test_vit_tiny_of_hare_tortoise(hare_tortoise):
    assert _hare_tortoise_params(192, 12, 768, 100) == 5_373_700
    assert _count(hare_tortoise) == 5_373_700
    assert hare_tortoise.get_layer("block11_mlp1").units == 768
    assert hare_tortoise.get_layer("block0_attention").heads == 3
    assert hare_tortoise.get_layer("patch_norm").output.shape == (None, 64, 48)
    assert hare_tortoise.get_layer("embedding").output.shape == (None, 65, 192)
    assert hare_tortoise.output.shape == (None, 100)
    assert not hare_tortoise.get_layer("block0_qkv").use_bias
    assert hare_tortoise.get_layer("final_norm").epsilon == 1e-5


def test_swr_vit_of_hernandez_garcia(swr):
    assert _swr_params(384, 8, 1536, 100) == 14_279_140
    assert _count(swr) == 14_279_140
    assert swr.get_layer("block7_attention").heads == 12
    assert swr.get_layer("patch_embed").strides == (4, 4)
    assert swr.get_layer("block0_qkv").bias.shape == (1152,)
    # The experiment passes torch.nn.LayerNorm (eps 1e-5) as norm_layer.
    assert swr.get_layer("block3_norm2").epsilon == 1e-5
    reparam = vit(10, preset="swr", depth=1, layer_norm="reparam")
    norms = [layer for layer in reparam.layers if "norm" in layer.name]
    assert len(norms) == 3
    for layer in norms:
        assert isinstance(layer, models.ReparamLayerNorm)
        assert layer.epsilon == 1e-6


def test_swr_head_is_zero_so_logits_start_at_zero(swr):
    head = swr.get_layer("classifier")
    assert not head.kernel.numpy().any() and not head.bias.numpy().any()
    x = np.random.default_rng(0).random((2, 32, 32, 3), np.float32)
    assert not swr(x).numpy().any()


def _uniform_bound(values, bound):
    assert np.abs(values).max() <= bound
    assert np.abs(values).max() > 0.99 * bound
    assert abs(values.std() / (bound / np.sqrt(3)) - 1) < 0.02


def test_swr_reference_inits(swr):
    dim, mlp = 384, 1536
    embedding = swr.get_layer("embedding")
    assert not embedding.class_token.numpy().any()
    pos = embedding.position_embedding.numpy()
    assert abs(pos.std() / 0.02 - 1) < 0.02 and abs(pos.mean()) < 1e-3
    stem = swr.get_layer("patch_embed")
    std = np.sqrt(1 / 48)
    assert abs(stem.kernel.numpy().std() / std - 1) < 0.02
    assert np.abs(stem.kernel.numpy()).max() > 3 * std  # not 2-std cut
    assert not stem.bias.numpy().any()
    qkv = swr.get_layer("block2_qkv")
    # Xavier-uniform over the packed (3·dim, dim) in-proj weight.
    _uniform_bound(qkv.kernel.numpy(), np.sqrt(6 / (dim + 3 * dim)))
    assert not qkv.bias.numpy().any()
    out = swr.get_layer("block2_attn_out")
    _uniform_bound(out.kernel.numpy(), 1 / np.sqrt(dim))
    assert not out.bias.numpy().any()
    for name, fan_in in (("block2_mlp1", dim), ("block2_mlp2", mlp)):
        layer = swr.get_layer(name)
        _uniform_bound(layer.kernel.numpy(), 1 / np.sqrt(fan_in))
        bias = layer.bias.numpy()
        assert 0.9 / np.sqrt(fan_in) < np.abs(bias).max() <= 1 / np.sqrt(fan_in)
    norm = swr.get_layer("block2_norm1")
    assert np.all(norm.gamma.numpy() == 1) and not norm.beta.numpy().any()


def test_hare_tortoise_reference_inits(hare_tortoise):
    embedding = hare_tortoise.get_layer("embedding")
    # torch.randn for both (192 and 65·192 draws).
    assert abs(embedding.class_token.numpy().std() - 1) < 0.25
    pos = embedding.position_embedding.numpy()
    assert abs(pos.std() - 1) < 0.02 and abs(pos.mean()) < 0.02
    _uniform_bound(
        hare_tortoise.get_layer("block5_qkv").kernel.numpy(), 1 / np.sqrt(192)
    )
    _uniform_bound(
        hare_tortoise.get_layer("block5_mlp2").kernel.numpy(), 1 / np.sqrt(768)
    )
    for name, fan_in in (("patch_embed", 48), ("classifier", 192)):
        bias = hare_tortoise.get_layer(name).bias.numpy()
        assert 0.8 / np.sqrt(fan_in) < np.abs(bias).max() <= 1 / np.sqrt(fan_in)


def test_keras_init_uses_keras_defaults():
    keras.utils.set_random_seed(0)
    model = vit(10, preset="swr", depth=1, init="keras")
    head = model.get_layer("classifier")
    assert head.kernel.numpy().any() and not head.bias.numpy().any()
    assert not model.get_layer("block0_mlp1").bias.numpy().any()


def _numpy_attention(qkv, heads):
    """Reference multi-head attention, one head at a time."""
    batch, tokens, three_dim = qkv.shape
    dim = three_dim // 3
    hd = dim // heads
    q, k, v = qkv[..., :dim], qkv[..., dim : 2 * dim], qkv[..., 2 * dim :]
    out = np.zeros((batch, tokens, dim))
    for h in range(heads):
        cols = slice(h * hd, (h + 1) * hd)
        scores = q[..., cols] @ k[..., cols].transpose(0, 2, 1) / np.sqrt(hd)
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        out[..., cols] = weights @ v[..., cols]
    return out


def test_self_attention_is_exact_multi_head_attention():
    qkv = np.random.default_rng(1).normal(size=(3, 5, 3 * 12)).astype("f4")
    layer = SelfAttention(heads=4, dropout=0.5)
    np.testing.assert_allclose(
        layer(qkv), _numpy_attention(qkv, 4), rtol=1e-5, atol=1e-5
    )
    # Dropout acts on the attention weights only in training.
    assert np.abs(layer(qkv, training=True) - layer(qkv)).max() > 1e-3


def test_patches_are_flattened_like_the_references():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(2).random((2, 8, 8, 3), np.float32)
    ht = vit(5, image_size=8, patch_size=4, dim=6, depth=1, heads=2, mlp_dim=4)
    patches = keras.Model(ht.input, ht.get_layer("patches").output)(x)
    # einops 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)' in NHWC terms.
    expected = x.reshape(2, 2, 4, 2, 4, 3).transpose(0, 1, 3, 2, 4, 5)
    np.testing.assert_array_equal(patches, expected.reshape(2, 4, 48))
    swr = vit(5, image_size=8, preset="swr", dim=6, depth=1, heads=2)
    stem = swr.get_layer("patch_embed")
    tokens = keras.Model(swr.input, swr.get_layer("patches").output)(x)
    linear = expected.reshape(2, 4, 48) @ stem.kernel.numpy().reshape(48, 6)
    np.testing.assert_allclose(tokens, linear + stem.bias, atol=1e-5)


def test_dropout_only_in_training_and_mean_pool():
    keras.utils.set_random_seed(0)
    model = vit(
        4, image_size=8, dim=8, depth=1, heads=2, mlp_dim=16, pool="mean"
    )
    x = np.random.default_rng(3).random((2, 8, 8, 3), np.float32)
    np.testing.assert_array_equal(model(x), model(x))
    assert np.abs(model(x, training=True) - model(x)).max() > 1e-4
    final = keras.Model(model.input, model.get_layer("final_norm").output)(x)
    pooled = models.feature_extractor(model)(x)
    np.testing.assert_allclose(pooled, final.numpy().mean(1), atol=1e-6)


def test_same_seed_same_weights_and_keras_round_trip(tmp_path):
    weights = []
    for _ in range(2):
        keras.utils.set_random_seed(5)
        model = vit(3, image_size=8, dim=8, depth=1, heads=2, mlp_dim=8)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
    path = str(tmp_path / "vit.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(4).random((2, 8, 8, 3), np.float32)
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)
    assert loaded.get_layer("block0_attention").heads == 2


def test_one_mirrored_step_keeps_replicas_identical():
    strategy = distribute.mirrored(MIRRORED)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = vit(3, image_size=8, preset="swr", dim=8, depth=1, heads=2)
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    rng = np.random.default_rng(5)
    x = rng.random((8, 8, 8, 3), np.float32)
    model.fit(x, rng.integers(0, 3, 8), batch_size=8, epochs=1, verbose=0)
    head = model.get_layer("classifier").kernel
    assert head.numpy().any()  # trained away from its zero init
    for variable in model.trainable_variables:
        first, second = strategy.experimental_local_results(variable.value)
        np.testing.assert_array_equal(first.numpy(), second.numpy())


@pytest.mark.parametrize(
    "kwargs, setting",
    [
        ({"preset": "deit"}, "vit.preset"),
        ({"dim": 10, "heads": 3}, "vit.heads"),
        ({"mlp_dim": 0}, "vit.mlp_dim"),
        ({"image_size": 30}, "vit.patch_size"),
        ({"layer_norm": "rms"}, "vit.layer_norm"),
        ({"pool": "max"}, "vit.pool"),
        ({"init": "xavier"}, "vit.init"),
    ],
)
def test_bad_settings_raise_usage_error(kwargs, setting):
    with pytest.raises(UsageError, match=setting):
        vit(10, **kwargs)
