"""The one training loop, shared by train_teacher.py and distill.py.

It trains one or more models ("members") in lockstep on the same deterministic batch stream: a
teacher being fine-tuned is one member; a temperature sweep is one member per temperature, all fed
the identical batches, with the teacher's logits computed once per batch. Each member owns a run
folder (runs.py). Every random draw comes from (seed, epoch, step), and a checkpoint holds model,
optimizer, objective and position, so a killed run resumes exactly where it stopped.
"""

import copy
import math
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

import kd
from batched import BatchedStudents, can_batch
from cli import EXIT_PREEMPTED
from models import is_convnet, model_input, predict
from runs import RunDir

# ---------------------------------------------------------------------------------------------
# Devices


def channels_last_for(setting, model, device):
    """--channels-last: on, off, or auto (on a GPU, for a model that is mostly convolutions)."""
    return setting == "on" or (setting == "auto" and device.type == "cuda" and is_convnet(model))


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
    parallel: int = 1  # CPU: step up to N members at once in threads
    batched: bool = False  # step the members as one vmapped computation (batched.py)
    keep_ckpt: bool = False


def recipe_from_args(args, model):
    """The Recipe of a script's parsed flags (train_teacher.py, distill.py); `model` decides --channels-last auto."""
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
        parallel=args.parallel,
        batched=getattr(args, "batched", False),
        keep_ckpt=args.keep_ckpt,
    )


@dataclass
class Member:
    """One model trained by the loop, with its own objective, optimizer and run folder.

    objective(logits, batch, teacher_logits, epoch, step) -> scalar loss; `epoch` is 1-indexed
    (the convention of the KD repos' warmups). logits/teacher_logits are tuples with two views."""

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

    test: (uint8 images, labels, predictions to measure agreement with, or None). teacher(batch, xs,
    epoch, step) -> logits (a tuple with two views), computed once per batch for all members.
    on_finish(member) runs after the last epoch, before result.json (e.g. to save the trained model)."""
    spe = stream.steps_per_epoch
    for m in members:
        prepare(m, recipe, spe, log)
    start, t_start = min(m.position for m in members), time.time()
    with StopSignals() as stop, Stepper(members, stream, recipe, log) as stepper:
        for epoch in range(start // spe, recipe.epochs):
            t_epoch, seen = time.time(), 0
            for step, batch in stream.epoch(epoch, max(0, start - epoch * spe)):
                g = epoch * spe + step
                active = [m for m in members if m.position == g and not m.failed]
                if not active:  # members resumed further ahead wait here for the others
                    continue
                xs, batch = to_device(batch, recipe.device)
                with torch.autocast(recipe.device.type, dtype=torch.bfloat16, enabled=recipe.amp):
                    t_logits = teacher(batch, xs, epoch, step) if teacher is not None else None
                stepper.step(active, batch, xs, t_logits, epoch, step, g)
                seen += len(xs[0])
                if stop.signal and step + 1 < spe:  # at an epoch's last step, end_of_epoch saves instead
                    for m in active:
                        m.run.save_state(checkpoint(m))
                    stop.exit(log, f"epoch {epoch + 1} step {step + 1}")
            done = (epoch + 1) * spe - start
            eta = (time.time() - t_start) / max(1, done) * (recipe.epochs - epoch - 1) * spe
            for m in members:
                end_of_epoch(
                    m,
                    epoch,
                    seen / max(time.time() - t_epoch, 1e-9),
                    eta,
                    test,
                    recipe,
                    spe,
                    common_result,
                    keep_ckpt=recipe.keep_ckpt or bool(stop.signal),
                    log=log,
                )
            if stop.signal:
                stop.exit(log, f"the end of epoch {epoch + 1}")
    results = []
    for m in members:
        if not m.failed:
            if on_finish is not None:
                on_finish(m)
            results.append(finish(m, common_result, keep_ckpt=recipe.keep_ckpt))
    return results


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


def end_of_epoch(m, epoch, img_per_s, eta, test, recipe, spe, common_result, keep_ckpt, log):
    """Log the epoch, stop the member if its loss diverged, evaluate when due, checkpoint."""
    if m.failed or m.position != (epoch + 1) * spe or (m.curve and m.curve[-1]["epoch"] >= epoch + 1):
        return  # failed, behind, or this epoch was recorded before a resume
    loss = m.loss_sum.item()
    total = recipe.epochs * spe
    record = {
        "epoch": epoch + 1,
        "train_loss": loss / max(1, m.loss_n),
        "lr": lr_at(m.position - 1, total, recipe.lr, recipe.warmup_epochs * spe),
        "img_per_s": img_per_s,
    }
    m.loss_sum.zero_()
    m.loss_n = 0
    if m.objective_module is not None and hasattr(m.objective_module, "current_T"):
        record["T_learned"] = float(m.objective_module.current_T())
    if not math.isfinite(loss):
        kept = "its last checkpoint (ckpt.pt) is kept" if m.run.file("ckpt.pt").is_file() else "no checkpoint"
        m.failed = f"non-finite training loss in epoch {epoch + 1}; {kept}"
        log(f"[{m.name}] FAILED: {m.failed}")
        finish(m, common_result, keep_ckpt=True)
        return
    due = recipe.eval_every and (epoch + 1) % recipe.eval_every == 0 and epoch + 1 >= recipe.eval_from
    if epoch + 1 == recipe.epochs or due:
        images, labels, reference = test
        logits = predict(m.model, images, m.norm, recipe.device, amp=recipe.amp, channels_last=recipe.channels_last)
        record.update(accuracy(logits, labels, reference if m.measure_agreement else None))
    m.curve.append(record)
    m.run.append_log(record)
    if epoch + 1 < recipe.epochs or keep_ckpt:  # a finished run deletes its checkpoint right away
        m.run.save_state(checkpoint(m))
    top1 = f" top1 {record['top1']:.2f}" if "top1" in record else ""
    log(
        f"[{m.name}] epoch {epoch + 1}/{recipe.epochs} loss {record['train_loss']:.4f} lr {record['lr']:.2e}"
        f"{top1} {img_per_s:.0f} img/s eta {format_duration(eta)}"
    )


def finish(m, common, *, keep_ckpt):
    """Write result.json: the final epoch is the result; the best evaluated epoch is reported too."""
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
    }
    result.update(common or {})
    result.update(m.result_extra)
    m.run.finish(result, keep_ckpt=keep_ckpt or failed)
    return result


def format_duration(s):
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m" if s >= 3600 else f"{int(s // 60)}m{int(s % 60):02d}s"


class StopSignals:
    """Within the block, SIGTERM (Slurm preemption, time limit) and SIGINT (Ctrl-C) set `signal` instead
    of killing: the loop checkpoints at the next step and exits with EXIT_PREEMPTED; re-running resumes."""

    def __enter__(self):
        self.signal = None
        self.old = {s: signal.signal(s, self._note) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def _note(self, signum, frame):
        self.signal = signal.Signals(signum).name

    def exit(self, log, where):
        log(f"{self.signal}: checkpoints saved at {where}; run the same command again to resume")
        sys.exit(EXIT_PREEMPTED)

    def __exit__(self, *exc):
        for s, handler in self.old.items():
            signal.signal(s, handler)


class Stepper:
    """Steps the active members on one batch: one after the other; or (CPU, --parallel N) N at a time in
    threads, each thread on its share of the cores; or (--batched) all of them as one vmapped computation.
    CPU float results depend on the intra-op thread count (a per-thread setting), so every thread uses the
    same count for the whole run, serial fallback included."""

    def __init__(self, members, stream, recipe, log):
        self.recipe, self.views, self.pool, self.batched = recipe, getattr(stream, "views", 1), None, None
        self.total, self.warmup = recipe.epochs * stream.steps_per_epoch, recipe.warmup_epochs * stream.steps_per_epoch
        self.threads = torch.get_num_threads()
        if recipe.batched:
            why_not = can_batch(members, recipe) or ("two views (MLKD)" if self.views == 2 else "")
            if why_not:
                log(f"--batched: stepping the students one at a time instead ({why_not})")
            else:
                self.batched = BatchedStudents(members, lambda p: build_optimizer(p, recipe.opt, recipe.lr, recipe.wd))
                return
        n = min(recipe.parallel, len(members))
        if n > 1 and recipe.device.type == "cpu":  # small models use 2+ cores poorly; one core each, well
            torch.set_num_threads(max(1, self.threads // n))
            if draws_random_numbers(members, stream, recipe):
                log("students draw random numbers (dropout, drop-path or a random signal): stepping them one at a time")
            else:
                self.pool = ThreadPoolExecutor(
                    n, initializer=torch.set_num_threads, initargs=(torch.get_num_threads(),)
                )

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        torch.set_num_threads(self.threads)
        if self.pool is not None:
            self.pool.shutdown()

    def step(self, active, batch, xs, t_logits, epoch, step, g):
        """One optimizer step of every active member; each starts from the same RNG state."""
        seed, device = self.recipe.seed, self.recipe.device
        if self.batched is not None:
            seed_step(seed, epoch, step, device)
            return self.step_batched(active, batch, xs, t_logits, epoch, step, g)
        if self.pool is None:
            for m in active:
                seed_step(seed, epoch, step, device)
                self.step_member(m, batch, xs, t_logits, epoch, step, g)
            return
        seed_step(seed, epoch, step, device)  # probed: no member draws, so sharing the generator is safe
        state = torch.random.get_rng_state()
        list(self.pool.map(lambda m: self.step_member(m, batch, xs, t_logits, epoch, step, g), active))
        if not torch.equal(state, torch.random.get_rng_state()):
            raise RuntimeError(
                "a student drew random numbers while stepped concurrently, so this run is not "
                "reproducible; re-run it with --parallel 1"
            )

    def step_member(self, m, batch, xs, t_logits, epoch, step, g):
        r = self.recipe
        for group in m.optimizer.param_groups:
            group["lr"] = lr_at(g, self.total, r.lr, self.warmup)
        with torch.autocast(r.device.type, dtype=torch.bfloat16, enabled=r.amp):
            logits = tuple(m.forward(model_input(x, *m.norm, r.channels_last)) for x in xs)
            loss = m.objective(logits if self.views == 2 else logits[0], batch, t_logits, epoch + 1, step)
        m.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if r.clip > 0:
            kd.per_layer_clip_(m.model.parameters(), r.clip)
        m.optimizer.step()
        m.loss_sum += loss.detach().float()
        m.loss_n += 1
        m.position = g + 1

    def step_batched(self, active, batch, xs, t_logits, epoch, step, g):
        """One step of all members as one computation (a failed member's slice keeps stepping, unrecorded)."""
        r, b = self.recipe, self.batched
        for group in b.optimizer.param_groups:
            group["lr"] = lr_at(g, self.total, r.lr, self.warmup)
        with torch.autocast(r.device.type, dtype=torch.bfloat16, enabled=r.amp):
            logits = b.forward(xs[0], b.members[0].norm, r.channels_last)
            losses = [m.objective(logits[k], batch, t_logits, epoch + 1, step) for k, m in enumerate(b.members)]
        b.optimizer.zero_grad(set_to_none=True)
        torch.stack(losses).sum().backward()  # each student's loss depends on its own slice only
        if r.clip > 0:
            b.clip_(r.clip)
        b.optimizer.step()
        for m, loss in zip(b.members, losses):
            if m in active:
                m.loss_sum += loss.detach().float()
                m.loss_n += 1
                m.position = g + 1


def draws_random_numbers(members, stream, recipe):
    """Whether any member's forward + objective on the first batch consumes the global RNG
    (probed on a copy of each model, so no state such as BatchNorm statistics changes)."""
    xs, batch = to_device(next(iter(stream.epoch(0)))[1], recipe.device)
    two = len(xs) == 2
    with torch.random.fork_rng(devices=[]):
        for m in members:
            torch.manual_seed(0)
            before = torch.random.get_rng_state()
            model = copy.deepcopy(m.model).train()
            with torch.no_grad(), torch.autocast(recipe.device.type, dtype=torch.bfloat16, enabled=recipe.amp):
                logits = tuple(model(model_input(x, *m.norm, recipe.channels_last)) for x in xs)
                # teacher logits stand-in: the student's own (the objective needs some of the right shape)
                m.objective(logits if two else logits[0], batch, logits if two else logits[0], 1, 0)
            if not torch.equal(before, torch.random.get_rng_state()):
                return True
    return False
