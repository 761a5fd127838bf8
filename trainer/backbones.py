"""Backbones by name, timm style: one `create_backbone(name)` builds any of them.

Every backbone maps a (size, size, 1) crop to a feature map; `build_network` puts the two
heads on it (`trainer.network`). Real sizes and tiny test variants are one name apart:

    resnet50        the paper's ResNet-50 (Keras' own, random init), 25M parameters
    resnet18        a ResNet-18-sized basic-block ResNet, 11M
    mobile          a MobileFaceNet-style inverted-residual net for the edge (width 1.0)
    mobile_s        the same at width 0.5: the shipped default
    *_tiny          a few thousand parameters, for tests

Weights are always from scratch: nothing can be downloaded here.
"""

from __future__ import annotations

from collections.abc import Callable

from edge_app.errors import PufError

_REGISTRY: dict[str, Callable] = {}


def register(name: str):
    def wrap(fn):
        _REGISTRY[name] = fn
        return fn

    return wrap


def backbone_names() -> list[str]:
    return sorted(_REGISTRY)


def create_backbone(name: str, input_shape: tuple[int, int, int]):
    """A Keras model from a crop (input_shape) to a feature map (h, w, c)."""
    if name not in _REGISTRY:
        raise PufError(f"unknown backbone {name!r}; known: {', '.join(backbone_names())}")
    return _REGISTRY[name](input_shape)


# ---- building blocks --------------------------------------------------------------
def _bn(x):
    import keras

    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)


def _conv_bn(x, filters, kernel, stride=1, act=True):
    import keras

    x = keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False)(x)
    x = _bn(x)
    return keras.layers.ReLU()(x) if act else x


def _basic_block(x, filters, stride):
    import keras

    shortcut = x
    y = _conv_bn(x, filters, 3, stride)
    y = _conv_bn(y, filters, 3, 1, act=False)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, stride, act=False)
    return keras.layers.ReLU()(keras.layers.Add()([y, shortcut]))


def _resnet_basic(input_shape, widths, blocks, name):
    import keras

    inputs = keras.Input(input_shape)
    # 112 -> 56 in the stem, then 56, 28, 14, 7: the last map keeps a 7x7 layout of where
    # texture is, which a fingerprint needs (arcface_torch's iresnet ends at 7x7 too)
    x = _conv_bn(inputs, widths[0], 3, 2)
    for stage, (width, count) in enumerate(zip(widths, blocks, strict=True)):
        for i in range(count):
            x = _basic_block(x, width, 2 if (i == 0 and stage > 0) else 1)
    return keras.Model(inputs, x, name=name)


def _inverted_residual(x, filters, stride, expansion):
    import keras

    cin = x.shape[-1]
    y = _conv_bn(x, cin * expansion, 1)
    y = keras.layers.DepthwiseConv2D(3, stride, padding="same", use_bias=False)(y)
    y = keras.layers.ReLU()(_bn(y))
    y = _conv_bn(y, filters, 1, act=False)
    if stride == 1 and cin == filters:
        y = keras.layers.Add()([x, y])
    return y


def _mobile(input_shape, width, stages, name, out_channels):
    """MobileFaceNet's layout: conv, depthwise, inverted residuals down to a 7x7 map."""
    import keras

    def w(c):
        return max(8, int(round(c * width / 8)) * 8)

    inputs = keras.Input(input_shape)
    x = _conv_bn(inputs, w(64), 3, 2)
    x = keras.layers.DepthwiseConv2D(3, 1, padding="same", use_bias=False)(x)
    x = keras.layers.ReLU()(_bn(x))
    for filters, stride, count, expansion in stages:
        for i in range(count):
            x = _inverted_residual(x, w(filters), stride if i == 0 else 1, expansion)
    x = _conv_bn(x, w(out_channels), 1)
    return keras.Model(inputs, x, name=name)


_MOBILEFACENET = [(64, 2, 5, 2), (128, 2, 1, 4), (128, 1, 6, 2), (128, 2, 1, 4), (128, 1, 2, 2)]


# ---- the registry -----------------------------------------------------------------
@register("resnet50")
def resnet50(input_shape):
    import keras

    return keras.applications.ResNet50(include_top=False, weights=None, input_shape=input_shape)


@register("resnet50_tiny")
def resnet50_tiny(input_shape):
    """Bottleneck blocks like ResNet-50, at 1/16 width and one block per stage."""
    import keras

    inputs = keras.Input(input_shape)
    x = _conv_bn(inputs, 8, 3, 2)
    for stage, width in enumerate((8, 16, 32, 64)):
        stride = 1 if stage == 0 else 2
        y = _conv_bn(x, width // 4, 1)
        y = _conv_bn(y, width // 4, 3, stride)
        y = _conv_bn(y, width, 1, act=False)
        x = keras.layers.ReLU()(keras.layers.Add()([y, _conv_bn(x, width, 1, stride, act=False)]))
    return keras.Model(inputs, x, name="resnet50_tiny")


@register("resnet18")
def resnet18(input_shape):
    return _resnet_basic(input_shape, (64, 128, 256, 512), (2, 2, 2, 2), "resnet18")


@register("resnet18_tiny")
def resnet18_tiny(input_shape):
    return _resnet_basic(input_shape, (8, 16, 16, 32), (1, 1, 1, 1), "resnet18_tiny")


@register("mobile")
def mobile(input_shape):
    return _mobile(input_shape, 1.0, _MOBILEFACENET, "mobile", 512)


@register("mobile_s")
def mobile_s(input_shape):
    return _mobile(input_shape, 0.5, _MOBILEFACENET, "mobile_s", 512)


@register("mobile_tiny")
def mobile_tiny(input_shape):
    return _mobile(input_shape, 0.25, [(64, 2, 1, 2), (128, 2, 1, 2), (128, 2, 1, 2)],
                   "mobile_tiny", 128)
