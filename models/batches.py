"""Batches for Keras straight from a feature store's memmaps (a frame-level store is never loaded whole)."""

import math

import keras
import numpy as np


def model_inputs(store, indices, level: str, frames: int | None = None, sample: str = "even", rng=None):
    """The model's input for the videos `indices`: a (B, 1152) float32 array for video-level models, or
    {"frames": uint8 (B, T, 1152), "num_frames": int32 (B,), "video": float32 (B, 1152)} for frame-level ones:
    T sampled frames, and the mean of all of the video's frames (what video-level models read)."""
    if level == "video":
        return store.video(indices)
    batch, lengths = store.frames(indices, sample=sample, num_samples=frames, rng=rng)
    return {"frames": batch, "num_frames": np.asarray(lengths, dtype=np.int32), "video": store.video(indices)}


def ordered_batches(num_videos: int, batch_size: int):
    """Index arrays covering 0..num_videos-1 in order, `batch_size` at a time (the last one shorter)."""
    for start in range(0, num_videos, batch_size):
        yield np.arange(start, min(start + batch_size, num_videos))


class StoreBatches(keras.utils.PyDataset):
    """(inputs, targets (B, classes)) batches of a store for `model.fit`.

    Training (shuffle=True): a new video order every epoch and T random frames per video; validation
    (shuffle=False): videos in order, T evenly spaced frames. Every batch's randomness comes from
    (seed, epoch, batch number) alone, so a run resumed at epoch e sees exactly the batches it would have.
    `targets(indices)` gives what the model learns to predict: by default the 0/1 labels (distillation
    mixes in a teacher's scores: models.distill).
    """

    def __init__(self, store, level: str, batch_size: int, frames: int | None = None,
                 shuffle: bool = False, seed: int = 0, epoch: int = 0, targets=None):
        super().__init__()
        self.store, self.level, self.batch_size, self.frames = store, level, batch_size, frames
        self.targets = targets or store.dense_labels
        self.shuffle, self.seed, self.epoch = shuffle, seed, epoch
        self._order_epoch, self._order = None, None

    def __len__(self) -> int:
        return math.ceil(len(self.store) / self.batch_size)

    def order(self) -> np.ndarray:
        """This epoch's video order (a permutation drawn from (seed, epoch) when shuffling)."""
        if self._order_epoch != self.epoch:
            n = len(self.store)
            rng = np.random.default_rng([self.seed, self.epoch])
            self._order = rng.permutation(n) if self.shuffle else np.arange(n)
            self._order_epoch = self.epoch
        return self._order

    def __getitem__(self, i: int):
        # Sorted within the batch: the batch is the same set, and the memmap reads go forward.
        indices = np.sort(self.order()[i * self.batch_size:(i + 1) * self.batch_size])
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            x = model_inputs(self.store, indices, self.level, self.frames, "random", rng)
        else:
            x = model_inputs(self.store, indices, self.level, self.frames, "even")
        return x, self.targets(indices)

    def on_epoch_end(self) -> None:
        self.epoch += 1
