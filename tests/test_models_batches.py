"""models.batches: the replicas' shares of a global batch partition it and replay from (seed, epoch, batch)."""

import numpy as np
import tensorflow as tf

from models.batches import StoreBatches, prediction_batches
from tests.test_models_train import make_store


def test_shares_partition_each_global_batch_and_replay(tmp_path):
    store = make_store(tmp_path, 21, seed=3)
    batches = StoreBatches(store, "frame", 8, frames=4, shuffle=True, seed=5, epoch=2)
    assert len(batches) == 3 and [batches.size(i) for i in range(3)] == [8, 8, 5]
    seen = []
    for i in range(len(batches)):
        shares = [batches.share(i, part, 3) for part in range(3)]
        assert sum(len(y) for _, y in shares) == batches.size(i)
        for (x, y), again in zip(shares, [batches.share(i, part, 3) for part in range(3)], strict=True):
            assert np.array_equal(x["frames"], again[0]["frames"]) and np.array_equal(y, again[1])
            assert x["frames"].shape[1:] == (4, 1152) and y.dtype == np.float32
        seen += [row for _, y in shares for row in y.tolist()]
    order = batches.order()
    want = [store.dense_labels([v])[0].tolist() for i in range(3) for v in np.sort(order[i * 8:(i + 1) * 8])]
    assert seen == want  # every video once per epoch, in the shuffled batches
    assert not np.array_equal(order, StoreBatches(store, "frame", 8, shuffle=True, seed=5, epoch=3).order())


def test_a_worker_dataset_holds_its_replicas_shares_in_turn(tmp_path):
    store = make_store(tmp_path, 10, seed=4, level="video")
    batches = StoreBatches(store, "video", 4, shuffle=True, seed=0)
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=4)
    got = [(x.numpy(), y.numpy()) for x, y in batches.dataset(context)]
    want = [batches.share(i, part, 4) for i in range(len(batches)) for part in (2, 3)]  # worker 1: replicas 2, 3
    assert len(got) == len(want) == 6
    for (x, y), (wx, wy) in zip(got, want, strict=True):
        assert np.array_equal(x, wx) and np.array_equal(y, wy)
    assert [len(y) for _, y in got] == [1, 1, 1, 1, 0, 0]  # the last batch's 2 videos go to replicas 0 and 1


def test_prediction_batches_cover_the_videos_once_in_one_shape():
    pairs = list(prediction_batches(23, 10))
    assert np.array_equal(np.concatenate([i for i, _ in pairs]), np.arange(23))
    assert [len(read) for _, read in pairs] == [10, 10, 10]  # the short last batch is read at full size
    assert np.array_equal(pairs[-1][1], [20, 21, 22] + [22] * 7)  # padded with its last video
    assert all(np.array_equal(i, read) for i, read in pairs[:2])
    (indices, read), = prediction_batches(7, 10)  # fewer videos than a batch: read as they are
    assert np.array_equal(indices, np.arange(7)) and np.array_equal(read, np.arange(7))
