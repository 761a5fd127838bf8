"""One network, two heads: the label's fingerprint and its etched pattern.

    crop -> backbone -> feature map (h, w, c)
                         -> 1x1 conv to `head_channels`, BN, flatten  (keeps WHERE texture is)
                              -> dropout -> dense(embedding_dim) -> BN     "embedding"
                              -> dense(mlp) -> relu -> dense(classes)      "pattern_logits"

The embedding head is arcface_torch's "E" output (BN, dropout, flatten, FC, BN) behind a
1x1 reduction so that a 7x7 map stays small: a fingerprint is a spatial arrangement of
grains, which global pooling would throw away. The embedding leaves the network
unnormalised; the loss and the device runtime L2-normalise it (int8 keeps it better so).
"""

from __future__ import annotations

from trainer.backbones import create_backbone

OUTPUTS = ("embedding", "pattern_logits")


def build_network(backbone: str, input_shape: tuple[int, int, int], embedding_dim: int,
                  pattern_classes: int, head_channels: int = 64, pattern_mlp: int = 128,
                  dropout: float = 0.0):
    import keras

    body = create_backbone(backbone, input_shape)
    inputs = keras.Input(input_shape, name="crop")
    features = body(inputs)
    x = keras.layers.Conv2D(head_channels, 1, use_bias=False, name="head_reduce")(features)
    x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="head_bn")(x)
    x = keras.layers.Flatten(name="head_flatten")(x)
    e = keras.layers.Dropout(dropout, name="head_dropout")(x) if dropout > 0 else x
    e = keras.layers.Dense(embedding_dim, name="embedding_fc")(e)
    embedding = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, scale=False,
                                                name="embedding")(e)
    p = keras.layers.Dense(pattern_mlp, activation="relu", name="pattern_fc")(x)
    pattern = keras.layers.Dense(pattern_classes, name="pattern_logits")(p)
    return keras.Model(inputs, {"embedding": embedding, "pattern_logits": pattern},
                       name=f"puf_{backbone}")
