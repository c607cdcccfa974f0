"""The official shard formats: levels, versions, feature sizes, and the record types they hold."""

from dataclasses import dataclass

import numpy as np

RGB_SIZE, AUDIO_SIZE = 1024, 128
FEATURE_SIZE = RGB_SIZE + AUDIO_SIZE  # 1152: rgb then audio
MAX_FRAMES = 300  # frames of a video that are used (the official readers' max_frames)
NUM_CLASSES = {2017: 4716, 2018: 3862}
ID_KEY = {2017: "video_id", 2018: "id"}


@dataclass(frozen=True)
class ShardFormat:
    """What a shard holds: `level` is "video" or "frame", `version` 2017 or 2018."""

    level: str
    version: int
    has_labels: bool = True

    @property
    def id_key(self) -> str:
        return ID_KEY[self.version]

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES[self.version]

    def __str__(self) -> str:
        """E.g. "video level 2018", "video level 2017 without labels"."""
        return f"{self.level} level {self.version}" + ("" if self.has_labels else " without labels")


@dataclass
class Video:
    """One record. Video level: rgb (1024,) and audio (128,) float32 means.
    Frame level: rgb (T, 1024) and audio (T, 128) uint8, one row per second."""

    id: str
    labels: np.ndarray  # int64, in the order the shard stores them
    rgb: np.ndarray
    audio: np.ndarray
