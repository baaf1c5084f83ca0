"""The one training loop, shared by train_teacher.py and distill.py.

It trains one or more models ("members") in lockstep on the same deterministic batch stream: a
teacher being fine-tuned is one member; a temperature sweep is one member per temperature, all fed
the identical batches, with the teacher's logits computed once per batch. Each member owns a run
folder (runs.py). Every random draw comes from (seed, epoch, step), and a checkpoint holds model,
optimizer, objective and position, so a killed run resumes exactly where it stopped.
"""

import math
import signal
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

import kd
from batched import BatchedStudents, can_batch
from cli import EXIT_PREEMPTED
from models import is_convnet, model_input, one_pixel_convs, predict
from runs import RunDir

# ---------------------------------------------------------------------------------------------
# Devices


def channels_last_for(setting, model, device):
    """--channels-last: on, off, or auto: on for a model that is mostly convolutions, on a GPU and on a CPU alike
    (docs/PERFORMANCE.md: 1.4x for the lab's students on this project's CPU, within float32's seed spread)."""
    return setting == "on" or (setting == "auto" and is_convnet(model))


def amp_for(amp, device, arch, image_size, log):
    """The resolved --amp, turned off on the CPU where a strided 3x3 (or wider) convolution sees a 1x1 map: torch's
    CPU bf16 convolution backward then returns non-finite weight gradients now and then (docs/FAILURES.md)."""
    if not (amp and device.type == "cpu"):
        return amp
    convs = one_pixel_convs(arch, image_size)
    if convs:
        log(
            f"note: --amp: float32 instead of bf16: at {image_size} px {arch}'s {convs[0]} sees a 1x1 feature map, "
            "where the CPU's bf16 convolution backward gives non-finite weight gradients (a larger --image-size "
            "keeps bf16)"
        )
    return not convs


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


def seed_step(seed, epoch, step, device):
    torch.random.default_generator.manual_seed(step_seed(seed, epoch, step))
    if device.type == "cuda":
        torch.cuda.manual_seed(step_seed(seed, epoch, step))


def label_smoothed_cross_entropy(logits, soft_targets, label_smoothing=0.0):
    """Cross-entropy (B,K) logits vs (B,K) soft labels (MixUp/CutMix), with label smoothing; float32.
    The objective of teachers and of students trained on labels alone."""
    return F.cross_entropy(logits.float(), soft_targets.float(), label_smoothing=label_smoothing)


def accuracy(logits, labels, reference_pred=None):
    """top-1, top-5 (%) and, given another model's predictions, top-1 agreement with it (%)."""
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    metrics = {
        "top1": 100.0 * (top[:, 0] == labels).float().mean().item(),
        "top5": 100.0 * (top == labels[:, None]).any(1).float().mean().item(),
    }
    if reference_pred is not None:
        metrics["agreement"] = 100.0 * (top[:, 0] == reference_pred).float().mean().item()
    return metrics


# ---------------------------------------------------------------------------------------------
# The loop


@dataclass
class Recipe:
    """How the members are trained (the same for all of them)."""

    epochs: int
    opt: str
    lr: float
    wd: float
    warmup_epochs: float = 0
    clip: float = 1.0  # per-layer gradient-norm clip; 0: off
    seed: int = 0
    device: torch.device = torch.device("cpu")
    amp: bool = False  # bf16 autocast
    channels_last: bool = False
    compile: bool = False
    eval_every: int = 0  # also evaluate every N epochs (0: only after the last)
    eval_from: int = 0  # ... from this epoch on (e.g. the last quarter, where convergence is read)
    batched: bool = False  # step the members as one vmapped computation (batched.py)
    keep_ckpt: bool = False
    ckpt_every_s: float = 0  # checkpoint when this much time has passed (and at a stop signal); 0: every epoch


def recipe_from_args(args, model):
    """The Recipe of a script's resolved flags (train_teacher.py, distill.py); `model` decides --channels-last auto."""
    return Recipe(
        epochs=args.epochs,
        opt=args.opt,
        lr=args.lr,
        wd=args.wd,
        warmup_epochs=args.warmup_epochs,
        clip=args.clip,
        seed=args.seed,
        device=args.device,
        amp=args.amp,
        compile=args.compile,
        channels_last=channels_last_for(args.channels_last, model, args.device),
        eval_every=args.eval_every,
        eval_from=args.eval_from,
        batched=getattr(args, "batched", False),
        keep_ckpt=args.keep_ckpt,
        ckpt_every_s=60 * args.ckpt_every_min,
    )


@dataclass
class Member:
    """One model trained by the loop, with its own objective, optimizer and run folder.

    objective(logits, batch, teacher_logits, epoch, step) -> scalar loss, made by the script: train_teacher.py's
    label-smoothed cross-entropy, or distill.py's make_objective (a kd.py loss at one T, a control signal, or
    labels alone). `epoch` is 1-indexed (the KD repos' warmups count so); with two views (MLKD) logits and
    teacher_logits are (weak, strong) tuples."""

    name: str
    run: RunDir
    model: torch.nn.Module
    objective: object
    norm: tuple  # the model's input (mean, std)
    objective_module: torch.nn.Module = None  # holds learnable loss parameters (CTKD's temperature)
    result_extra: dict = field(default_factory=dict)
    measure_agreement: bool = True  # record top-1 agreement with the test predictions given to train()
    # set by train(): the state of the run
    forward: object = None  # the model, or its compiled version
    optimizer: torch.optim.Optimizer = None
    position: int = 0  # training steps done
    curve: list = field(default_factory=list)  # one record per finished epoch
    loss_sum: torch.Tensor = None  # training loss summed over the current epoch's steps (on the device)
    loss_n: int = 0
    t0: float = 0.0  # wall-clock start, moved back by the time of earlier sessions
    failed: str = None  # why the run stopped (a non-finite loss)


def train(members, stream, test, recipe, *, teacher=None, common_result=None, on_finish=None, log=print):
    """Train `members` in lockstep for recipe.epochs over `stream`; write each one's result.json. Returns results.

    test: (uint8 images, labels, predictions to measure agreement with, or None). teacher(batch, xs, epoch,
    step) -> logits (a tuple with two views), computed once per batch for all members. on_finish(member) runs
    after the last epoch, before result.json (e.g. to save the trained model)."""
    spe, device = stream.steps_per_epoch, recipe.device
    total, warmup = recipe.epochs * spe, recipe.warmup_epochs * spe
    if recipe.compile:
        allow_compiles(members)
    for m in members:
        prepare(m, recipe, spe, log)
    batched = batch_members(members, recipe, getattr(stream, "views", 1), log)
    start, t_start = min(m.position for m in members), time.time()
    timer = CheckpointTimer(recipe.ckpt_every_s)
    with StopSignals() as stop:
        for epoch in range(start // spe, recipe.epochs):
            t_epoch, seen = time.time(), 0
            for step, batch in stop.guard(stream.epoch(epoch, max(0, start - epoch * spe))):
                g = epoch * spe + step  # the global step
                active = [m for m in members if m.position == g and not m.failed]
                if not active:  # members resumed further ahead wait here for the others
                    continue
                xs, batch = to_device(batch, device)
                lr = lr_at(g, total, recipe.lr, warmup)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=recipe.amp):
                    t_logits = teacher(batch, xs, epoch, step) if teacher is not None else None
                if batched is not None:
                    seed_step(recipe.seed, epoch, step, device)
                    batched.step(active, xs, batch, t_logits, epoch, step, lr, recipe)
                for m in active if batched is None else []:
                    seed_step(recipe.seed, epoch, step, device)  # every member draws the same random numbers
                    train_step(m, xs, batch, t_logits, epoch, step, lr, recipe)
                seen += len(xs[0])
                if (stop.signal or timer.due(mid_epoch=True)) and step + 1 < spe:  # an epoch's end: saved below
                    for m in active:
                        m.run.save_state(checkpoint(m))
                    timer.saved()
                    if stop.signal:
                        stop.exit(log, f"epoch {epoch + 1} step {step + 1}")
            if stop.cut_short:  # the signal ended the loader mid-epoch: save every member where it stands
                for m in members:
                    if not m.failed:
                        m.run.save_state(checkpoint(m))
                at = min(m.position for m in members)
                stop.exit(log, f"epoch {at // spe + 1} step {at % spe}")
            img_per_s = seen / max(time.time() - t_epoch, 1e-9)
            due = bool(stop.signal) or timer.due(mid_epoch=False)
            eta = (time.time() - t_start) / max(1, (epoch + 1) * spe - start) * (recipe.epochs - epoch - 1) * spe
            for m in members:
                if m.failed or m.position != (epoch + 1) * spe or (m.curve and m.curve[-1]["epoch"] >= epoch + 1):
                    continue  # failed, behind, or this epoch was recorded before a resume
                record = epoch_record(m, epoch, img_per_s, lr_at(m.position - 1, total, recipe.lr, warmup))
                if not math.isfinite(record["train_loss"]):
                    stop_diverged(m, epoch, common_result, log)
                    continue
                if evaluation_due(recipe, epoch + 1):
                    record.update(evaluate(m, test, recipe))
                save_epoch(m, record, recipe, due, stopping=bool(stop.signal))
                log(epoch_line(m, record, recipe.epochs, eta))
            if due:
                timer.saved()
            if stop.signal:
                if not due:  # the signal came while the records were written: their checkpoints now
                    for m in members:
                        if not m.failed and m.position == (epoch + 1) * spe:
                            m.run.save_state(checkpoint(m))
                stop.exit(log, f"the end of epoch {epoch + 1}")
    results = []
    for m in members:
        if not m.failed:
            if on_finish is not None:
                on_finish(m)
            results.append(finish(m, common_result, keep_ckpt=recipe.keep_ckpt, levers=levers_of(recipe, batched)))
    return results


def train_step(m, xs, batch, t_logits, epoch, step, lr, recipe):
    """One optimizer step of member m: forward, its objective, backward, per-layer clipping, update."""
    for group in m.optimizer.param_groups:
        group["lr"] = lr
    with torch.autocast(recipe.device.type, dtype=torch.bfloat16, enabled=recipe.amp):
        logits = [m.forward(model_input(x, *m.norm, recipe.channels_last)) for x in xs]
        loss = m.objective(logits[0] if len(xs) == 1 else tuple(logits), batch, t_logits, epoch + 1, step)
    m.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if recipe.clip > 0:
        kd.per_layer_clip_(m.model.parameters(), recipe.clip)
    m.optimizer.step()
    m.loss_sum += loss.detach().float()  # on the device: no host sync per step
    m.loss_n += 1
    m.position += 1


def evaluation_due(recipe, epoch):
    """Evaluate after the last epoch, and every recipe.eval_every epochs from recipe.eval_from on (1-indexed)."""
    periodic = recipe.eval_every and epoch % recipe.eval_every == 0 and epoch >= recipe.eval_from
    return epoch == recipe.epochs or bool(periodic)


def evaluate(m, test, recipe):
    """{top1, top5[, agreement]} (%) of member m on the test images."""
    images, labels, reference = test
    logits = predict(m.model, images, m.norm, recipe.device, amp=recipe.amp, channels_last=recipe.channels_last)
    return accuracy(logits, labels, reference if m.measure_agreement else None)


def batch_members(members, recipe, views, log):
    """BatchedStudents for --batched (one vmapped computation), or None: step the members one by one."""
    if not recipe.batched:
        return None
    why_not = can_batch(members, recipe) or ("two views (MLKD)" if views == 2 else "")
    if why_not:
        log(f"--batched: stepping the students one at a time instead ({why_not})")
        return None
    return BatchedStudents(members, lambda params: build_optimizer(params, recipe.opt, recipe.lr, recipe.wd))


def prepare(m, recipe, spe, log):
    """Move the member to the device, give it an optimizer, and resume it from its checkpoint if it has one."""
    m.model.to(recipe.device)
    if recipe.channels_last:
        m.model.to(memory_format=torch.channels_last)
    params = list(m.model.parameters()) + (list(m.objective_module.parameters()) if m.objective_module else [])
    m.optimizer = build_optimizer(params, recipe.opt, recipe.lr, recipe.wd)
    m.loss_sum, m.loss_n, m.t0 = 0.0, 0, time.time()
    state = m.run.load_state()
    if state is not None:
        m.model.load_state_dict(state["model"])
        m.optimizer.load_state_dict(state["optimizer"])
        if m.objective_module is not None:
            m.objective_module.load_state_dict(state["objective"])
        m.position, m.curve = state["position"], list(state["curve"])
        m.loss_sum, m.loss_n = state["epoch_loss"]
        m.t0 -= state["elapsed"]
        log(f"[{m.name}] resuming at epoch {m.position // spe + 1} step {m.position % spe} from {m.run.path}")
    m.run.rewrite_log(m.curve)
    m.loss_sum = torch.tensor(m.loss_sum, device=recipe.device)  # on the device: no host sync per step
    m.forward = torch.compile(m.model) if recipe.compile else m.model
    m.model.train()


def allow_compiles(members):
    """Raise torch._dynamo's recompile limit (8 on older torch) above the lockstep members' count: each member's
    compile of the same code counts against it, and past the limit the last members silently run eagerly."""
    import torch._dynamo

    config = torch._dynamo.config
    for name in ("cache_size_limit", "recompile_limit"):  # renamed in torch 2.6; both where both exist
        if hasattr(config, name):
            setattr(config, name, max(getattr(config, name), 8 * (len(members) + 1)))


def checkpoint(m):
    """What resuming needs: model, optimizer, objective (CTKD's temperature), position and this epoch's loss.
    Tensors are copied: a batched member's weights are views of a larger stack (batched.py)."""
    return {
        "model": {k: v.detach().clone() for k, v in m.model.state_dict().items()},
        "optimizer": m.optimizer.state_dict(),
        "objective": m.objective_module.state_dict() if m.objective_module is not None else {},
        "position": m.position,
        "curve": m.curve,
        "epoch_loss": [float(m.loss_sum), m.loss_n],
        "elapsed": time.time() - m.t0,
    }


def to_device(batch, device):
    """(views [x] or [x, x2], the rest of the batch dict), moved to `device`."""
    xs = [batch[k].to(device, non_blocking=True) for k in ("x", "x2") if k in batch]
    return xs, {k: v.to(device, non_blocking=True) for k, v in batch.items() if k not in ("x", "x2")}


def epoch_record(m, epoch, img_per_s, lr):
    """The epoch's log record (mean training loss, the last step's learning rate, img/s); resets the loss sum."""
    loss = m.loss_sum.item()
    record = {"epoch": epoch + 1, "train_loss": loss / max(1, m.loss_n), "lr": lr, "img_per_s": img_per_s}
    m.loss_sum.zero_()
    m.loss_n = 0
    if m.objective_module is not None and hasattr(m.objective_module, "current_T"):
        record["T_learned"] = float(m.objective_module.current_T())
    return record


def stop_diverged(m, epoch, common_result, log):
    """A non-finite training loss: the member stops, and its result.json says so (its checkpoint is kept)."""
    kept = "its last checkpoint (ckpt.pt) is kept" if m.run.file("ckpt.pt").is_file() else "no checkpoint"
    m.failed = f"non-finite training loss in epoch {epoch + 1}; {kept}"
    log(f"[{m.name}] FAILED: {m.failed}")
    finish(m, common_result, keep_ckpt=True)


def save_epoch(m, record, recipe, due, stopping=False):
    """Append the record to the curve and log.jsonl; checkpoint if one is `due`, and after the last epoch only if it
    is kept (--keep-ckpt) or the process stops before writing the result."""
    m.curve.append(record)
    m.run.append_log(record)
    last = record["epoch"] == recipe.epochs
    if (due and not last) or (last and (recipe.keep_ckpt or stopping)):
        m.run.save_state(checkpoint(m))


def clock():
    """Seconds on a monotonic clock (the checkpoint timer's; tests replace it)."""
    return time.monotonic()


class CheckpointTimer:
    """When to checkpoint: every `every_s` seconds of training (a sweep of ten ResNet18 students writes 1.3 GB per
    checkpoint: every epoch of a few seconds would be most of the I/O); every_s = 0: at every epoch's end."""

    def __init__(self, every_s):
        self.every_s, self.last = every_s, clock()

    def due(self, mid_epoch):
        """Whether a checkpoint is due now (at an epoch's end, or within one)."""
        if self.every_s <= 0:
            return not mid_epoch
        return clock() - self.last >= self.every_s

    def saved(self):
        self.last = clock()


def epoch_line(m, record, epochs, eta):
    top1 = f" top1 {record['top1']:.2f}" if "top1" in record else ""
    return (
        f"[{m.name}] epoch {record['epoch']}/{epochs} loss {record['train_loss']:.4f} lr {record['lr']:.2e}"
        f"{top1} {record['img_per_s']:.0f} img/s eta {format_duration(eta)}"
    )


def finish(m, common, *, keep_ckpt, levers=None):
    """Write result.json: the final epoch is the result; the best evaluated epoch is reported too. `levers`: the
    speed levers it ran with (recorded, not part of its identity: they change floats by rounding only)."""
    evaluated = [r for r in m.curve if "top1" in r]
    failed = m.failed is not None
    result = {
        "status": "failed" if failed else "ok",
        "reason": m.failed,
        "run_id": m.run.path.name,
        "config": m.run.identity,
        "final": evaluated[-1] if evaluated and not failed else None,
        "best": max(evaluated, key=lambda r: r["top1"]) if evaluated else None,
        "curve": m.curve,
        "wall_time_s": time.time() - m.t0,
        "img_per_s": sum(r["img_per_s"] for r in m.curve) / max(1, len(m.curve)),
        "levers": levers,
    }
    result.update(common or {})
    result.update(m.result_extra)
    m.run.finish(result, keep_ckpt=keep_ckpt or failed)
    return result


def levers_of(recipe, batched):
    """The speed levers a run used: {channels_last, compile, batched} (bf16 autocast is in its identity: amp)."""
    return {"channels_last": recipe.channels_last, "compile": recipe.compile, "batched": batched is not None}


def format_duration(s):
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m" if s >= 3600 else f"{int(s // 60)}m{int(s % 60):02d}s"


class StopSignals:
    """Within the block, SIGTERM (Slurm preemption, time limit) and SIGINT (Ctrl-C) set `signal` instead
    of killing: the loop checkpoints at the next step and exits with EXIT_PREEMPTED; re-running resumes."""

    def __enter__(self):
        self.signal, self.cut_short = None, False
        self.old = {s: signal.signal(s, self._note) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def _note(self, signum, frame):
        self.signal = signal.Signals(signum).name

    def guard(self, batches):
        """The stream's batches; an error from it after a signal ends them (cut_short): Slurm signals the whole process
        group, and a loader worker, or the forkserver that starts them, can die of it before the loop checkpoints."""
        try:
            yield from batches
        except Exception:
            if self.signal is None:
                raise
            self.cut_short = True

    def exit(self, log, where):
        log(f"{self.signal}: checkpoints saved at {where}; run the same command again to resume")
        sys.exit(EXIT_PREEMPTED)

    def __exit__(self, *exc):
        for s, handler in self.old.items():
            signal.signal(s, handler)
