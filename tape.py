"""Teacher-logit tape: record the teacher's logits once, replay them in every later run.

With the deterministic batch stream, the teacher's logits at (epoch, step) depend only on the
dataset, the teacher checkpoint, the seed, the batch size and the augmentation. A temperature
sweep, another method or optimizer, or a shorter epoch budget (a prefix) sees the very same
batches, so it can replay the logits instead of running the teacher. Logits are stored in
float32, one file per epoch, so a replayed run is bit-identical to one that ran the teacher.

    <tape>/key.json          what the tape is valid for; a run with another key is refused
    <tape>/epoch-0001.pt     float32 (steps, views, B, K), written atomically once the epoch is complete
"""
import json
import os
from pathlib import Path

import torch

from models import atomic_save

KEY_FIELDS = ("dataset", "synth", "aug", "teacher_weights_sha1", "seed", "bs", "amp")


def tape_key(identity, stream, views):
    """The fields of a run's identity that determine the teacher's logits, plus the stream's shape."""
    key = {k: identity[k] for k in KEY_FIELDS}
    key.update(views=views, steps_per_epoch=stream.steps_per_epoch, num_samples=len(stream.split))
    return json.loads(json.dumps(key))   # canonical JSON types, as read back from key.json


class TeacherTape:
    """Wraps teacher(batch, xs, epoch, step): replays recorded epochs, records the others."""

    def __init__(self, folder, forward, key):
        self.folder, self.forward, self.key = Path(folder), forward, key
        key_file = self.folder / "key.json"
        if key_file.is_file():
            old = json.loads(key_file.read_text())
            differ = sorted(k for k in set(old) | set(key) if old.get(k) != key.get(k))
            if differ:
                raise ValueError(f"--teacher-tape: '{folder}' was recorded for another setup (keys that differ: "
                                 f"{', '.join(differ)}); use another tape folder")
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = key_file.with_suffix(f".{os.getpid()}.tmp")   # runs sharing a tape may start together
            tmp.write_text(json.dumps(key, indent=1, sort_keys=True))
            tmp.replace(key_file)
        self.epoch, self.replay, self.recorded = None, None, []
        self.replayed_steps = self.recorded_steps = 0

    def _file(self, epoch):
        return self.folder / f"epoch-{epoch + 1:04d}.pt"

    def _open_epoch(self, epoch):
        self.epoch, self.recorded = epoch, []
        f = self._file(epoch)
        self.replay = torch.load(f, map_location="cpu", weights_only=True) if f.is_file() else None

    def __call__(self, batch, xs, epoch, step):
        if epoch != self.epoch:
            self._open_epoch(epoch)
        if self.replay is not None:
            self.replayed_steps += 1
            logits = tuple(v.to(xs[0].device, non_blocking=True) for v in self.replay[step].unbind(0))
            return logits if len(logits) > 1 else logits[0]
        logits = self.forward(batch, xs, epoch, step)
        views = logits if isinstance(logits, tuple) else (logits,)
        if len(self.recorded) == step:   # only an epoch recorded from its first step is complete
            self.recorded.append(torch.stack([v.float().cpu() for v in views]))
            if step + 1 == self.key["steps_per_epoch"]:
                atomic_save(torch.stack(self.recorded), self._file(epoch))
                self.recorded = []
        self.recorded_steps += 1
        return logits
