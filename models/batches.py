"""Batches straight from a feature store's memmaps (a frame-level store is never loaded whole)."""

import math

import numpy as np
import tensorflow as tf


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


def prediction_batches(num_videos: int, batch_size: int):
    """(indices, read) over 0..num_videos-1 in order, for prediction: `read` is what to feed the model, a
    short last batch after full ones padded to the full size with its last video (a new batch shape would
    retrace the model's graph, which takes longer than predicting the padding); keep len(indices) rows."""
    for n, indices in enumerate(ordered_batches(num_videos, batch_size)):
        short = batch_size - len(indices)
        yield indices, (np.concatenate([indices, np.full(short, indices[-1])]) if n and short else indices)


class StoreBatches:
    """(inputs, targets (B, classes) float32) batches of a store.

    Training (shuffle=True): a new video order every epoch and T random frames per video; validation
    (shuffle=False): videos in order, T evenly spaced frames. Under tf.distribute each replica reads only
    its part of every global batch (`part`). All randomness comes from (seed, epoch, batch, part) alone, so
    a run resumed at epoch e sees exactly the batches it would have. `targets(indices)` gives what the model
    learns to predict: by default the 0/1 labels (distillation mixes in a teacher's scores: models.distill).
    """

    def __init__(self, store, level: str, batch_size: int, frames: int | None = None,
                 shuffle: bool = False, seed: int = 0, epoch: int = 0, targets=None):
        self.store, self.level, self.batch_size, self.frames = store, level, batch_size, frames
        self.targets = targets or store.dense_labels
        self.shuffle, self.seed, self.epoch = shuffle, seed, epoch
        self._order = None

    def __len__(self) -> int:
        return math.ceil(len(self.store) / self.batch_size)

    def order(self) -> np.ndarray:
        """This epoch's video order (a permutation drawn from (seed, epoch) when shuffling)."""
        if self._order is None:
            n = len(self.store)
            rng = np.random.default_rng([self.seed, self.epoch])
            self._order = rng.permutation(n) if self.shuffle else np.arange(n)
        return self._order

    def size(self, i: int) -> int:
        """Videos in global batch i (the last one may be shorter)."""
        return len(self.order()[i * self.batch_size:(i + 1) * self.batch_size])

    def share(self, i: int, part: int = 0, parts: int = 1):
        """(inputs, targets) of part `part` of `parts` equal slices of global batch i (one replica's share;
        empty when the batch has fewer videos than parts)."""
        # Sorted within the batch: the batch is the same set, and the memmap reads go forward.
        batch = np.sort(self.order()[i * self.batch_size:(i + 1) * self.batch_size])
        indices = np.array_split(batch, parts)[part]
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch, i, part])
            x = model_inputs(self.store, indices, self.level, self.frames, "random", rng)
        else:
            x = model_inputs(self.store, indices, self.level, self.frames, "even")
        return x, self.targets(indices)

    def __getitem__(self, i: int):
        return self.share(i)

    def dataset(self, context: tf.distribute.InputContext) -> tf.data.Dataset:
        """This epoch as tf.data for one worker of a tf.distribute strategy: for every global batch, the
        shares of this worker's replicas in turn (`strategy.distribute_datasets_from_function`)."""
        replicas = context.num_replicas_in_sync
        local = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local

        def shares():
            for i in range(len(self)):
                for part in range(first, first + local):
                    yield self.share(i, part, replicas)

        example = self.share(0, first, replicas)
        spec = tf.nest.map_structure(lambda a: tf.TensorSpec((None, *a.shape[1:]), a.dtype), example)
        return tf.data.Dataset.from_generator(shares, output_signature=spec).prefetch(2)
