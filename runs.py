"""Run folders, and files written so that a reader never sees half of one.

A run folder holds one training run:

    config.json   its identity (everything that changes the result) + runtime flags; written first
    log.jsonl     one line per epoch
    ckpt.pt       model + optimizer + position, replaced atomically every epoch
    result.json   written last, atomically
    .lock         held (flock) by the one process that writes the folder

A run is done only when result.json parses, names this run (its run id and identity) and says
status ok. A failed run (status failed, e.g. a diverged loss) stays failed until it is retried
explicitly. Anything else (no result, or one that is truncated or foreign) is resumed from its
checkpoint or started again, and the caller says why.
"""

import fcntl
import hashlib
import io
import json
import os
import platform
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def atomic_write(path, data):
    """Write `data` (bytes or str) to `path` through a temp file in the same folder, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_torch_save(obj, path):
    """torch.save(obj) to `path`, atomically."""
    import torch  # here only: analysis/ imports this module and stays torch-free

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write(path, buffer.getvalue())


def write_json(obj, path):
    """`obj` as indented JSON, atomically."""
    return atomic_write(path, json.dumps(obj, indent=1, allow_nan=True) + "\n")


class RunError(ValueError):
    """A run folder that cannot be used as asked; the message names the file and what to do."""


def read_json(path):
    """The JSON object in `path`; RunError naming the file if it is unreadable, not JSON or not an object."""
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"'{path}' cannot be read as JSON ({e}); delete it to start this run again") from None
    if not isinstance(obj, dict):
        raise RunError(f"'{path}' holds a JSON {type(obj).__name__}, not an object; delete it to start this run again")
    return obj


def code_version():
    """The git commit of this code, with '-dirty' if the tree has uncommitted changes."""
    here = Path(__file__).resolve().parent
    try:
        git = ["git", "-C", str(here)]
        commit = subprocess.run([*git, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = commit.stdout.strip()
    return (commit + ("-dirty" if dirty.stdout.strip() else "")) if commit else "unknown"


def provenance(device):
    """What produced a result: the device, the code version and every library that can change a number."""
    import numpy
    import timm
    import torch
    import torchvision

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "numpy": numpy.__version__,
    }
    return {"device": name, "code_version": code_version(), "versions": versions}


def identity_sha1(identity):
    """sha1 of a run's canonical (sorted-key) identity."""
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def run_id(identity):
    """Short deterministic id of a run: the start of its identity's sha1."""
    return identity_sha1(identity)[:10]


def differing_keys(a, b):
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


class RunDir:
    """One run folder: config.json, log.jsonl, ckpt.pt, result.json, .lock."""

    def __init__(self, path, identity):
        self.path, self.identity = Path(path), identity
        self._lock, self._created = None, []

    def file(self, name):
        return self.path / name

    def state(self):
        """('done' | 'failed' | 'todo', reason): what the folder's result.json says about this run.

        'todo' comes with a reason when a result.json exists but cannot be trusted (then it is moved
        aside as result.json.invalid by `set_aside_result`)."""
        path = self.file("result.json")
        if not path.exists():
            return "todo", None
        try:
            result = read_json(path)
        except RunError as e:
            return "todo", str(e).split(";")[0]
        if result.get("run_id") != self.path.name or result.get("config") != self.identity:
            return "todo", f"'{path}' describes another run"
        if result.get("status") == "failed":
            return "failed", result.get("reason") or "no reason recorded"
        if result.get("status") != "ok":
            return "todo", f"'{path}' has status {result.get('status')!r}, not ok"
        return "done", None

    def set_aside_result(self):
        """Move an untrusted result.json out of the way (result.json.invalid), so the run can redo it."""
        if self.file("result.json").exists():
            os.replace(self.file("result.json"), self.file("result.json.invalid"))

    def clear(self):
        """Forget a failed run (result, checkpoint, log) so that it starts again from scratch."""
        for name in ("result.json", "ckpt.pt", "log.jsonl"):
            self.file(name).unlink(missing_ok=True)

    def lock(self):
        """Hold the folder's advisory lock for as long as this process lives (the kernel releases it when
        the process dies). RunError, naming the holder, if another process holds it."""
        if self.path.exists() and not self.path.is_dir():
            raise RunError(f"run folder '{self.path}' is a file, not a folder; move it away")
        existing = next(p for p in (self.path, *self.path.parents) if p.exists())
        created = [
            existing.joinpath(*self.path.relative_to(existing).parts[: i + 1])
            for i in range(len(self.path.relative_to(existing).parts))
        ]
        self.path.mkdir(parents=True, exist_ok=True)
        f = open(self.file(".lock"), "a+")  # noqa: SIM115 (held open: the lock lives as long as the file)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise RunError(
                f"run folder '{self.path}' is being written by {holder}; wait for it to finish "
                "(or stop it), then run this command again"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
        self._lock, self._created = f, created

    def release(self):
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def abandon(self):
        """Give a claim up before training: release the lock, and remove the folders the claim created
        (the run folder, and any parent it made) if nothing else was written into them."""
        if self._lock is not None and self._created:
            self.file(".lock").unlink(missing_ok=True)
        self.release()
        for folder in reversed(self._created):
            try:
                folder.rmdir()
            except OSError:  # not empty: something else lives there now
                break
        self._created = []

    def claim(self, retry_failed=False, log=print):
        """Take the folder for this process if its run has work left: True, and the lock is held until the
        process ends. False: the run is done. RunError: it failed (unless retry_failed: then it starts again
        from scratch), the folder holds another run, or another process is writing it. An untrusted
        result.json is moved aside, and said."""
        self.check_config()  # before anything is moved: a refused command must leave the folder as it was
        state, reason = self.state()
        if state == "failed" and not retry_failed:
            raise RunError(f"run '{self.path}' failed ({reason}); pass --retry-failed to start it again from scratch")
        if state == "done":
            return False
        self.lock()
        state, reason = self.state()  # again: another process may have finished it in the meantime
        if state == "done":
            self.release()
            return False
        if state == "failed":
            log(f"--retry-failed: starting '{self.path}' again from scratch (it failed: {reason})")
            self.clear()
        elif reason:
            log(f"{reason}: redoing the run (the file is kept as result.json.invalid)")
            self.set_aside_result()
        return True

    def check_config(self):
        """True if config.json exists and describes this run, False if there is none; RunError otherwise
        (also for a folder or other non-file in place of one of the run's files: it would fail mid-run)."""
        for name in ("config.json", "log.jsonl", "ckpt.pt", "result.json", ".lock"):
            if self.file(name).exists() and not self.file(name).is_file():
                raise RunError(f"'{self.file(name)}' is not a file; move it away, then run this command again")
        cfg = self.file("config.json")
        if not cfg.exists():
            return False
        identity = read_json(cfg).get("identity")
        if not isinstance(identity, dict):
            raise RunError(f"'{cfg}' holds no run identity; delete it to start this run again")
        differ = differing_keys(identity, self.identity)
        if differ:
            raise RunError(
                f"run folder '{self.path}' holds a different run (keys that differ: {', '.join(differ)}); "
                "use another --out or delete the folder"
            )
        return True

    def start(self, runtime):
        """Write config.json, or check that an existing one describes the same run."""
        if not self.check_config():
            write_json({"identity": self.identity, "runtime": runtime}, self.file("config.json"))

    def load_state(self):
        """The checkpoint dict, or None without one; RunError if it cannot be loaded safely."""
        import torch

        ckpt = self.file("ckpt.pt")
        if not ckpt.is_file():
            return None
        try:
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated by a full disk, or not ours: never unpickle code
            reason = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
            raise RunError(
                f"run folder '{self.path}': ckpt.pt cannot be loaded safely ({reason}); "
                "delete it to restart this run from scratch"
            ) from None
        if not isinstance(state, dict) or state.get("identity_sha1") != identity_sha1(self.identity):
            raise RunError(
                f"run folder '{self.path}': ckpt.pt was written for another run (or by older code); "
                "delete it to restart this run from scratch"
            )
        return state

    def save_state(self, state):
        """The checkpoint, stamped with the run it belongs to (a copied-in ckpt.pt is never resumed)."""
        atomic_torch_save({**state, "identity_sha1": identity_sha1(self.identity)}, self.file("ckpt.pt"))

    def rewrite_log(self, curve):
        """log.jsonl holds exactly the epochs in the checkpoint (no duplicates after a resume)."""
        atomic_write(self.file("log.jsonl"), "".join(json.dumps(r) + "\n" for r in curve))

    def append_log(self, record):
        with open(self.file("log.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")

    def finish(self, result, keep_ckpt=False):
        write_json(result, self.file("result.json"))
        if not keep_ckpt:
            self.file("ckpt.pt").unlink(missing_ok=True)
