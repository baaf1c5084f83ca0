"""The one training loop, shared by train_teacher.py and distill.py.

It trains one or more models ("members") in lockstep on the same deterministic batch stream:
a teacher being fine-tuned is one member; a temperature sweep is one member per temperature,
all fed the identical batches, with the teacher's logits computed once per batch.

Every member owns a run folder:  config.json (first) -> log.jsonl (a line per epoch)
-> ckpt.pt (every epoch, atomic) -> result.json (last, atomic). A run whose result.json exists
is done; one with a ckpt.pt resumes exactly where it stopped, because every random draw comes
from (seed, epoch, step) and the checkpoint holds model, optimizer, objective and position.
"""
import argparse
import copy
import hashlib
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

import kd
from models import atomic_save, is_convnet, model_input, predict

EXIT_BAD_INPUT = 2   # bad flags or files: nothing was started
EXIT_FAILED = 3      # a run diverged (NaN/inf loss); its result.json says why
EXIT_PREEMPTED = 75  # SIGTERM (Slurm preemption / time limit): checkpoint saved, re-run to resume


# ---------------------------------------------------------------------------------------------
# Provenance: what produced a result

def code_version():
    """The git commit of this code, with '-dirty' if the tree has uncommitted changes."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit + ("-dirty" if dirty else "")) if commit else "unknown"


def library_versions():
    """Versions of everything that can change a number in a result."""
    import numpy
    import timm
    import torchvision
    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "timm": timm.__version__, "numpy": numpy.__version__}


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def augment_device(augment_on, device, workers):
    """Where TrainStream augments whole batches: `device` for --augment-on device, and for auto on a GPU
    or without worker processes (the batches are the same either way); None: per sample in the workers."""
    auto = device.type == "cuda" or workers == 0
    return device if augment_on == "device" or (augment_on == "auto" and auto) else None


def channels_last_for(setting, model, device):
    """--channels-last: on, off, or auto (on a GPU, for a model that is mostly convolutions)."""
    return setting == "on" or (setting == "auto" and device.type == "cuda" and is_convnet(model))


def resolve_device(name):
    """'auto' -> cuda if available else cpu; 'cuda' without CUDA is an input error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda: CUDA is not available on this machine (use --device cpu or auto)")
    return torch.device(name)


# ---------------------------------------------------------------------------------------------
# Run folders

def run_id(identity):
    """Short deterministic id of a run: sha1 of its canonical (sorted-key) identity config."""
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]


def write_json_atomic(obj, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, allow_nan=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunError(ValueError):
    """A run folder that cannot be used as asked (another run's config, an unreadable checkpoint)."""


class RunDir:
    """A run folder: config.json, log.jsonl, ckpt.pt, result.json."""

    def __init__(self, path, identity):
        self.path, self.identity = Path(path), identity

    def file(self, name):
        return self.path / name

    def done(self):
        return self.file("result.json").is_file()

    def start(self, runtime):
        """Write config.json, or check that an existing one describes the same run."""
        cfg = self.file("config.json")
        if cfg.is_file():
            old = json.loads(cfg.read_text()).get("identity", {})
            differ = sorted(k for k in set(old) | set(self.identity) if old.get(k) != self.identity.get(k))
            if differ:
                raise RunError(f"run folder '{self.path}' holds a different run (keys that differ: {', '.join(differ)}); "
                                 "use another --out or delete the folder")
            return
        write_json_atomic({"identity": self.identity, "runtime": runtime}, cfg)

    def load_state(self):
        ckpt = self.file("ckpt.pt")
        if not ckpt.is_file():
            return None
        try:
            return torch.load(ckpt, map_location="cpu", weights_only=True)
        except Exception as e:   # truncated by a full disk, or not ours: never unpickle code
            raise RunError(f"run folder '{self.path}': ckpt.pt cannot be loaded safely ({str(e).splitlines()[0][:120]}); "
                             "delete it to restart this run from scratch") from None

    def save_state(self, state):
        atomic_save(state, self.file("ckpt.pt"))

    def rewrite_log(self, curve):
        """log.jsonl holds exactly the epochs in the checkpoint (no duplicates after a resume)."""
        tmp = self.file("log.jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in curve))
        os.replace(tmp, self.file("log.jsonl"))

    def append_log(self, record):
        with open(self.file("log.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")

    def finish(self, result, keep_ckpt=False):
        write_json_atomic(result, self.file("result.json"))
        if not keep_ckpt:
            self.file("ckpt.pt").unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Optimisation

def build_optimizer(params, name, lr, wd):
    """AdamW, or SGD with momentum 0.9; weight decay on every parameter (as the official KD repos do).

    PyTorch's fused kernels (one pass over each tensor) where the parameters' device has them: the same
    update rule as the per-tensor loop, about 6x faster on a CPU (the loop is ~8% of a small student's step)."""
    params = list(params)
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, fused=fused)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd, fused=fused)
    raise ValueError(f"--opt: unknown optimizer '{name}' (expected adamw or sgd)")


def lr_at(step, total_steps, base_lr, warmup_steps=0):
    """Linear warmup for `warmup_steps`, then half-period cosine decay from base_lr to 0 at total_steps."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(1.0, progress)))


def step_seed(seed, epoch, step):
    """Seed of the global RNG at one training step (dropout, drop-path, random signals)."""
    return (seed * 1_000_003 + epoch * 10_007 + step) % (2**63 - 1)


def accuracy(logits, labels, reference_pred=None):
    """top-1, top-5 (%) and, given another model's predictions, top-1 agreement with it (%)."""
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    metrics = {"top1": 100.0 * (top[:, 0] == labels).float().mean().item(),
               "top5": 100.0 * (top == labels[:, None]).any(1).float().mean().item()}
    if reference_pred is not None:
        metrics["agreement"] = 100.0 * (top[:, 0] == reference_pred).float().mean().item()
    return metrics


# ---------------------------------------------------------------------------------------------
# The loop

@dataclass
class Member:
    """One model trained by the loop, with its own objective, optimizer and run folder.

    objective(logits, batch, teacher_logits, epoch, step) -> scalar loss; `epoch` is 1-indexed
    (the convention of the KD repos' warmups). logits/teacher_logits are tuples with two views.
    """
    name: str
    run: RunDir
    model: torch.nn.Module
    objective: object
    norm: tuple
    objective_module: torch.nn.Module = None   # holds learnable loss parameters (CTKD's temperature)
    result_extra: dict = field(default_factory=dict)
    # filled in by train():
    optimizer: object = None
    position: int = 0
    curve: list = field(default_factory=list)
    failed: str = None


def _state(m):
    return {"model": m.model.state_dict(), "optimizer": m.optimizer.state_dict(),
            "objective": m.objective_module.state_dict() if m.objective_module is not None else {},
            "position": m.position, "curve": m.curve, "epoch_loss": [float(m.loss_sum), m.loss_n],
            "elapsed": time.time() - m.t0}


def _fmt_time(s):
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m" if s >= 3600 else f"{int(s // 60)}m{int(s % 60):02d}s"


def train(members, stream, test_images, test_labels, *, epochs, opt, lr, wd, warmup_epochs=0, clip=1.0,
          seed=0, device=torch.device("cpu"), amp=False, channels_last=False, compile=False, eval_every=0,
          parallel=1, teacher=None, teacher_test_pred=None, keep_ckpt=False, common_result=None, on_finish=None,
          log=print):
    """Train `members` in lockstep for `epochs` over `stream`; write each one's result.json. Returns results.

    teacher(batch, xs, epoch, step) -> logits (or a tuple per view), computed once per batch for all members.
    parallel > 1 (CPU): step that many members at once in threads, each on its share of the cores.
    on_finish(member) runs after the last epoch, before result.json (e.g. to save the trained model).
    """
    spe = stream.steps_per_epoch
    total = epochs * spe
    views = getattr(stream, "views", 1)
    for m in members:
        m.model.to(device)
        if channels_last:
            m.model.to(memory_format=torch.channels_last)
        params = list(m.model.parameters()) + (list(m.objective_module.parameters()) if m.objective_module else [])
        m.optimizer = build_optimizer(params, opt, lr, wd)
        m.loss_sum, m.loss_n = 0.0, 0          # running mean of the training loss in the current epoch
        m.t0 = time.time()                      # wall-clock start, moved back by the time of earlier sessions
        state = m.run.load_state()
        if state is not None:   # resume exactly where the checkpoint left off
            m.model.load_state_dict(state["model"])
            m.optimizer.load_state_dict(state["optimizer"])
            if m.objective_module is not None:
                m.objective_module.load_state_dict(state["objective"])
            m.position, m.curve = state["position"], list(state["curve"])
            m.loss_sum, m.loss_n = state["epoch_loss"]
            m.t0 -= state["elapsed"]
            log(f"[{m.name}] resuming at epoch {m.position // spe + 1} step {m.position % spe} from {m.run.path}")
        m.run.rewrite_log(m.curve)
        m.loss_sum = torch.tensor(m.loss_sum, device=device)   # on device: no host sync per step
        m.forward = torch.compile(m.model) if compile else m.model
        m.model.train()

    pool, threads = None, torch.get_num_threads()
    if parallel > 1 and device.type == "cpu" and len(members) > 1:
        # Small models use 2+ cores poorly; students stepped concurrently, one core each, use them well.
        # CPU float results depend on the intra-op thread count (a per-thread setting), so every thread
        # uses the same count for the whole run, serial fallback included.
        parallel = min(parallel, len(members))
        torch.set_num_threads(max(1, threads // parallel))
        if draws_random_numbers(members, stream, views, device, amp, channels_last):
            log("students draw random numbers (dropout, drop-path or a random signal): stepping them one at a time")
        else:
            pool = ThreadPoolExecutor(parallel, initializer=torch.set_num_threads, initargs=(torch.get_num_threads(),))

    def step_member(m, batch, xs, t_logits, epoch, step, g):
        for group in m.optimizer.param_groups:
            group["lr"] = lr_at(g, total, lr, warmup_epochs * spe)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = tuple(m.forward(model_input(x, *m.norm, channels_last)) for x in xs)
            loss = m.objective(logits if views == 2 else logits[0], batch, t_logits, epoch + 1, step)
        m.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip > 0:
            kd.per_layer_clip_(m.model.parameters(), clip)
        m.optimizer.step()
        m.loss_sum += loss.detach().float()
        m.loss_n += 1
        m.position = g + 1

    preempted = []
    old_handler = signal.signal(signal.SIGTERM, lambda *_: preempted.append(True))
    t_start = time.time()
    start = min(m.position for m in members)
    try:
        for epoch in range(start // spe, epochs):
            t_epoch, seen_epoch = time.time(), 0
            for step, batch in stream.epoch(epoch, max(0, start - epoch * spe)):
                g = epoch * spe + step
                active = [m for m in members if m.position == g and not m.failed]
                if not active:
                    continue
                xs = [batch["x"].to(device, non_blocking=True)] + \
                     ([batch["x2"].to(device, non_blocking=True)] if views == 2 else [])
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k not in ("x", "x2")}
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    t_logits = teacher(batch, xs, epoch, step) if teacher is not None else None
                args = (batch, xs, t_logits, epoch, step, g)
                # every member starts its step from the same RNG state (dropout, drop-path, random signals)
                if pool is None:
                    for m in active:
                        seed_step(seed, epoch, step, device)
                        step_member(m, *args)
                else:   # probed above: no member draws, so sharing the generator across threads is safe
                    seed_step(seed, epoch, step, device)
                    state = torch.random.get_rng_state()
                    list(pool.map(lambda m: step_member(m, *args), active))
                    if not torch.equal(state, torch.random.get_rng_state()):
                        raise RuntimeError("a student drew random numbers while stepped concurrently, so this "
                                           "run is not reproducible; re-run it with --parallel 1")
                seen_epoch += len(xs[0])
                if preempted and step + 1 < spe:   # at the last step, the epoch's end below saves instead
                    for m in active:
                        m.run.save_state(_state(m))
                    log(f"SIGTERM: checkpoints saved at epoch {epoch + 1} step {step + 1}; run the same command again to resume")
                    sys.exit(EXIT_PREEMPTED)
            dt = time.time() - t_epoch
            for m in members:
                if m.failed or m.position != (epoch + 1) * spe or (m.curve and m.curve[-1]["epoch"] >= epoch + 1):
                    continue   # failed, or this epoch was already recorded before a resume
                loss_total = m.loss_sum.item()
                record = {"epoch": epoch + 1, "train_loss": loss_total / max(1, m.loss_n),
                          "lr": lr_at(m.position - 1, total, lr, warmup_epochs * spe), "img_per_s": seen_epoch / max(dt, 1e-9)}
                m.loss_sum.zero_()
                m.loss_n = 0
                if m.objective_module is not None and hasattr(m.objective_module, "current_T"):
                    record["T_learned"] = float(m.objective_module.current_T())
                if not math.isfinite(loss_total):
                    m.failed = f"non-finite training loss in epoch {epoch + 1}; the checkpoint of epoch {epoch} is kept"
                    log(f"[{m.name}] FAILED: {m.failed}")
                    _finish(m, common_result, keep_ckpt=True)
                    continue
                if epoch + 1 == epochs or (eval_every and (epoch + 1) % eval_every == 0):
                    logits = predict(m.model, test_images, m.norm, device, amp=amp, channels_last=channels_last)
                    record.update(accuracy(logits, test_labels, teacher_test_pred))
                m.curve.append(record)
                m.run.append_log(record)
                if epoch + 1 < epochs or keep_ckpt or preempted:   # a finished run deletes it right away
                    m.run.save_state(_state(m))
                done = (epoch + 1) * spe - start
                eta = (time.time() - t_start) / max(1, done) * (total - (epoch + 1) * spe)
                acc = f" top1 {record['top1']:.2f}" if "top1" in record else ""
                log(f"[{m.name}] epoch {epoch + 1}/{epochs} loss {record['train_loss']:.4f} lr {record['lr']:.2e}"
                    f"{acc} {record['img_per_s']:.0f} img/s eta {_fmt_time(eta)}")
            if preempted:
                log(f"SIGTERM: checkpoints saved at the end of epoch {epoch + 1}; run the same command again to resume")
                sys.exit(EXIT_PREEMPTED)
        results = []
        for m in members:
            if not m.failed:
                if on_finish is not None:
                    on_finish(m)
                results.append(_finish(m, common_result, keep_ckpt=keep_ckpt))
        return results
    finally:
        signal.signal(signal.SIGTERM, old_handler)
        torch.set_num_threads(threads)
        if pool is not None:
            pool.shutdown()


def seed_step(seed, epoch, step, device):
    torch.random.default_generator.manual_seed(step_seed(seed, epoch, step))
    if device.type == "cuda":
        torch.cuda.manual_seed(step_seed(seed, epoch, step))


def draws_random_numbers(members, stream, views, device, amp, channels_last):
    """Whether any member's forward + objective on the first batch consumes the global RNG
    (probed on a copy of each model, so no state such as BatchNorm statistics changes)."""
    batch = next(iter(stream.epoch(0)))[1]
    xs = [batch["x"].to(device)] + ([batch["x2"].to(device)] if views == 2 else [])
    batch = {k: v.to(device) for k, v in batch.items() if k not in ("x", "x2")}
    with torch.random.fork_rng(devices=[]):
        for m in members:
            torch.manual_seed(0)
            before = torch.random.get_rng_state()
            model = copy.deepcopy(m.model).train()
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = tuple(model(model_input(x, *m.norm, channels_last)) for x in xs)
                # teacher logits stand-in: the student's own (the objective needs some of the right shape)
                m.objective(logits if views == 2 else logits[0], batch, logits if views == 2 else logits[0], 1, 0)
            if not torch.equal(before, torch.random.get_rng_state()):
                return True
    return False


def _finish(m, common, *, keep_ckpt):
    """Write result.json: the final epoch is the result; the best evaluated epoch is reported too."""
    evaluated = [r for r in m.curve if "top1" in r]
    wall = time.time() - m.t0
    failed = m.failed is not None
    result = {"status": "failed" if failed else "ok", "reason": m.failed, "run_id": m.run.path.name,
              "config": m.run.identity,
              "final": evaluated[-1] if evaluated and not failed else None,
              "best": max(evaluated, key=lambda r: r["top1"]) if evaluated else None,
              "curve": m.curve, "wall_time_s": wall,
              "img_per_s": sum(r["img_per_s"] for r in m.curve) / max(1, len(m.curve))}
    result.update(common or {})
    result.update(m.result_extra)
    m.run.finish(result, keep_ckpt=keep_ckpt or failed)
    return result


def soft_cross_entropy(logits, soft_targets, label_smoothing=0.0):
    """Cross-entropy (B,K) logits vs (B,K) soft labels (MixUp/CutMix), with label smoothing; float32."""
    return F.cross_entropy(logits.float(), soft_targets.float(), label_smoothing=label_smoothing)


# ---------------------------------------------------------------------------------------------
# Command-line pieces shared by train_teacher.py and distill.py

class HelpFormatter(argparse.HelpFormatter):
    """Appends '(default: X)' to a flag's help unless the help already names its default or X is empty."""

    def _get_help_string(self, action):
        text = action.help or ""
        empty = action.default is None or action.default is False or action.default == [] or action.default == argparse.SUPPRESS
        if "default" not in text and not empty:
            text += " (default: %(default)s)"
        return text


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump), exit code 2, and defaults shown in --help."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, formatter_class=HelpFormatter, **kwargs)

    def error(self, message):
        fail(self.prog, message)


def fail(prog, message):
    """Bad input: one line naming the flag or file and what is expected, exit code 2, nothing written."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def parse_key_values(items, flag):
    """['a=1', 'b=0.5', 'c=x'] -> {'a': 1, 'b': 0.5, 'c': 'x'} (ints, floats, true/false, none, strings)."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag}: expected KEY=VALUE, got '{item}'")
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                pass
        else:
            value = {"true": True, "false": False, "none": None}.get(value.lower(), value)
        out[key.replace("-", "_")] = value
    return out


def add_data_args(parser):
    g = parser.add_argument_group("data")
    g.add_argument("--dataset", default="synth-fine", help="pets, cifar100, cars, tiny-imagenet, imagefolder, or built-in synth-{src,fine,coarse,novel}")
    g.add_argument("--data-root", default="data", help="folder holding the dataset (for imagefolder: the dataset folder itself)")
    g.add_argument("--download", action="store_true", help="let torchvision download the dataset where it can (needs internet)")
    g.add_argument("--image-size", type=int, default=None, help="training resolution (default: 224 for real datasets, 32 for synth-*)")
    g.add_argument("--synth", nargs="*", action="extend", default=[], metavar="KEY=VALUE", help="built-in dataset sizes, e.g. --synth target_train_per_class=50")
    g = parser.add_argument_group("augmentation (defaults: the study's; see STUDY.md §1)")
    g.add_argument("--randaug-n", type=int, default=None, help="RandAugment operations per image (default 2; 0: off)")
    g.add_argument("--randaug-m", type=int, default=None, help="RandAugment magnitude (default 9)")
    g.add_argument("--mixup-alpha", type=float, default=None, help="MixUp alpha (default 1.0; 0: only CutMix)")
    g.add_argument("--cutmix-alpha", type=float, default=None, help="CutMix alpha (default 1.0; 0: only MixUp)")
    return g


def aug_config(args):
    """The study's augmentation for args.dataset with the user's --randaug-*/--*-alpha overrides."""
    import data
    overrides = {k: getattr(args, k) for k in ("randaug_n", "randaug_m", "mixup_alpha", "cutmix_alpha")
                 if getattr(args, k) is not None}
    for k, v in overrides.items():
        if not v >= 0:
            raise ValueError(f"--{k.replace('_', '-')}: must be >= 0, got {v}")
    return data.aug_config_for(args.dataset, args.image_size, **overrides)


def add_runtime_args(parser):
    g = parser.add_argument_group("device and runtime (do not change results, except --amp)")
    g.add_argument("--device", default="auto", help="auto (cuda if available), cpu, or cuda[:N]")
    g.add_argument("--amp", action="store_true", help="bf16 autocast (losses stay float32); for CUDA")
    g.add_argument("--channels-last", nargs="?", const="on", default="auto", choices=["auto", "on", "off"],
                   help="channels_last memory format: on (the bare flag), off, or auto (on a GPU, for each model that is mostly convolutions)")
    g.add_argument("--compile", action="store_true", help="torch.compile the trained models")
    g.add_argument("--workers", type=int, default=0, help="data loader worker processes (batches are identical for any number)")
    g.add_argument("--augment-on", default="auto", choices=["auto", "workers", "device"],
                   help="augment per sample in the --workers processes, or whole batches on --device (auto: device on a GPU or with --workers 0); same batches")
    g.add_argument("--parallel", type=int, default=1,
                   help="CPU: step up to N lockstep students at once, splitting the cores (float rounding only)")
    g.add_argument("--eval-every", type=int, default=0, help="also evaluate on the test split every N epochs (0: only at the end)")
    g.add_argument("--keep-ckpt", action="store_true", help="keep ckpt.pt (model + optimizer) after the run finishes")
    return g


def check_writable(folder, flag="--out"):
    """Create `folder` if needed and prove it is writable, before any work starts."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as e:
        raise ValueError(f"{flag}: folder '{folder}' is not writable ({e.strerror or e})") from None



def data_id(args):
    """Which image folder an `imagefolder` run used (e.g. 'imagenet-birds'); None for named datasets."""
    return Path(args.data_root).resolve().name if args.dataset == "imagefolder" else None
