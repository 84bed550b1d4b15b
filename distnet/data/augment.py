"""Image augmentation as the data pipeline applies it: random crop with padding, horizontal flip.

Each sample's crop offset and flip come from its own key -- the uint64
per-sample key the trainer derives from (seed, step, the sample's global
index) for dropout -- so a sample is augmented the same way whichever rank
reads it and however the global batch is split: N workers see the images
one worker sees.  The key is first mixed with a stream number no dropout
layer uses, so augmentation and dropout masks are independent.

The crop is the CIFAR/Fashion-MNIST recipe (Keras' ``RandomCrop`` after
``ZeroPadding2D``, torchvision's ``RandomCrop(padding=p)``): pad ``padding``
zeros on every side, then cut a window of the original size at an offset
drawn uniformly from ``[0, 2 * padding]`` on each axis.
"""
from __future__ import annotations

import numpy as np

from distnet.errors import InvalidArgumentError, ShapeError
from distnet.nn.dropout import dropout_sample_keys, keyed_bits32

#: The "layer index" of augmentation's random stream: above any model's dropout layers.
AUGMENT_STREAM = 2 ** 63 + 0x41


def random_crop_flip(images: np.ndarray, sample_keys: np.ndarray, padding: int = 0,
                     flip: bool = False) -> np.ndarray:
    """A randomly cropped (after zero padding) and mirrored copy of each image.

    Args:
      images: ``[N, H, W]`` or ``[N, H, W, C]``.
      sample_keys: ``uint64``, one per image (see :func:`distnet.nn.dropout_sample_keys`).
      padding: zeros added on each side before the crop; 0 crops nothing.
      flip: mirror each image left-right with probability 1/2.

    Returns:
      A new array of ``images``' shape and dtype.
    """
    x = np.asarray(images)
    if x.ndim not in (3, 4):
        raise ShapeError(f"random_crop_flip: Expect: images [N, H, W] or [N, H, W, C] Actual: shape {x.shape}")
    keys = np.asarray(sample_keys)
    if keys.dtype != np.uint64 or keys.shape != (x.shape[0],):
        raise ShapeError(f"random_crop_flip: Expect: one uint64 key per image, shape ({x.shape[0]},) "
                         f"Actual: {keys.dtype} {keys.shape}")
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise InvalidArgumentError(f"random_crop_flip: Expect: padding an int >= 0 Actual: {padding!r}")
    n, h, w = x.shape[:3]
    if padding == 0 and not flip:
        return x.copy()
    bits = keyed_bits32(dropout_sample_keys(0, 0, AUGMENT_STREAM, keys), (3,))
    span = 2 * int(padding) + 1
    dy = (bits[:, 0] % span).astype(np.intp)
    dx = (bits[:, 1] % span).astype(np.intp)
    mirrored = (bits[:, 2] & 1).astype(bool) if flip else np.zeros(n, bool)
    pad = [(0, 0), (padding, padding), (padding, padding)] + [(0, 0)] * (x.ndim - 3)
    padded = np.pad(x, pad) if padding else x
    rows = dy[:, None] + np.arange(h)[None, :]
    cols = np.where(mirrored[:, None], w - 1 - np.arange(w)[None, :], np.arange(w)[None, :]) + dx[:, None]
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


__all__ = ["random_crop_flip", "AUGMENT_STREAM"]
