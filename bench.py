"""Benchmarks: this project's performance claims, measured side by side in one run on one machine.

    python bench.py                  # 32 px built-in data, the lab's student (minutes on 2 CPU cores)
    python bench.py --parity         # accuracy of every speed lever vs float32 (3 seeds, the lab's teacher)
    python bench.py --gpu            # the GPU check (--tiny, or without CUDA: toy sizes on the CPU)

Sections (docs/PERFORMANCE.md): images (a PNG folder vs synth-*), step (img/s of this project's loop vs a plain KD
loop), data (the augmentation stream vs the step rate), sweep (K temperatures: K plain runs vs one lockstep run on
a teacher-logit tape), levers (student img/s of each speed lever vs float32), lab step (one lab command, old
defaults vs today's); and, each alone: --parity (accuracy of each lever vs float32's seed spread), --gpu (every
lever and method one step, host syncs, img/s and peak memory of ResNet50 -> 9 ResNet18 at 224 px, GPU vs CPU
augmentation; exit 1 on a failure), --host (peak RSS and checkpoint bytes per epoch before and after issue 26),
--bf16 (the KD-gradient error of bf16 vs float32 logits).

Each prints its figures as it goes, then one JSON line with every figure, the device, models and sizes.
"""

import argparse
import collections
import contextlib
import copy
import functools
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import v2

import cli
import data
import distill
import engine
import grid
import kd
import models
import runs
import train_teacher
from tape import TeacherTape

ROOT = Path(__file__).resolve().parent
TEMPS = [1, 2, 3, 4, 5, 10, 20, 30, 40]  # the paper's 9 temperatures
LEVERS = {  # name: engine.Recipe fields (and distill.py flags) that the lever changes
    "float32": {},
    "bf16 autocast (--amp)": {"amp": True},
    "channels_last (--channels-last on)": {"channels_last": True},
    "bf16 + channels_last": {"amp": True, "channels_last": True},
    "torch.compile (--compile)": {"compile": True},
    "one vmapped computation (--batched)": {"batched": True},
}


def show(what, value, ratio=""):
    print(f"  {what:<64} {value:>14}  {ratio}", flush=True)


def write_png_folder(split, folder):
    """Save a Split as PNG files in an ImageFolder layout: folder/<label>/<index>.png."""
    for i, (img, label) in enumerate(zip(split.images, split.labels.tolist())):
        (Path(folder) / f"{label:03d}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(Path(folder) / f"{label:03d}" / f"{i:05d}.png")


def fabricated(n, size, classes=100):
    """A split of n random uint8 images (size x size), labels cycling over `classes`."""
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return data.Split(images, torch.arange(n) % classes, [str(k) for k in range(classes)])


# What the training runs of one section share: data, teacher (t_norm: its input mean, std), student architecture,
# epochs, batch size, device, loader workers.
Setup = collections.namedtuple("Setup", "train test teacher t_norm student epochs bs device workers", defaults=[0])


# ---------------------------------------------------------------------------------------------
# The plain reference loop (what a typical KD repo does) and this project's loop


def plain_run(s, folder, T):
    """One distillation run of s at temperature T, the common way, on an image folder. Returns img/s of its steps."""
    torch.manual_seed(0)
    classes, size = len(s.train.classes), s.train.images.shape[-1]
    student = models.create_model(s.student, classes)[0].to(s.device)
    tf = v2.Compose([v2.PILToTensor(), v2.Resize(size), v2.CenterCrop(size), v2.RandAugment(2, 9),
                     v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True),
                     v2.Normalize(*models.normalization(student))])  # fmt: skip
    dataset = torchvision.datasets.ImageFolder(folder, transform=tf)
    loader = DataLoader(dataset, batch_size=s.bs, shuffle=True, drop_last=True, num_workers=s.workers)
    mix = v2.RandomChoice([v2.MixUp(alpha=1.0, num_classes=classes), v2.CutMix(alpha=1.0, num_classes=classes)])
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3, weight_decay=0.05)
    s.teacher.eval()
    seen, t0 = 0, time.time()
    for _ in range(s.epochs):
        for x, y in loader:
            x, _ = mix(x, y)
            x = x.to(s.device)
            with torch.no_grad():
                t = s.teacher(x)
            logits = student(x)
            loss = F.kl_div(F.log_softmax(logits / T, 1), F.softmax(t / T, 1), reduction="batchmean") * T * T
            opt.zero_grad()
            loss.backward()
            for p in student.parameters():
                torch.nn.utils.clip_grad_norm_(p, 1.0)
            opt.step()
            seen += len(x)
    if s.device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.time() - t0)


def kd_members(arch, classes, temps, out, seed=0):
    """One engine.Member per temperature: an `arch` student (seeded alike), the KD loss at T, run folder out/T<T>."""
    members = []
    for T in temps:
        torch.manual_seed(seed)
        student = models.create_model(arch, classes)[0]
        run = runs.RunDir(Path(out) / f"T{T}", {"T": T})
        run.start({})
        loss = kd.build_loss("kd", T=T)
        objective = lambda s, b, t, e, i, loss=loss: loss(s, t)  # noqa: E731
        members.append(engine.Member(f"T={T}", run, student, objective, models.normalization(student)))
    return members


def project_run(s, out, temps, seed=0, tape_dir=None, n_test=None, **levers):
    """engine.train of one student per temperature in lockstep, evaluated on the first n_test test images (default a
    batch). levers: engine.Recipe fields (channels_last: the teacher's inputs too). Returns (results, wall s, the
    teacher forward: the tape with tape_dir)."""
    aug = data.aug_config_for("synth-fine", s.train.images.shape[-1])
    augment_on = cli.augment_device("auto", s.device, s.workers)
    stream = data.TrainStream(s.train, aug, batch_size=s.bs, seed=seed, workers=s.workers, device=augment_on)
    channels_last = levers.get("channels_last", False)
    teacher = copy.deepcopy(s.teacher).to(memory_format=torch.channels_last) if channels_last else s.teacher
    forward = distill.teacher_forward(teacher, s.t_norm, channels_last)
    if tape_dir is not None:
        key = {"bench": True, "seed": seed, "bs": s.bs, "steps_per_epoch": stream.steps_per_epoch}
        forward = TeacherTape(tape_dir, forward, {**key, "amp": levers.get("amp", False)}, log=lambda line: None)
    members = kd_members(s.student, len(s.train.classes), temps, out, seed)
    n = n_test or s.bs
    test = (data.eval_images(s.test, aug)[:n], s.test.labels[:n], None)
    recipe = engine.Recipe(s.epochs, "adamw", 1e-3, 0.05, clip=1.0, seed=seed, device=s.device, **levers)
    t0 = time.time()
    results = engine.train(members, stream, test, recipe, teacher=forward, log=lambda line: None)
    return results, time.time() - t0, forward


def data_rate(train, bs, workers, device=None):
    """img/s of one epoch of the deterministic augmentation stream alone: per sample in `workers` processes, or whole
    batches on `device`."""
    aug = data.aug_config_for("synth-fine", train.images.shape[-1])
    stream = data.TrainStream(train, aug, batch_size=bs, seed=0, workers=workers, device=device)
    t0 = time.time()
    seen = sum(len(batch["x"]) for _, batch in stream.epoch(0))
    return seen / (time.time() - t0)


def make_teacher(path, *flags):
    """train_teacher.py with `flags` (quietly) into checkpoint `path`; RuntimeError if it fails. Returns path."""
    with contextlib.redirect_stderr(io.StringIO()):
        code = train_teacher.main([*map(str, flags), "--out", str(path)])
    if code != 0:
        raise RuntimeError(f"train_teacher.py {' '.join(map(str, flags))} exited {code}")
    return path


def checkpoint_setup(path, student, epochs, bs, device, workers=0):
    """The Setup of distilling the teacher checkpoint at `path` on its own data (its synth-* sizes too)."""
    ckpt = models.load_checkpoint(path)
    synth = (ckpt.get("args") or {}).get("synth") or {}
    train, test = (data.load_split(ckpt["dataset"], split, "unused", synth=synth) for split in ("train", "test"))
    teacher = models.model_from_checkpoint(ckpt, path).to(device)
    return Setup(train, test, teacher, models.checkpoint_normalization(ckpt), student, epochs, bs, device, workers)


# ---------------------------------------------------------------------------------------------
# The default sections, on the 32 px built-in data


def bench_default(args, device, tmp):
    """images, step, data, sweep, levers and lab step; prints them, then one JSON line of every figure."""
    # a briefly trained teacher: the benchmark needs realistic logits, not a good model
    synth = [f"target_train_per_class={max(1, args.images // 24)}", "test_per_class=4"]
    flags = ["--dataset", "synth-fine", "--synth", *synth, "--arch", args.teacher, "--epochs", 1, "--device", device]
    teacher = make_teacher(tmp / "teacher.pt", *flags)
    s = checkpoint_setup(teacher, args.student, args.epochs, args.bs, device, args.workers)
    temps = TEMPS[: args.K] if args.K <= 9 else list(range(1, args.K + 1))
    channels_last = engine.channels_last_for(args.channels_last, s.teacher, device)
    figures = {"device": runs.provenance(device)["device"], "host": platform.node(), "torch": torch.__version__,
               "teacher": args.teacher, "student": args.student, "resolution": s.train.images.shape[-1],
               "batch_size": args.bs, "train_images": len(s.train), "epochs": args.epochs, "K": len(temps),
               "workers": args.workers, "channels_last": channels_last}  # fmt: skip
    print(json.dumps(figures), flush=True)
    figures.update(section_images(s.train, args.bs, tmp))
    # the plain loop decodes the PNG folder in the default memory format; this project's loop as its defaults say
    plain = functools.partial(plain_run, s, tmp / "png" / "train")
    run = functools.partial(project_run, s, channels_last=channels_last)
    figures.update(section_step(plain, run, args.repeat, tmp))
    figures.update(section_data(s, figures["step_live_img_s"]))
    t0 = time.time()
    for T in temps:
        plain(T)
    plain_s, lockstep_s = time.time() - t0, run(tmp / "sweep", temps, tape_dir=tmp / "tape")[1]
    show(f"sweep: {len(temps)} plain runs", f"{plain_s:.1f} s")
    show(f"sweep: 1 lockstep run of {len(temps)}, tape", f"{lockstep_s:.1f} s", f"ratio {lockstep_s / plain_s:.2f}")
    figures.update(sweep_plain_s=plain_s, sweep_lockstep_tape_s=lockstep_s)
    lever_temps = [1, 2, 4, 8, 16, 40, 20]  # the lab's lockstep size: 6 temperatures + 1 student
    figures.update(section_levers(s._replace(epochs=2, workers=0), lever_temps, tmp))
    figures.update(section_lab_step(tmp, args.lab_epochs, device))
    print(json.dumps(figures))


def section_images(train, bs, tmp):
    """The real-image path beside synth-*: the same images as PNG files in an image folder tmp/png (as its train and
    test splits), decoded once (then cached as uint8) vs generated; then the training stream of each."""
    for split in ("train", "test"):
        write_png_folder(train, tmp / "png" / split)
    t0 = time.time()
    png = data.load_split("imagefolder", "train", tmp / "png", image_size=train.images.shape[-1])
    out = {"images_png_decode_img_s": len(png) / (time.time() - t0)}
    t0 = time.time()
    data.load_split("synth-fine", "train", "unused", synth={"target_train_per_class": len(train) // 24})
    out["images_synth_generate_img_s"] = len(train) / (time.time() - t0)
    out["images_png_stream_img_s"] = data_rate(png, bs, 0, torch.device("cpu"))
    out["images_synth_stream_img_s"] = data_rate(train, bs, 0, torch.device("cpu"))
    show("images: PNG folder decoded once (then cached)", f"{out['images_png_decode_img_s']:.0f} img/s")
    show("images: synth-* generated", f"{out['images_synth_generate_img_s']:.0f} img/s")
    show("images: stream from the PNG folder's cache", f"{out['images_png_stream_img_s']:.0f} img/s")
    show("images: stream from synth-*", f"{out['images_synth_stream_img_s']:.0f} img/s")
    return out


def section_step(plain, run, repeat, tmp):
    """img/s of the plain loop, and of this loop with the teacher live, recording the tape and replaying it: the
    fastest of `repeat` runs of each (the first runs also warm up the kernels)."""
    out = {"step_plain_img_s": max(plain(4.0) for _ in range(repeat))}
    out["step_live_img_s"] = max(run(tmp / f"live{i}", [4.0])[0][0]["img_per_s"] for i in range(repeat))
    out["step_record_img_s"] = run(tmp / "record", [4.0], tape_dir=tmp / "tape")[0][0]["img_per_s"]
    replays = [run(tmp / f"replay{i}", [4.0], tape_dir=tmp / "tape") for i in range(repeat)]
    assert all(tape.recorded_steps == 0 for _, _, tape in replays), "the tape should have been replayed"
    out["step_replay_img_s"] = max(results[0]["img_per_s"] for results, _, _ in replays)
    show("step: plain KD loop", f"{out['step_plain_img_s']:.0f} img/s")
    for what, key in (("teacher live", "live"), ("recording the tape", "record"), ("teacher tape", "replay")):
        rate = out[f"step_{key}_img_s"]
        show(f"step: this loop, {what}", f"{rate:.0f} img/s", f"{rate / out['step_plain_img_s']:.2f}x plain")
    return out


def section_data(s, step_rate):
    """img/s of the augmentation stream alone, per sample in s.workers processes and in whole batches on the device
    (the same batches), vs the training step rate."""
    out = {"data_workers_img_s": data_rate(s.train, s.bs, s.workers)}
    out["data_device_img_s"] = data_rate(s.train, s.bs, s.workers, s.device)
    for what, key in ((f"per sample ({s.workers} workers)", "workers"), ("whole batches on the device", "device")):
        rate = out[f"data_{key}_img_s"]
        show(f"data: {what}", f"{rate:.0f} img/s", f"{rate / step_rate:.1f}x step rate")
    return out


def section_levers(s, temps, tmp):
    """Student img/s of one lockstep sweep (one student per T, tape replayed; the last epoch counts) per lever."""
    out = {}
    for i, (name, lever) in enumerate(LEVERS.items()):
        results, _, _ = project_run(s, tmp / f"lever{i}", temps, tape_dir=tmp / f"tape-{lever.get('amp')}", **lever)
        out[name] = len(temps) * results[0]["curve"][-1]["img_per_s"]
        ratio = f"{out[name] / out['float32']:.2f}x float32"
        show(f"lever ({len(temps)} students, tape): {name}", f"{out[name]:.0f} img/s", ratio)
    return {"levers_K": len(temps), "levers_student_img_s": out}


LAB_SYNTH = ["src_train_per_class=200", "target_train_per_class=20", "test_per_class=300"]  # grid.LAB's sizes


def section_lab_step(tmp, epochs, device, synth=LAB_SYNTH):
    """Wall seconds of one of the lab's commands (distill.py: 6 temperatures + a labels-only test_resnet student in
    lockstep, the lab's data at 32 px, bf16, replaying the teacher tape) on one thread, alone and two at once (as
    run_all.sh's pool runs them on 2 cores), with the old defaults and with today's."""
    flags = ["--dataset", "synth-fine", "--synth", *synth, "--device", str(device)]
    teacher = make_teacher(tmp / "lab-teacher.pt", *flags, "--arch", "resnet18d", "--epochs", "1")
    tape = tmp / "lab-tape"
    command = [*flags, "--teacher", teacher, "--student", "test_resnet", "--opt", "sgd", "--epochs", epochs, "--amp",
               "--teacher-tape", tape, "--allow-weak-teacher", "--baseline", *grid.eval_last_quarter(epochs),
               "--T", "1", "2", "4", "8", "16", "40"]  # fmt: skip
    command = [str(a) for a in command]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {"lab_step_epochs": epochs}
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            distill.main([*command, "--out", str(tmp / "lab-record")])  # records the tape
        # the old defaults: channels_last on GPUs only, and every command measured the teacher again
        for name, extra in (("old", ["--channels-last", "off"]), ("new", [])):
            for copies, key in ((1, "step"), (2, "pair")):
                folder = tmp / f"lab-{key}-{name}"
                out[f"lab_{key}_{name}_s"] = lab_wall([*command, *extra], tape, folder, copies, name == "old")
    finally:
        torch.set_num_threads(threads)
    for what, key in ((f"one lab command, {epochs} epochs, old defaults", "step"),
                      ("two lab commands at once (the lab's pool), old", "pair")):  # fmt: skip
        old, new = out[f"lab_{key}_old_s"], out[f"lab_{key}_new_s"]
        show(f"lab step: {what} / new", f"{old:.1f} s / {new:.1f} s", f"{old / new:.2f}x")
    return out


def lab_wall(argv, tape, folder, copies, measure_teacher):
    """Wall seconds of `copies` distill.py commands `argv` at once (1: in this process; more: one process and thread
    each), each replaying its own copy of `tape`, without the teacher's logits when measure_teacher."""
    commands = []
    for k in range(copies):
        shutil.copytree(tape, folder / f"tape{k}")
        if measure_teacher:
            (folder / f"tape{k}" / "eval-logits.pt").unlink(missing_ok=True)
        own = [str(folder / f"tape{k}") if a == str(tape) else a for a in argv]
        commands.append([*own, "--out", str(folder / f"runs{k}")])
    t0 = time.time()
    if copies == 1:
        with contextlib.redirect_stderr(io.StringIO()):
            codes = [distill.main(commands[0])]
    else:
        env = dict(os.environ, OMP_NUM_THREADS="1")
        argvs = [[sys.executable, str(ROOT / "distill.py"), *c] for c in commands]
        codes = [p.wait() for p in [subprocess.Popen(a, env=env, stderr=subprocess.DEVNULL) for a in argvs]]
    if any(codes):
        raise RuntimeError(f"bench: a lab command exited {codes}")
    return time.time() - t0


# ---------------------------------------------------------------------------------------------
# --parity: the accuracy of each lever against float32


def bench_parity(args, device, tmp):
    """Final top-1 per lever, T and seed on the teacher checkpoint's own data (the lab's, by default), on the whole
    test split; each lever's mean ± seed std per T, its gap to float32 and verdict, then one JSON line."""
    if not Path(args.parity_teacher).is_file():
        raise SystemExit(f"bench.py: error: --parity-teacher: '{args.parity_teacher}' does not exist; make it with "
                         "`bash run_all.sh lab --stop-after teachers` or pass another checkpoint")  # fmt: skip
    print(f"device: {runs.provenance(device)['device']}  student {args.student}  teacher {args.parity_teacher}  "
          f"{args.parity_epochs} epochs  T {args.parity_T}  seeds {args.seeds}", flush=True)  # fmt: skip
    s = checkpoint_setup(args.parity_teacher, args.student, args.parity_epochs, 64, device)
    chosen = ["float32", *args.parity_levers] if args.parity_levers else list(LEVERS)
    top1 = {}
    for i, (name, lever) in enumerate((n, lv) for n, lv in LEVERS.items() if any(n.startswith(c) for c in chosen)):
        for seed in args.seeds:
            tape = tmp / f"ptape-{seed}-{lever.get('amp')}"
            results, _, _ = project_run(s, tmp / f"parity-{i}-{seed}", args.parity_T, seed, tape, len(s.test), **lever)
            for T, r in zip(args.parity_T, results):
                top1.setdefault(name, {}).setdefault(T, []).append(r["final"]["top1"])
        print(f"parity: {name}: {top1[name]}", flush=True)
    stats = {name: {T: mean_std(v) for T, v in by_T.items()} for name, by_T in top1.items()}
    for name, verdict in parity_verdicts(top1).items():
        cells = [
            f"T={T:g}: {m:.2f} ± {sd:.2f} ({m - stats['float32'][T][0]:+.2f} vs float32)"
            for T, (m, sd) in stats[name].items()
        ]
        print(f"  {name:<38} {verdict:<14} " + "; ".join(cells))
    print(json.dumps({"device": runs.provenance(device)["device"], "parity_top1": top1}))


def mean_std(values):
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def parity_verdicts(top1):
    """{lever: "reference" (float32), "parity: kept" or "NO parity"}: kept when at every T its mean final top-1 is
    within float32's seed std of float32's mean."""
    ref = {T: mean_std(v) for T, v in top1["float32"].items()}
    kept = {
        name: all(abs(mean_std(v)[0] - ref[T][0]) <= ref[T][1] for T, v in by_T.items()) for name, by_T in top1.items()
    }
    return {name: "reference" if name == "float32" else "parity: kept" if kept[name] else "NO parity" for name in top1}


# ---------------------------------------------------------------------------------------------
# --gpu: every lever and method one step, the host syncs of a step, throughput, augmentation parity


def bench_gpu(device, tiny, tmp):
    """Every part of the GPU check, whatever the others did, printing as it goes. Returns the exit code: 1 on a
    failure."""
    print(f"GPU check on {runs.provenance(device)['device']}{' (tiny sizes)' if tiny else ''}", flush=True)
    failures = []
    for name, part in (
        ("levers and methods", lambda: check_levers(device, tiny, tmp)),
        ("host syncs of one step", lambda: print_syncs(device, tiny, tmp)),
        ("throughput", lambda: check_throughput(device, tiny, tmp)),
        ("augmentation parity", lambda: check_aug_parity(device, tiny)),
    ):
        print(f"== {name}", flush=True)
        try:
            part()
        except Exception as e:  # every part runs; the exit code says whether one failed
            failures.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            print(f"FAILED {failures[-1]}", flush=True)
    print("\n".join(["FAILURES:", *failures]) if failures else "GPU check: all parts passed")
    return 1 if failures else 0


def check_levers(device, tiny, tmp):
    """distill.py, one epoch of a few steps, with each lever and method; RuntimeError naming the first that fails."""
    sizes = ["groups=2", "classes_per_group=3", "fine_groups=1", "novel_groups=1", "novel_classes_per_group=3"]
    common = ["--synth", *sizes, "src_train_per_class=8", "target_train_per_class=8", "test_per_class=4"]
    common += ["--device", str(device), "--bs", "8", "--epochs", "1"]
    teacher = make_teacher(tmp / "teacher.pt", "--dataset", "synth-fine", "--arch", "test_resnet", *common)
    variants = {
        "serial": [],
        "--batched": ["--batched"],
        "--compile": ["--compile"],
        "device augmentation": ["--augment-on", "device"],
        "worker augmentation": ["--augment-on", "workers", "--workers", "2"],
        "tape record": ["--teacher-tape", str(tmp / "tape")],
        "tape replay": ["--teacher-tape", str(tmp / "tape")],
        "mlkd (two views)": ["--method", "mlkd", "--T", "4"],
        **{f"signal {s}": ["--signal", s, "--k", "1"][: 4 if s == "bottomk" else 2] for s in kd.SIGNALS[1:]},
    }
    for name, flags in variants.items():
        if tiny and "--compile" in flags:  # minutes of C++ compilation on a CPU; tests/test_engine.py compiles
            print(f"  {name:<24} skipped at tiny sizes")
            continue
        t0 = time.time()
        argv = ["--teacher", str(teacher), "--student", "test_resnet", "--allow-weak-teacher", *common]
        code = distill.main([*argv, "--T", "1", "4", "--out", str(tmp / name.replace(" ", "-")), *flags])
        print(f"  {name:<24} exit {code}  {time.time() - t0:.1f} s", flush=True)
        if code != 0:
            raise RuntimeError(f"distill.py {' '.join(flags)} exited {code}")


def lockstep(device, tiny, bs, k, out):
    """(teacher forward, k KD members, stream of fabricated images with the Pets augmentation): ResNet50 -> ResNet18
    at 224 px (tiny: test_resnet at 32 px), the teacher in channels_last."""
    t_arch, s_arch, size = ("test_resnet", "test_resnet", 32) if tiny else ("resnet50", "resnet18", 224)
    torch.manual_seed(0)
    teacher = models.create_model(t_arch, 100)[0].to(device).to(memory_format=torch.channels_last)
    forward = distill.teacher_forward(teacher, models.normalization(teacher), True)
    members = kd_members(s_arch, 100, [1.0 + i for i in range(k)], out)
    aug, split = data.aug_config_for("pets", size), fabricated(4 * bs, size + size // 7)
    return forward, members, data.TrainStream(split, aug, batch_size=bs, seed=0, device=device)


class CachedStream:
    """A stream that replays a few pre-augmented batches: the training step without the data pipeline."""

    def __init__(self, stream, steps):
        steps = min(steps, stream.steps_per_epoch)
        self.batches = [b for _, b in zip(range(steps), (b for _, b in stream.epoch(0)))]
        self.steps_per_epoch, self.views, self.split = steps, 1, stream.split

    def epoch(self, epoch, start_step=0):
        yield from ((i, self.batches[i]) for i in range(start_step, self.steps_per_epoch))


def check_throughput(device, tiny, tmp):
    """Student img/s (the last of two epochs on a few pre-augmented batches) and peak device memory of 9 lockstep
    students in channels_last and bf16: serial vs --batched vs --compile, at batch 64 and 256 (tiny: 2 students,
    batch 8, no --compile)."""
    variants = (("serial", {}), ("--batched", {"batched": True}), ("--compile", {"compile": True}))
    for bs in (8,) if tiny else (64, 256):
        for name, levers in variants[: 2 if tiny else 3]:
            forward, members, stream = lockstep(device, tiny, bs, 2 if tiny else 9, tmp / f"rate-{bs}-{name}")
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            recipe = engine.Recipe(2, "adamw", 1e-3, 0.05, device=device, amp=True, channels_last=True, **levers)
            test = (data.eval_images(stream.split, stream.aug)[:bs], stream.split.labels[:bs], None)
            cached = CachedStream(stream, 2 if tiny else 6)
            results = engine.train(members, cached, test, recipe, teacher=forward, log=lambda line: None)
            rate = sum(r["curve"][-1]["img_per_s"] for r in results)
            peak = f"{torch.cuda.max_memory_allocated(device) / 1e9:.1f} GB peak" if device.type == "cuda" else None
            print(f"  batch {bs:<4} {name:<10} {rate:8.0f} student img/s  {peak or 'peak memory n/a on the CPU'}")


def print_syncs(device, tiny, tmp):
    """The host syncs (torch.cuda.set_sync_debug_mode) of one lockstep step: augmentation, teacher, 9 students."""
    if device.type != "cuda":
        print("  n/a on the CPU (no device to sync with)")
        return
    forward, members, stream = lockstep(device, tiny, 64, 9, tmp / "syncs")
    recipe = engine.Recipe(1, "adamw", 1e-3, 0.05, device=device, amp=True, channels_last=True)
    for m in members:
        engine.prepare(m, recipe, stream.steps_per_epoch, log=lambda line: None)
    for record in (False, True):  # the first step warms up (allocator, cudnn); the second is listed
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn" if record else 0)
            xs, batch = engine.to_device(stream.batch(0, int(record)), device)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                t_logits = forward(batch, xs, 0, 0)
            for m in members:
                engine.train_step(m, xs, batch, t_logits, 0, 0, 1e-3, recipe)
            torch.cuda.set_sync_debug_mode(0)
    syncs = sorted({str(w.message).splitlines()[0] for w in caught})
    print(f"  {len(caught)} syncs in one step ({len(syncs)} kinds)" + "".join(f"\n    {s}" for s in syncs))


def check_aug_parity(device, tiny):
    """augment_batch on the device vs augment_samples on the CPU (the Pets recipe); AssertionError past 1/255 mean."""
    aug = data.aug_config_for("pets", 32 if tiny else 224)
    split = fabricated(64, 36 if tiny else 256)
    index = torch.arange(64)
    cpu = data.augment_samples(split, aug, index, seed=0, epoch=0)
    draws = data.draw_samples(split, aug, index, seed=0, epoch=0)
    diff = (data.augment_batch(split.images.to(device), aug, index, draws).cpu().int() - cpu.int()).abs()
    print(
        f"  {device.type} vs cpu: {100 * (diff > 0).float().mean():.3f}% of pixels differ, mean |diff| "
        f"{diff.float().mean():.4f}, max {diff.max()}"
    )
    assert diff.float().mean() <= 1.0, "device augmentation drifts from the CPU's (mean |diff| > 1)"


# ---------------------------------------------------------------------------------------------
# --host: peak host memory and checkpoint bytes, the code before issue 26 vs this code

# A script run under this probe reports its peak RSS and the bytes it wrote (write() calls) when it exits, and trains
# at most STEPS steps per epoch (0: all; then no epoch completes and a stub result stands for the unevaluated run):
# enough for the peaks, which come from loading the data and measuring the teacher.
PROBE = """
import atexit, resource, runpy, sys
STEPS = int(sys.argv[1])
def report():
    io = dict(line.split(': ') for line in open('/proc/self/io').read().splitlines())
    print(f"PROBE {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} {io['wchar']}", file=sys.stderr)
atexit.register(report)
sys.path.insert(0, '.')
import data, engine
epoch = data.TrainStream.epoch
if STEPS:
    data.TrainStream.epoch = lambda self, e, start=0: (b for _, b in zip(range(STEPS), epoch(self, e, start)))
    engine.finish = lambda m, *a, **k: {'run_id': m.run.path.name, 'final': {'top1': 0.0}, 'best': {'top1': 0.0}}
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def probe(code, script, *args, steps=0):
    """(peak RSS in GB, bytes written) of `script` of the code in folder `code` run with `args` (PROBE)."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    cmd = [sys.executable, "-c", PROBE, str(steps), script, *map(str, args)]
    r = subprocess.run(cmd, cwd=code, env=env, capture_output=True, text=True)
    line = next((x for x in r.stderr.splitlines() if x.startswith("PROBE ")), None)
    if r.returncode != 0 or line is None:
        raise RuntimeError(f"{script} {' '.join(map(str, args))} exited {r.returncode}: {r.stderr.strip()[-800:]}")
    kb, written = map(int, line.split()[1:])
    return kb / 1e6, written


def bench_host(args, device, tmp):
    """Peak RSS of train_teacher.py and of distill.py (9 T, ResNet18 students, batch 32, 2 steps) at 224 px on a
    CIFAR-100-sized folder of random 32 px PNGs, and the bytes distill.py writes per epoch (9 ResNet18 students, a
    1.2 GB checkpoint set, 3 epochs of a small synth set): with the code at --before (its peaks at --before-images: it
    may not fit at --host-images) and with this code. One JSON line of each, then of both."""
    old = tmp / f"code-{args.before}"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    cpu, teacher_arch = ["--device", "cpu", "--bs", "32"], ["--arch", "test_resnet", "--epochs", "1"]
    students = ["--student", "resnet18", "--T", *map(str, TEMPS), "--allow-weak-teacher"]
    out = {"host": platform.node(), "cpu": runs.provenance(torch.device("cpu"))["device"]}
    for name, code, n in (("before", old, args.before_images), ("after", ROOT, args.host_images)):
        folder, o = tmp / f"folder-{n}", tmp / name
        o.mkdir()
        if not folder.is_dir():
            write_png_folder(fabricated(n, 32), folder / "train")
            write_png_folder(fabricated(n // 5, 32), folder / "test")
        big = [*cpu, "--dataset", "imagefolder", "--data-root", folder, "--image-size", "224"]
        # train_teacher.py writes the teacher whose statistics distill.py then measures
        teacher_gb, _ = probe(code, "train_teacher.py", *big, *teacher_arch, "--out", o / "teacher.pt", steps=2)
        distill_gb, _ = probe(
            code, "distill.py", *big, *students, "--teacher", o / "teacher.pt", "--out", o / "r", steps=2
        )
        small = [*cpu, "--synth", "target_train_per_class=8", "test_per_class=2"]
        probe(code, "train_teacher.py", *small, *teacher_arch, "--out", o / "small-teacher.pt")
        _, written = probe(code, "distill.py", *small, *students, "--epochs", "3", "--teacher", o / "small-teacher.pt",
                           "--out", o / "bytes")  # fmt: skip
        out[name] = {"train_images": n, "train_teacher_peak_gb": teacher_gb, "distill_9T_peak_gb": distill_gb,
                     "ckpt_bytes_per_epoch": written / 3}  # fmt: skip
        print(f"  {name} ({args.before if code is old else 'this code'}): {json.dumps(out[name])}", flush=True)
    print(json.dumps(out))


# ---------------------------------------------------------------------------------------------
# --bf16: the KD-gradient error of bf16 logits


def bf16_kd_error(temps=(1, 4, 40), gaps=(1.0, 0.1, 0.01), seed=0):
    """{(gap, T): (relative error of the KD gradient with bf16 logits, with a float32 head on bf16 features)} vs
    float32 logits: a head of 512 ReLU features to 100 classes (logits up to about 10), the student's features off
    the teacher's by `gap` (late training: small)."""
    g = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(512, 100)
    with torch.no_grad():
        head.weight.mul_(6)
    teacher = torch.randn(256, 512, generator=g).relu()

    @torch.no_grad()
    def logits(x, precision):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision != "fp32"):
            return (models.Float32Linear.forward(head, x.bfloat16()) if precision == "fp32-head" else head(x)).float()

    def kd_grad(s, t, T):
        s = s.clone().requires_grad_()
        loss = F.kl_div((s / T).log_softmax(1), (t / T).log_softmax(1), log_target=True, reduction="batchmean")
        (loss * T * T).backward()
        return s.grad

    out = {}
    for gap in gaps:
        student = teacher + gap * torch.randn(teacher.shape, generator=g) / 6
        for T in temps:
            ref = kd_grad(logits(student, "fp32"), logits(teacher, "fp32"), T)
            errs = [kd_grad(logits(student, p), logits(teacher, p), T) for p in ("bf16", "fp32-head")]
            out[(gap, T)] = tuple(((e - ref).norm() / ref.norm()).item() for e in errs)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--teacher", default="resnet18d", help="teacher architecture of the 32 px sections")
    p.add_argument("--student", default="test_resnet", help="student architecture of the 32 px sections (the lab's)")
    p.add_argument("--K", type=int, default=9, help="temperatures in the sweep")
    p.add_argument("--bs", type=int, default=64, help="batch size")
    p.add_argument("--images", type=int, default=640, help="training images of the 32 px data (per epoch)")
    p.add_argument("--epochs", type=int, default=1, help="epochs per run in the sweep and step sections")
    p.add_argument("--workers", type=int, default=0, help="data loader workers (both loops)")
    p.add_argument("--repeat", type=int, default=2, help="step section: runs of each loop; the fastest counts")
    p.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto", help="this loop's (distill.py's)")
    p.add_argument("--lab-epochs", type=int, default=16, help="lab step: the epochs of the lab command timed")
    p.add_argument("--gpu", action="store_true", help="only the GPU check: every lever one step, syncs, img/s, parity")
    p.add_argument("--tiny", action="store_true", help="--gpu at toy sizes (automatic without CUDA)")
    p.add_argument("--host", action="store_true", help="only peak RSS and checkpoint bytes/epoch, before and after")
    p.add_argument("--host-images", type=int, default=50000, help="--host: train images of the fabricated folder")
    p.add_argument("--before-images", type=int, default=5000, help="--host: the same for the old code (memory)")
    p.add_argument("--before", default="565127d", help="--host: git revision of the old code (before issue 26)")
    p.add_argument("--bf16", action="store_true", help="only the KD-gradient error of bf16 vs float32 logits")
    p.add_argument("--parity", action="store_true", help="only the accuracy of every lever vs float32 (minutes)")
    p.add_argument("--parity-teacher", default="results/lab/teachers/synth-fine-ft4.pt", help="--parity: checkpoint")
    p.add_argument("--parity-epochs", type=int, default=48, help="--parity: distillation epochs")
    p.add_argument("--parity-T", type=float, nargs="+", default=[1.0, 8.0], help="--parity: temperatures")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="--parity: seeds")
    p.add_argument("--parity-levers", nargs="+", help="--parity: only levers whose names start so (and float32)")
    args = p.parse_args(argv)
    device = cli.resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        if args.gpu:
            sys.exit(bench_gpu(device, args.tiny or device.type != "cuda", Path(tmp)))
        elif args.bf16:
            for (gap, T), (bf16, head) in bf16_kd_error().items():
                print(f"  gap {gap:<5} T {T:<3} KD-gradient error: bf16 logits {bf16:.4f}, float32 head {head:.4f}")
        else:
            (bench_host if args.host else bench_parity if args.parity else bench_default)(args, device, Path(tmp))


if __name__ == "__main__":
    main()
