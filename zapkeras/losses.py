"""Losses computed by hand, where a Keras `Loss` object would not do.

A Keras `Loss` in a distribution strategy's replica context divides its
mean by the number of replicas (docs/keras_notes.md §5), which suits
`compile` but not a loss that a train step reduces and scales itself.
"""

import keras

from zapkeras import compile_options


def per_example_cross_entropy(y, logits):
    """Sparse categorical cross-entropy from logits, one value per example.

    `y` holds integer class labels of shape [B] and `logits` [B, classes];
    the result has shape [B], unreduced and unscaled (not pre-divided by
    the number of replicas, unlike a Keras `Loss` object), so the caller
    chooses the mean, sum or weighting. 16-bit logits (a mixed policy) are
    cast to float32 first, as a Keras `Loss` computes: the softmax's sums
    and logs lose digits in 16 bits.
    """
    return keras.losses.sparse_categorical_crossentropy(
        y, compile_options.full_precision(logits), from_logits=True
    )
