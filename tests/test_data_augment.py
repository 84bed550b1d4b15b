"""Augmentation (distnet/data/augment.py): crops and flips per sample, independent of the split."""
from __future__ import annotations

import numpy as np
import pytest

from distnet.data.augment import random_crop_flip
from distnet.errors import InvalidArgumentError, ShapeError
from distnet.nn.dropout import dropout_sample_keys


def _keys(n, step=3):
    return dropout_sample_keys(11, step, 0, np.arange(n))


def test_nothing_asked_is_a_copy():
    x = np.random.default_rng(0).random((4, 5, 6)).astype(np.float32)
    out = random_crop_flip(x, _keys(4))
    assert out is not x and np.array_equal(out, x)


def test_each_output_is_a_window_of_the_padded_image_or_its_mirror():
    rng = np.random.default_rng(1)
    x = rng.random((64, 7, 9, 2)).astype(np.float32)
    out = random_crop_flip(x, _keys(64), padding=2, flip=True)
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)])
    offsets, flips = set(), 0
    for i in range(64):
        found = [(dy, dx, f) for dy in range(5) for dx in range(5) for f in (False, True)
                 if np.array_equal(out[i], (lambda win: win[:, ::-1] if f else win)(padded[i, dy:dy + 7, dx:dx + 9]))]
        assert found, f"sample {i} is no crop of its padded image"
        offsets.add(found[0][:2])
        flips += found[0][2]
    # 64 draws over 25 offsets and two orientations: most offsets and both orientations occur.
    assert len(offsets) >= 15 and 16 <= flips <= 48


def test_a_sample_is_augmented_the_same_however_the_batch_is_split():
    x = np.random.default_rng(2).random((10, 8, 8)).astype(np.float32)
    keys = _keys(10)
    whole = random_crop_flip(x, keys, padding=3, flip=True)
    for parts in (2, 3, 4):
        pieces = [random_crop_flip(x[p], keys[p], padding=3, flip=True)
                  for p in np.array_split(np.arange(10), parts)]
        assert np.array_equal(np.concatenate(pieces), whole)


def test_steps_give_other_crops_and_the_same_step_the_same():
    x = np.random.default_rng(3).random((32, 8, 8)).astype(np.float32)
    a = random_crop_flip(x, _keys(32, step=1), padding=2, flip=True)
    assert np.array_equal(a, random_crop_flip(x, _keys(32, step=1), padding=2, flip=True))
    assert not np.array_equal(a, random_crop_flip(x, _keys(32, step=2), padding=2, flip=True))


def test_known_values_of_a_mirrored_crop():
    # One 3x3 image, padding 1: find a key whose draw is "offset (0, 2), mirrored" and check by hand.
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 3)
    for step in range(500):
        out = random_crop_flip(x, _keys(1, step), padding=1, flip=True)[0]
        if np.array_equal(out, [[0, 0, 0], [0, 2, 1], [0, 5, 4]]):
            break
    else:
        pytest.fail("no step in 500 drew offset (0, 2) with a flip (1/18 each)")


def test_bad_input_is_named():
    x = np.zeros((2, 4, 4), np.float32)
    with pytest.raises(ShapeError, match="one uint64 key per image"):
        random_crop_flip(x, np.zeros(3, np.uint64), padding=1)
    with pytest.raises(ShapeError, match=r"images \[N, H, W\]"):
        random_crop_flip(np.zeros((2, 4)), np.zeros(2, np.uint64))
    with pytest.raises(InvalidArgumentError, match="padding an int >= 0"):
        random_crop_flip(x, np.zeros(2, np.uint64), padding=-1)


def _train(**options):
    import distnet
    from distnet import layers
    from distnet.data import ArrayDataset

    rng = np.random.default_rng(5)
    data = ArrayDataset(rng.random((64, 8, 8)).astype(np.float32), rng.integers(0, 3, 64))
    model = distnet.Sequential([layers.Flatten(), layers.Dense(3)], input_shape=(8, 8, 1), seed=1)
    trainer = distnet.Trainer(model, "sparse_softmax_cross_entropy", distnet.optimizers.GradientDescent(0.5), data,
                              global_batch_size=16, steps=4, **options)
    trainer.fit()
    return model.get_variable("dense/kernel").numpy().copy()


def test_the_trainer_augments_training_images_when_asked():
    plain = _train()
    assert np.array_equal(plain, _train())                                  # the same run twice
    augmented = _train(augment_padding=2, augment_flip=True)
    assert not np.array_equal(plain, augmented)                             # other pixels were seen
    assert np.array_equal(augmented, _train(augment_padding=2, augment_flip=True))


def test_augmentation_of_data_that_are_not_images_is_refused():
    import distnet
    from distnet import layers
    from distnet.data import ArrayDataset

    data = ArrayDataset(np.zeros((32, 5), np.float32), np.zeros(32, np.int64))
    model = distnet.Sequential([layers.Dense(2)], input_shape=(5,), seed=0)
    with pytest.raises(InvalidArgumentError, match=r"Expect: image data \(\[N, H, W\]"):
        distnet.Trainer(model, "sparse_softmax_cross_entropy", "sgd", data, global_batch_size=8, steps=1,
                        augment_flip=True)
