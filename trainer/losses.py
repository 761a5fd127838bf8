"""The identity loss: one combined-margin softmax over (sampled) class centres.

    logit_target = s * (cos(m1 * theta + m2) - m3),  logit_other = s * cos(theta_other)

(m1, m2, m3) = (1, 0.5, 0) is ArcFace, (1, 0, 0.35) CosFace, (1, 0, 0) a normalised
softmax. With many label identities the full class-centre matrix is too large to score
every batch against, so, as partial FC does, each step scores the batch's own classes
plus a random sample of the others (`sample_rate` of all; 1.0 scores every class).
"""

from __future__ import annotations

import math

import tensorflow as tf

from edge_app.errors import PufError


class CombinedMarginLoss:
    def __init__(self, num_classes: int, embedding_dim: int, s: float = 64.0,
                 m1: float = 1.0, m2: float = 0.5, m3: float = 0.0, sample_rate: float = 1.0,
                 seed: int = 0) -> None:
        if num_classes < 2:
            raise PufError(f"the identity loss needs at least 2 labels, got {num_classes}")
        if not 0.0 < sample_rate <= 1.0:
            raise PufError(f"sample rate must be in (0, 1], got {sample_rate}")
        if s <= 0 or m1 <= 0 or not 0 <= m2 < math.pi / 2 or m3 < 0:
            raise PufError(f"implausible margins: s={s}, m1={m1}, m2={m2}, m3={m3}")
        self.num_classes = num_classes
        self.s, self.m1, self.m2, self.m3 = s, m1, m2, m3
        self.num_sample = max(2, int(round(sample_rate * num_classes)))
        init = tf.random.stateless_normal((num_classes, embedding_dim), (seed, 7), stddev=0.01)
        self.centres = tf.Variable(init, name="class_centres")

    def sample(self, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Indices of the centres to score (every label of the batch is among them)
        and the labels renumbered into that list."""
        if self.num_sample >= self.num_classes:
            return tf.range(self.num_classes), labels
        positive = tf.scatter_nd(labels[:, None], tf.ones_like(labels, tf.float32),
                                 [self.num_classes])
        score = tf.random.uniform([self.num_classes]) + 2.0 * tf.minimum(positive, 1.0)
        k = tf.maximum(self.num_sample, tf.size(tf.unique(labels).y))
        index = tf.math.top_k(score, k).indices
        renumbered = tf.argmax(tf.cast(labels[:, None] == index[None, :], tf.int32), axis=1,
                               output_type=labels.dtype)
        return index, renumbered

    def __call__(self, embeddings: tf.Tensor, labels: tf.Tensor,
                 margin_scale: tf.Tensor | float = 1.0) -> tf.Tensor:
        """Mean loss over the batch; `margin_scale` in 0..1 ramps the margins in."""
        labels = tf.cast(labels, tf.int32)
        index, target = self.sample(labels)
        centres = tf.math.l2_normalize(tf.gather(self.centres, index), axis=1)
        cos = tf.matmul(tf.math.l2_normalize(embeddings, axis=1), centres, transpose_b=True)
        cos = tf.clip_by_value(cos, -1.0 + 1e-7, 1.0 - 1e-7)
        onehot = tf.one_hot(target, tf.shape(index)[0], dtype=cos.dtype)
        m2 = self.m2 * margin_scale
        m3 = self.m3 * margin_scale
        if self.m1 != 1.0 or self.m2 > 0:
            theta = tf.acos(cos)
            target_logit = tf.cos(self.m1 * theta + m2)
            # past pi - m2 the margin would make the target easier again: fall back to
            # CosFace-like subtraction there (arcface_torch's "easy margin" off)
            target_logit = tf.where(theta + m2 < math.pi, target_logit,
                                    cos - tf.sin(math.pi - m2) * m2)
        else:
            target_logit = cos
        target_logit = target_logit - m3
        logits = self.s * (onehot * target_logit + (1.0 - onehot) * cos)
        return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(onehot, logits))
