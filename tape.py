"""Teacher-logit tape: record the teacher's logits once, replay them in every later run.

With the deterministic batch stream, the teacher's logits at (epoch, step) depend only on the
dataset, the teacher checkpoint, the seed, the batch size and the augmentation. A temperature
sweep, another method or optimizer, or a shorter epoch budget (a prefix) sees the very same
batches, so it can replay the logits instead of running the teacher. Logits are stored in
float32, one file per epoch, so a replayed run is bit-identical to one that ran the teacher.

    <tape>/key.json          what the tape is valid for; a run with another key is refused
    <tape>/epoch-0001.pt     {"key_sha1", "epoch", "logits": float32 (steps, views, B, K)}, written
                             atomically once the epoch is complete; a file that does not load, or
                             names another key or epoch, is recomputed (and said), never replayed
    <tape>/eval-logits.pt    {"key_sha1", "test", "train"}: the teacher's logits on the test and train
                             images (evaluation transform), which every run measures the teacher by
"""

import hashlib
import json
from pathlib import Path

import torch

from runs import RunError, atomic_torch_save, atomic_write, differing_keys, read_json

KEY_FIELDS = ("dataset", "synth", "aug", "teacher_weights_sha1", "seed", "bs", "amp")


def tape_key(identity, stream):
    """The fields of a run's identity that determine the teacher's logits, plus the stream's shape."""
    key = {k: identity[k] for k in KEY_FIELDS}
    key.update(views=stream.views, steps_per_epoch=stream.steps_per_epoch, num_samples=len(stream.split))
    return json.loads(json.dumps(key))  # canonical JSON types, as read back from key.json


class TeacherTape:
    """Wraps teacher(batch, xs, epoch, step): replays recorded epochs, records the others."""

    def __init__(self, folder, forward, key, log=print):
        self.folder, self.forward, self.key, self.log = Path(folder), forward, key, log
        self.key_sha1 = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()
        key_file = self.folder / "key.json"
        if key_file.exists() and not key_file.is_file():
            raise ValueError(f"--teacher-tape: '{key_file}' is not a file; delete it to record the tape again")
        if key_file.is_file():
            try:
                old = read_json(key_file)
            except RunError as e:
                raise ValueError(
                    f"--teacher-tape: {str(e).split(';')[0]}; delete the tape folder to record it again"
                ) from None
            differ = differing_keys(old, key)
            if differ:
                raise ValueError(
                    f"--teacher-tape: '{folder}' was recorded for another setup (keys that differ: "
                    f"{', '.join(differ)}); use another tape folder"
                )
        else:  # runs sharing a tape may start together: atomic_write makes one of them win whole
            atomic_write(key_file, json.dumps(key, indent=1, sort_keys=True))
        self.epoch, self.replay, self.recorded = None, None, []
        self.replayed_steps = self.recorded_steps = 0

    def eval_logits(self, compute):
        """(test logits, train logits) of the teacher under the evaluation transform: replayed from the tape
        folder when it holds them for this key, else compute() -> (test, train), recorded for the next run."""
        f = self.folder / "eval-logits.pt"
        try:
            saved = torch.load(f, map_location="cpu", weights_only=True) if f.is_file() else None
        except Exception:  # truncated or foreign: recompute
            saved = None
        if isinstance(saved, dict) and saved.get("key_sha1") == self.key_sha1:
            return saved["test"], saved["train"]
        test, train = compute()
        try:
            atomic_torch_save({"key_sha1": self.key_sha1, "test": test, "train": train}, f)
        except OSError as e:  # a cache: never stops training
            self.log(f"teacher tape: cannot write {f} ({e.strerror or e}); the teacher is measured again next time")
        return test, train

    def _file(self, epoch):
        return self.folder / f"epoch-{epoch + 1:04d}.pt"

    def _open_epoch(self, epoch):
        """The epoch's recorded logits, or None (not recorded yet, or a file that must not be replayed)."""
        self.epoch, self.recorded = epoch, []
        f = self._file(epoch)
        if not f.is_file():
            return None
        try:
            saved = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated, empty or foreign: recompute
            self.log(f"teacher tape: {f} cannot be loaded ({type(e).__name__}); recomputing this epoch")
            return None
        logits = saved.get("logits") if isinstance(saved, dict) else None
        expected = (self.key["steps_per_epoch"], self.key.get("views", 1), self.key["bs"])
        shape_ok = isinstance(logits, torch.Tensor) and logits.dim() == 4 and tuple(logits.shape[:3]) == expected
        if not isinstance(saved, dict) or saved.get("key_sha1") != self.key_sha1 or saved.get("epoch") != epoch + 1:
            self.log(f"teacher tape: {f} was not recorded for this key and epoch; recomputing this epoch")
            return None
        if not shape_ok or logits.dtype != torch.float32:
            self.log(f"teacher tape: {f} holds logits of another shape or type; recomputing this epoch")
            return None
        return logits

    def __call__(self, batch, xs, epoch, step):
        if epoch != self.epoch:
            self.replay = self._open_epoch(epoch)
        if self.replay is not None:
            self.replayed_steps += 1
            logits = tuple(v.to(xs[0].device, non_blocking=True) for v in self.replay[step].unbind(0))
            return logits if len(logits) > 1 else logits[0]
        logits = self.forward(batch, xs, epoch, step)
        views = logits if isinstance(logits, tuple) else (logits,)
        if len(self.recorded) == step:  # only an epoch recorded from its first step is complete
            self.recorded.append(torch.stack([v.float().cpu() for v in views]))
            if step + 1 == self.key["steps_per_epoch"]:
                record = {"key_sha1": self.key_sha1, "epoch": epoch + 1, "logits": torch.stack(self.recorded)}
                try:
                    atomic_torch_save(record, self._file(epoch))
                except OSError as e:  # the tape is a cache: a full disk or a blocked path must not stop training
                    self.log(
                        f"teacher tape: cannot write {self._file(epoch)} ({e.strerror or e}); "
                        "this epoch stays unrecorded"
                    )
                self.recorded = []
        self.recorded_steps += 1
        return logits
