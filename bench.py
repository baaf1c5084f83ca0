"""Benchmarks: this project's performance claims, measured side by side in one run on one machine.

    python bench.py --quick          # 2 CPU cores: built-in 32 px data, small timm models (about a minute)
    python bench.py                  # on a GPU: adds ResNet50->ResNet18 and ViT-S->MNv4 at 224 px
    python bench.py --parity         # accuracy of every speed lever vs float32 (3 seeds, the lab's teacher)

sweep  K temperatures as K separate runs of a plain single-run loop vs one lockstep run of this
       project replaying a teacher-logit tape (same data, same epochs) -> wall-time ratio
step   distillation img/s of this project's loop (teacher live, and teacher replayed from the tape)
       vs a plain loop written here in the style of common KD repos: fp32, images decoded from
       files with PIL and transformed per sample in a DataLoader, teacher under no_grad,
       per-parameter clipping in a Python loop -> ratio
data   img/s of the augmentation pipeline alone vs the training step rate -> ratio; and the same
       images as PNG files in an image folder (written here): decoding them once vs generating synth-*
levers student img/s of a lockstep sweep of the lab's student (tape replayed) with each speed lever
       (bf16 autocast, channels_last, torch.compile, --batched) vs float32 -> ratio
parity final top-1 with each lever vs float32 (mean and seed std over 3 seeds): a lever is kept only
       when its mean is within the seed std of float32's
lab    one command of the lab (bash run_all.sh lab) with the old defaults and with today's -> ratio
gpu    --gpu: one step of every lever and method, the host syncs of a step, img/s and peak memory of ResNet50 ->
       9 ResNet18 at 224 px (serial, --batched, --compile; batch 64 and 256), GPU vs CPU augmentation; exit 1 on a
       failure (--tiny, or without CUDA: toy sizes on the CPU)
host   --host: peak RSS of train_teacher.py and of distill.py (9 T) on a CIFAR-100-sized image folder at 224 px, and
       checkpoint bytes per epoch, with the code before issue 26 and with this code
bf16   --bf16: the KD-gradient error of bf16 vs float32 logits at T = 1, 4, 40

Prints a table and one JSON line with every figure, the device, models, resolution and batch size.
"""

import argparse
import contextlib
import copy
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import v2

import cli
import data
import engine
import grid
import kd
import models
import runs
from distill import teacher_forward
from tape import TeacherTape

ROOT = Path(__file__).resolve().parent

# ---------------------------------------------------------------------------------------------
# The plain reference loop (what a typical KD repo does)


def write_image_folder(split, folder):
    """Save a Split as PNG files in an ImageFolder layout (what the plain loop decodes)."""
    for i, (img, label) in enumerate(zip(split.images, split.labels.tolist())):
        d = Path(folder) / f"{label:03d}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(d / f"{i:05d}.png")


def plain_run(folder, teacher, student_arch, num_classes, T, epochs, bs, size, device, workers):
    """One distillation run, the common way. Returns images/s of its training steps."""
    torch.manual_seed(0)
    student = models.create_model(student_arch, num_classes)[0].to(device)
    mean, std = models.normalization(student)
    tf = v2.Compose(
        [
            v2.PILToTensor(),
            v2.Resize(size),
            v2.CenterCrop(size),
            v2.RandAugment(2, 9),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )
    loader = DataLoader(
        torchvision.datasets.ImageFolder(folder, transform=tf),
        batch_size=bs,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
    )
    mix = v2.RandomChoice([v2.MixUp(alpha=1.0, num_classes=num_classes), v2.CutMix(alpha=1.0, num_classes=num_classes)])
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3, weight_decay=0.05)
    teacher.eval()
    seen, t0 = 0, time.time()
    for _ in range(epochs):
        for x, y in loader:
            x, _ = mix(x, y)
            x = x.to(device)
            with torch.no_grad():
                t = teacher(x)
            s = student(x)
            loss = F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction="batchmean") * T * T
            opt.zero_grad()
            loss.backward()
            for p in student.parameters():
                torch.nn.utils.clip_grad_norm_(p, 1.0)
            opt.step()
            seen += len(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.time() - t0)


# ---------------------------------------------------------------------------------------------
# This project's loop


def project_run(
    out,
    train,
    test,
    teacher,
    t_norm,
    student_arch,
    temps,
    epochs,
    bs,
    seed,
    device,
    workers,
    tape_dir=None,
    amp=False,
    channels_last=False,
    evaluate=None,
    **recipe,
):
    """engine.train with one student per temperature in lockstep. Returns (wall s, mean epoch img/s, tape),
    or with evaluate=N the results (final top-1 on the first N test images). channels_last: the students'
    and the teacher's inputs (pass a teacher already in that format); recipe: more engine.Recipe fields."""
    aug = data.aug_config_for("synth-fine", train.images.shape[-1])
    stream = data.TrainStream(
        train, aug, batch_size=bs, seed=seed, workers=workers, device=cli.augment_device("auto", device, workers)
    )
    forward = teacher_forward(teacher, t_norm, channels_last)
    if tape_dir is not None:
        key = {"bench": True, "seed": seed, "bs": bs, "steps_per_epoch": stream.steps_per_epoch, "amp": amp}
        forward = TeacherTape(tape_dir, forward, key, log=lambda s: None)
    members = []
    for T in temps:
        torch.manual_seed(seed)
        student = models.create_model(student_arch, len(train.classes))[0]
        loss = kd.build_loss("kd", T=T)
        run = runs.RunDir(Path(out) / f"T{T}", {"T": T})
        run.start({})
        members.append(
            engine.Member(
                name=f"T={T}",
                run=run,
                model=student,
                norm=models.normalization(student),
                objective=lambda s, b, t, e, i, loss=loss: loss(s, t),
            )
        )
    n_test = evaluate or bs
    test_images = data.eval_images(test, aug)[:n_test]
    t0 = time.time()
    recipe = engine.Recipe(
        epochs=epochs,
        opt="adamw",
        lr=1e-3,
        wd=0.05,
        clip=1.0,
        seed=seed,
        device=device,
        amp=amp,
        channels_last=channels_last,
        **recipe,
    )
    results = engine.train(
        members, stream, (test_images, test.labels[:n_test], None), recipe, teacher=forward, log=lambda s: None
    )
    wall = time.time() - t0
    if evaluate:
        return results
    return wall, sum(r["img_per_s"] for r in results) / len(results), forward


def data_rate(train, bs, seed, workers, steps, device=None):
    """img/s of the deterministic augmentation stream alone: per sample in `workers` processes, or
    whole batches on `device`."""
    stream = data.TrainStream(
        train,
        data.aug_config_for("synth-fine", train.images.shape[-1]),
        batch_size=bs,
        seed=seed,
        workers=workers,
        device=device,
    )
    t0, seen = time.time(), 0
    for step, batch in stream.epoch(0):
        seen += len(batch["x"])
        if step + 1 >= steps:
            break
    return seen / (time.time() - t0)


def train_teacher_quickly(arch, train, test, epochs, device):
    """A briefly trained teacher (the benchmark needs realistic logits, not a good model)."""
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        model = models.create_model(arch, len(train.classes))[0]
        aug = data.aug_config_for("synth-fine", train.images.shape[-1])
        run = runs.RunDir(Path(tmp) / "t", {})
        run.start({})
        m = engine.Member(
            name="teacher",
            run=run,
            model=model,
            norm=models.normalization(model),
            objective=lambda s, b, t, e, i: engine.label_smoothed_cross_entropy(s, b["y_soft"], 0.1),
        )
        recipe = engine.Recipe(epochs=epochs, opt="adamw", lr=5e-4, wd=0.05, clip=0, device=device)
        engine.train(
            [m],
            data.TrainStream(train, aug, batch_size=64, seed=0),
            (data.eval_images(test, aug)[:64], test.labels[:64], None),
            recipe,
            log=lambda s: None,
        )
    return model.to(device).eval()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick", action="store_true", help="CPU-sized: 32 px built-in data, small models, < 2 minutes on 2 cores"
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--teacher", default="resnet18d", help="teacher architecture for the 32 px sections")
    p.add_argument("--student", default="test_resnet", help="student architecture for the 32 px sections (the lab's)")
    p.add_argument("--K", type=int, default=9, help="temperatures in the sweep")
    p.add_argument("--bs", type=int, default=64, help="batch size")
    p.add_argument("--images", type=int, default=640, help="training images of the 32 px data (per epoch)")
    p.add_argument("--epochs", type=int, default=1, help="epochs per run in the sweep and step sections")
    p.add_argument("--workers", type=int, default=0, help="data loader workers (both loops)")
    p.add_argument("--repeat", type=int, default=2, help="step section: runs of each loop; the fastest counts")
    p.add_argument(
        "--channels-last",
        choices=["auto", "on", "off"],
        default="auto",
        help="this project's loop, 32 px sections: as distill.py --channels-last (auto: on a GPU, for convnets)",
    )
    p.add_argument("--lab-epochs", type=int, default=16, help="lab step: the epochs of the lab command timed")
    p.add_argument("--gpu", action="store_true", help="only the GPU check: every lever one step, syncs, img/s, parity")
    p.add_argument("--tiny", action="store_true", help="--gpu at toy sizes (automatic without CUDA)")
    p.add_argument("--host", action="store_true", help="only peak RSS and checkpoint bytes/epoch, before and after")
    p.add_argument("--host-images", type=int, default=50000, help="--host: train images of the fabricated folder")
    p.add_argument("--before-images", type=int, default=5000, help="--host: the same for the old code (memory)")
    p.add_argument("--before", default="565127d", help="--host: git revision of the old code (before issue 26)")
    p.add_argument("--bf16", action="store_true", help="only the KD-gradient error of bf16 vs float32 logits")
    p.add_argument("--parity", action="store_true", help="only the accuracy of every lever vs float32 (minutes)")
    p.add_argument(
        "--parity-teacher",
        default="results/lab/teachers/synth-fine-ft4.pt",
        help="--parity: teacher checkpoint; its own data (default: the lab's briefly fine-tuned teacher)",
    )
    p.add_argument("--parity-epochs", type=int, default=48, help="--parity: distillation epochs")
    p.add_argument("--parity-T", type=float, nargs="+", default=[1.0, 8.0], help="--parity: temperatures")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="--parity: seeds")
    p.add_argument(
        "--parity-levers",
        nargs="+",
        default=None,
        help="--parity: only the levers whose names start so (float32 always)",
    )
    args = p.parse_args(argv)
    device = cli.resolve_device(args.device)
    if args.gpu:
        tiny = args.tiny or device.type != "cuda"
        print(f"GPU check on {runs.provenance(device)['device']}{' (tiny sizes)' if tiny else ''}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            failures = gpu_check(device, tiny, tmp)
        print("\n".join(["FAILURES:", *failures]) if failures else "GPU check: all parts passed")
        sys.exit(1 if failures else 0)
    if args.host:
        with tempfile.TemporaryDirectory() as tmp:
            out = section_host(args.host_images, args.before, args.before_images, tmp)
        print(json.dumps({"host": platform.node(), "cpu": runs.provenance(torch.device("cpu"))["device"], **out}))
        return
    if args.bf16:
        for (gap, T), (bf16, head) in bf16_kd_error().items():
            print(f"  gap {gap:<5} T {T:<3} KD-gradient error: bf16 logits {bf16:.4f}, float32 head {head:.4f}")
        return
    if args.parity:
        if not Path(args.parity_teacher).is_file():
            raise SystemExit(
                f"bench.py: error: --parity-teacher: '{args.parity_teacher}' does not exist; make it with "
                "`bash run_all.sh lab --stop-after teachers` or pass another checkpoint"
            )
        print(
            f"device: {runs.provenance(device)['device']}  student {args.student}  teacher {args.parity_teacher}  "
            f"{args.parity_epochs} epochs  T {args.parity_T}  seeds {args.seeds}",
            flush=True,
        )
        with tempfile.TemporaryDirectory() as tmp:
            levers = ["float32", *args.parity_levers] if args.parity_levers else None
            out = section_parity(
                args.parity_teacher, args.student, args.parity_T, args.parity_epochs, args.seeds, device, tmp, levers
            )
        print_parity(out)
        print(json.dumps({"device": runs.provenance(device)["device"], "parity_top1": out}))
        return
    torch.manual_seed(0)
    per_class = max(1, args.images // 24)
    synth = dict(target_train_per_class=per_class, test_per_class=4)
    train = data.load_split("synth-fine", "train", "unused", synth=synth)
    test = data.load_split("synth-fine", "test", "unused", synth=synth)
    K, size = len(train.classes), train.images.shape[-1]
    teacher = train_teacher_quickly(args.teacher, train, test, 1, device)
    t_norm = models.normalization(teacher)
    temps = [1, 2, 3, 4, 5, 10, 20, 30, 40][: args.K] if args.K <= 9 else list(range(1, args.K + 1))
    row = {
        "device": runs.provenance(device)["device"],
        "host": platform.node(),
        "torch": torch.__version__,
        "teacher": args.teacher,
        "student": args.student,
        "resolution": size,
        "batch_size": args.bs,
        "train_images": len(train),
        "epochs": args.epochs,
        "K": len(temps),
        "workers": args.workers,
        "channels_last": engine.channels_last_for(args.channels_last, teacher, device),
    }
    # in channels_last, this project's loop gets its own teacher copy: the plain loop keeps the default format
    fast_teacher = copy.deepcopy(teacher).to(memory_format=torch.channels_last) if row["channels_last"] else teacher
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "png"
        write_image_folder(train, folder)

        # step: the fastest of --repeat runs of each loop (the first runs also warm up the kernels)
        def project(name, tape_dir=None):
            return project_run(
                Path(tmp) / name,
                train,
                test,
                fast_teacher,
                t_norm,
                args.student,
                [4.0],
                args.epochs,
                args.bs,
                0,
                device,
                args.workers,
                tape_dir=tape_dir,
                channels_last=row["channels_last"],
            )

        plain = max(
            plain_run(folder, teacher, args.student, K, 4.0, args.epochs, args.bs, size, device, args.workers)
            for _ in range(args.repeat)
        )
        live = max(project(f"live{i}")[1] for i in range(args.repeat))
        _, record, _ = project("record", tape_dir=Path(tmp) / "tape")
        replays = [project(f"replay{i}", tape_dir=Path(tmp) / "tape") for i in range(args.repeat)]
        assert all(tape.recorded_steps == 0 for _, _, tape in replays), "the tape should have been replayed"
        replay = max(r for _, r, _ in replays)
        row.update(
            step_plain_img_s=plain,
            step_live_img_s=live,
            step_record_img_s=record,
            step_replay_img_s=replay,
            step_ratio_live=live / plain,
            step_ratio_replay=replay / plain,
        )
        # data: the augmentation stream alone vs the step rate, both ways of augmenting (same batches)
        steps = len(train) // args.bs
        row["data_workers_img_s"] = data_rate(train, args.bs, 0, args.workers, steps)
        row["data_device_img_s"] = data_rate(train, args.bs, 0, args.workers, steps, device=device)
        row["data_img_s"] = (
            row["data_device_img_s"] if cli.augment_device("auto", device, args.workers) else row["data_workers_img_s"]
        )
        row["data_ratio"] = row["data_img_s"] / live
        # sweep: K plain runs vs one lockstep run replaying the tape
        t0 = time.time()
        for T in temps:
            plain_run(folder, teacher, args.student, K, T, args.epochs, args.bs, size, device, args.workers)
        plain_wall = time.time() - t0
        lock_wall, _, tape = project_run(
            Path(tmp) / "sweep",
            train,
            test,
            fast_teacher,
            t_norm,
            args.student,
            temps,
            args.epochs,
            args.bs,
            0,
            device,
            args.workers,
            tape_dir=Path(tmp) / "tape",
            channels_last=row["channels_last"],
        )
        row.update(sweep_plain_s=plain_wall, sweep_lockstep_tape_s=lock_wall, sweep_ratio=lock_wall / plain_wall)
        row.update(section_images(train, args.bs, tmp))
        lever_temps = [1, 2, 4, 8, 16, 40, 20]  # the lab's lockstep size: 6 temperatures + 1 student
        row["levers_K"] = len(lever_temps)
        row["levers_student_img_s"] = section_levers(
            train, test, teacher, args.student, lever_temps, 2, args.bs, device, tmp
        )
        row.update(section_lab_step(tmp, args.lab_epochs, device))
    print_table(row)
    print(json.dumps(row))


# ---------------------------------------------------------------------------------------------
# Speed levers: each measured on the same sweep, and its accuracy against float32

LEVERS = {  # name: engine.Recipe fields (and distill.py flags) that the lever changes
    "float32": {},
    "bf16 autocast (--amp)": {"amp": True},
    "channels_last (--channels-last on)": {"channels_last": True},
    "bf16 + channels_last": {"amp": True, "channels_last": True},
    "torch.compile (--compile)": {"compile": True},
    "one vmapped computation (--batched)": {"batched": True},
}


def section_levers(train, test, teacher, student, temps, epochs, bs, device, tmp):
    """Student img/s of one lockstep sweep (K students, tape replayed) per lever; the last epoch counts."""
    out = {}
    for name, lever in LEVERS.items():
        model = copy.deepcopy(teacher).to(memory_format=torch.channels_last) if lever.get("channels_last") else teacher
        results = project_run(
            Path(tmp) / f"lever{len(out)}",
            train,
            test,
            model,
            models.normalization(teacher),
            student,
            temps,
            epochs,
            bs,
            0,
            device,
            0,
            tape_dir=Path(tmp) / f"tape-{lever.get('amp')}",
            evaluate=bs,
            **lever,
        )
        out[name] = len(temps) * results[0]["curve"][-1]["img_per_s"]
    return out


LAB_SYNTH = ["src_train_per_class=200", "target_train_per_class=20", "test_per_class=300"]  # grid.LAB's sizes
OLD_DEFAULTS = ["--channels-last", "off"]  # before: channels_last on GPUs only, the teacher measured by every command


def section_lab_step(tmp, epochs, device, synth=LAB_SYNTH, pair=True):
    """One of the lab's commands (distill.py: 6 temperatures + a labels-only test_resnet student in lockstep, the
    lab's data at 32 px, bf16, replaying the teacher tape), on one thread as run_all.sh gives each command on
    2 cores, with the old defaults and with today's: alone, and (pair) two at once as the lab's pool runs them.
    Returns wall seconds of each (setup, training, evaluation) and the ratios."""
    import distill
    import train_teacher

    data_flags = ["--dataset", "synth-fine", "--synth", *synth, "--device", str(device)]
    teacher = Path(tmp) / "lab-teacher.pt"
    argv = [*data_flags, "--arch", "resnet18d", "--epochs", "1", "--out", str(teacher)]
    with contextlib.redirect_stderr(io.StringIO()):
        train_teacher.main(argv)
    tape = Path(tmp) / "lab-tape"
    command = [*data_flags, "--teacher", str(teacher), "--student", "test_resnet", "--opt", "sgd", "--epochs",
               str(epochs), "--amp", "--teacher-tape", str(tape), "--allow-weak-teacher", "--baseline",
               *grid.eval_last_quarter(epochs), "--T", "1", "2", "4", "8", "16", "40"]  # fmt: skip
    command = [str(a) for a in command]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    wall = {}
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            distill.main([*command, "--out", str(Path(tmp) / "lab-record")])  # records the tape
        for name, extra in (("old", OLD_DEFAULTS), ("new", [])):
            if name == "old":
                (tape / "eval-logits.pt").unlink(missing_ok=True)  # the old code measured the teacher every time
            t0 = time.time()
            with contextlib.redirect_stderr(io.StringIO()):
                distill.main([*command, *extra, "--out", str(Path(tmp) / f"lab-{name}")])
            wall[name] = time.time() - t0
        if pair:  # two commands at once, each on its own copy of the tape, as the lab's pool of 2 runs them
            for name, extra in (("old", OLD_DEFAULTS), ("new", [])):
                wall[f"pair_{name}"] = two_at_once(command, extra, tape, Path(tmp) / f"lab-pair-{name}", name == "old")
    finally:
        torch.set_num_threads(threads)
    out = {
        "lab_step_epochs": epochs,
        "lab_step_old_s": wall["old"],
        "lab_step_new_s": wall["new"],
        "lab_step_ratio": wall["old"] / wall["new"],
    }
    if pair:
        out.update(lab_pair_old_s=wall["pair_old"], lab_pair_new_s=wall["pair_new"])
        out["lab_pair_ratio"] = wall["pair_old"] / wall["pair_new"]
    return out


def two_at_once(command, extra, tape, folder, measure_teacher):
    """Wall seconds of two distill.py processes of `command` at once (one thread each), each replaying its own
    copy of `tape` (without its teacher logits when measure_teacher, as the old code did)."""
    procs = []
    for k in range(2):
        copy_of = folder / f"tape{k}"
        shutil.copytree(tape, copy_of)
        if measure_teacher:
            (copy_of / "eval-logits.pt").unlink(missing_ok=True)
        argv = [a if a != str(tape) else str(copy_of) for a in command] + extra + ["--out", str(folder / f"runs{k}")]
        procs.append(argv)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.time()
    running = [
        subprocess.Popen([sys.executable, str(ROOT / "distill.py"), *a], env=env, stderr=subprocess.DEVNULL)
        for a in procs
    ]
    if any(p.wait() != 0 for p in running):
        raise RuntimeError("bench: a lab command run two at once failed")
    return time.time() - t0


def section_images(train, bs, tmp):
    """The real-image path beside synth-*: the same images as PNG files in an image folder, decoded once
    (then cached as uint8) vs generated; then the training stream of each (they must give the same batches)."""
    folder = Path(tmp) / "imagefolder"
    for split in ("train", "test"):
        for i, (img, label) in enumerate(zip(train.images, train.labels.tolist())):
            d = folder / split / f"{label:03d}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(d / f"{i:05d}.png")
    t0 = time.time()
    size = train.images.shape[-1]
    png = data.load_split("imagefolder", "train", folder, image_size=size)
    decode = len(png) / (time.time() - t0)
    t0 = time.time()
    data.load_split("synth-fine", "train", "unused", synth={"target_train_per_class": len(train) // 24})
    generate = len(train) / (time.time() - t0)
    steps = len(train) // bs
    stream_synth = data_rate(train, bs, 0, 0, steps, device=torch.device("cpu"))
    stream_png = data_rate(png, bs, 0, 0, steps, device=torch.device("cpu"))
    return {
        "images_png_decode_img_s": decode,
        "images_synth_generate_img_s": generate,
        "images_png_stream_img_s": stream_png,
        "images_synth_stream_img_s": stream_synth,
    }


def section_parity(ckpt_path, student, temps, epochs, seeds, device, tmp, levers=None):
    """Final top-1 per lever (all, or the names in `levers`), T and seed on the teacher checkpoint's own data
    (the lab's, by default)."""
    ckpt = models.load_checkpoint(ckpt_path)
    synth = (ckpt.get("args") or {}).get("synth") or {}
    train = data.load_split(ckpt["dataset"], "train", "unused", synth=synth)
    test = data.load_split(ckpt["dataset"], "test", "unused", synth=synth)
    teacher = models.model_from_checkpoint(ckpt, ckpt_path).to(device)
    norm = models.checkpoint_normalization(ckpt)
    out = {}
    for name, lever in LEVERS.items():
        if levers and not any(name.startswith(chosen) for chosen in levers):
            continue
        model = copy.deepcopy(teacher).to(memory_format=torch.channels_last) if lever.get("channels_last") else teacher
        for seed in seeds:
            results = project_run(
                Path(tmp) / f"parity-{len(out)}-{seed}",
                train,
                test,
                model,
                norm,
                student,
                temps,
                epochs,
                64,
                seed,
                device,
                0,
                tape_dir=Path(tmp) / f"ptape-{seed}-{lever.get('amp')}",
                evaluate=len(test),
                **lever,
            )
            for T, r in zip(temps, results):
                out.setdefault(name, {}).setdefault(T, []).append(r["final"]["top1"])
        print(f"parity: {name}: " + ", ".join(f"T={T:g} {fmt_seeds(v)}" for T, v in out[name].items()), flush=True)
    return out


def fmt_seeds(values):
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1)) ** 0.5
    return f"{mean:.2f} ± {std:.2f}"


def print_parity(out):
    """A lever is kept when, at every T, its mean final top-1 is within float32's seed std of float32's mean."""
    ref = out["float32"]
    for name, by_T in out.items():
        parts, kept = [], True
        for T, values in by_T.items():
            mean, ref_mean = sum(values) / len(values), sum(ref[T]) / len(ref[T])
            ref_std = (sum((v - ref_mean) ** 2 for v in ref[T]) / max(1, len(ref[T]) - 1)) ** 0.5
            kept &= abs(mean - ref_mean) <= ref_std
            parts.append(
                f"T={T:g}: {fmt_seeds(values)} ({mean - ref_mean:+.2f} vs float32, its seed std {ref_std:.2f})"
            )
        verdict = "reference" if name == "float32" else ("parity: kept" if kept else "NO parity")
        print(f"  {name:<38} {verdict:<14} " + "; ".join(parts))


class CachedStream:
    """A stream that replays a few pre-augmented batches: the training step without the data pipeline."""

    def __init__(self, stream, steps):
        steps = min(steps, stream.steps_per_epoch)
        self.batches = [b for _, b in zip(range(steps), (b for _, b in stream.epoch(0)))]
        self.steps_per_epoch, self.views, self.split = steps, 1, stream.split

    def epoch(self, epoch, start_step=0):
        yield from ((i, self.batches[i]) for i in range(start_step, self.steps_per_epoch))


def gpu_check(device, tiny, tmp):
    """One step of every lever and method, the host syncs of a step, img/s and peak memory of a ResNet50 teacher with
    9 ResNet18 students at 224 px (tiny: test_resnet at 32 px on the CPU), and GPU vs CPU augmentation parity.
    Returns the failures (each part that raised), printing as it goes."""
    failures = []
    for name, part in (
        ("levers and methods", lambda: check_levers(device, tiny, Path(tmp))),
        ("host syncs of one step", lambda: print_syncs(device, tiny)),
        ("throughput", lambda: check_throughput(device, tiny)),
        ("augmentation parity", lambda: check_aug_parity(device, tiny)),
    ):
        print(f"== {name}", flush=True)
        try:
            part()
        except Exception as e:  # every part runs; the exit code says whether one failed
            failures.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            print(f"FAILED {failures[-1]}", flush=True)
    return failures


def check_levers(device, tiny, tmp):
    """distill.py, one epoch of a few steps, with each lever and method; RuntimeError naming the first that fails."""
    import distill
    import train_teacher

    sizes = ["groups=2", "classes_per_group=3", "fine_groups=1", "novel_groups=1", "novel_classes_per_group=3"]
    common = ["--synth", *sizes, "src_train_per_class=8", "target_train_per_class=8", "test_per_class=4"]
    common += ["--device", str(device), "--bs", "8", "--epochs", "1"]
    teacher = tmp / "teacher.pt"
    if train_teacher.main(["--dataset", "synth-fine", "--arch", "test_resnet", "--out", str(teacher), *common]) != 0:
        raise RuntimeError("train_teacher.py failed")
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


def fabricated(n, size, classes=100):
    """A split of n random uint8 images (size x size), labels cycling over `classes`."""
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return data.Split(images, torch.arange(n) % classes, [str(k) for k in range(classes)])


def lockstep_setup(device, tiny, bs, k=9):
    """(teacher forward, k students, augmentation, split): ResNet50 -> ResNet18 at 224 px (tiny: test_resnet, 32)."""
    t_arch, s_arch, size = ("test_resnet", "test_resnet", 32) if tiny else ("resnet50", "resnet18", 224)
    torch.manual_seed(0)
    teacher = models.create_model(t_arch, 100)[0].to(device).to(memory_format=torch.channels_last)
    forward = teacher_forward(teacher, models.normalization(teacher), True)
    students = [models.create_model(s_arch, 100)[0] for _ in range(k)]
    return forward, students, data.aug_config_for("pets", size), fabricated(4 * bs, size + size // 7)


def lockstep_rate(device, tiny, bs, steps, **levers):
    """(student img/s of the last of two epochs, peak device memory in GB or None on the CPU) of 9 lockstep students
    on `steps` pre-augmented batches, with the engine.Recipe `levers`."""
    forward, students, aug, split = lockstep_setup(device, tiny, bs, k=2 if tiny else 9)
    cached = CachedStream(data.TrainStream(split, aug, batch_size=bs, seed=0, device=device), steps)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with tempfile.TemporaryDirectory() as tmp:
        members = []
        for i, student in enumerate(students):
            run = runs.RunDir(Path(tmp) / f"s{i}", {"i": i})
            run.start({})
            loss = kd.build_loss("kd", T=1.0 + i)
            objective = lambda s, b, t, e, j, loss=loss: loss(s, t)  # noqa: E731
            members.append(engine.Member(f"s{i}", run, student, objective, models.normalization(student)))
        recipe = engine.Recipe(epochs=2, opt="adamw", lr=1e-3, wd=0.05, device=device, amp=True, **levers)
        test = (data.eval_images(split, aug)[:bs], split.labels[:bs], None)
        results = engine.train(members, cached, test, recipe, teacher=forward, log=lambda line: None)
    peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
    return sum(r["curve"][-1]["img_per_s"] for r in results), peak


def check_throughput(device, tiny):
    """img/s and peak memory: serial vs --batched vs --compile, at batch 64 and 256 (tiny: 8)."""
    for bs in (8,) if tiny else (64, 256):
        for name, levers in (("serial", {}), ("--batched", {"batched": True}), ("--compile", {"compile": True}))[
            : 2 if tiny else 3
        ]:
            rate, peak = lockstep_rate(device, tiny, bs, 2 if tiny else 6, channels_last=True, **levers)
            memory = f"{peak:.1f} GB peak" if peak is not None else "peak memory n/a on the CPU"
            print(f"  batch {bs:<4} {name:<10} {rate:8.0f} student img/s  {memory}", flush=True)


def print_syncs(device, tiny):
    """The host syncs (torch.cuda.set_sync_debug_mode) of one lockstep step: augmentation, teacher, 9 students."""
    if device.type != "cuda":
        print("  n/a on the CPU (no device to sync with)")
        return
    import warnings

    forward, students, aug, split = lockstep_setup(device, tiny, 64)
    stream = data.TrainStream(split, aug, batch_size=64, seed=0, device=device)
    recipe = engine.Recipe(epochs=1, opt="adamw", lr=1e-3, wd=0.05, device=device, amp=True, channels_last=True)
    loss = kd.build_loss("kd", T=4.0)
    members = []
    for i, student in enumerate(students):
        m = engine.Member(f"s{i}", None, student, lambda s, b, t, e, j: loss(s, t), models.normalization(student))
        m.model.to(device).to(memory_format=torch.channels_last)
        m.optimizer = engine.build_optimizer(student.parameters(), "adamw", 1e-3, 0.05)
        m.forward, m.loss_sum = student, torch.zeros((), device=device)
        members.append(m)
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
    on_device = data.augment_batch(
        split.images.to(device), aug, index, data.draw_samples(split, aug, index, seed=0, epoch=0)
    )
    diff = (on_device.cpu().int() - cpu.int()).abs()
    print(
        f"  {device.type} vs cpu: {100 * (diff > 0).float().mean():.3f}% of pixels differ, mean |diff| "
        f"{diff.float().mean():.4f}, max {diff.max()}"
    )
    assert diff.float().mean() <= 1.0, "device augmentation drifts from the CPU's (mean |diff| > 1)"


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


def probe(code, script, args, steps=0):
    """(peak RSS in GB, bytes written) of `script` of the code in folder `code` run with `args` (PROBE)."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    cmd = [sys.executable, "-c", PROBE, str(steps), script, *map(str, args)]
    r = subprocess.run(cmd, cwd=code, env=env, capture_output=True, text=True)
    line = next((x for x in r.stderr.splitlines() if x.startswith("PROBE ")), None)
    if r.returncode != 0 or line is None:
        raise RuntimeError(f"{script} {' '.join(map(str, args))} exited {r.returncode}: {r.stderr.strip()[-800:]}")
    kb, written = map(int, line.split()[1:])
    return kb / 1e6, written


def image_folder(root, n_train, n_test, classes=100, size=32):
    """A CIFAR-100-shaped image folder of random PNGs: root/{train,test}/<class>/<i>.png, `size` px."""
    g = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for k in range(classes):
            (root / split / f"{k:03d}").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = g.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / split / f"{i % classes:03d}" / f"{i:05d}.png")


def old_code(rev, tmp):
    """The project at git revision `rev`, extracted into tmp/code-<rev> (the "before" of a measurement)."""
    folder = Path(tmp) / f"code-{rev}"
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def host_memory(code, folder, tmp, steps=2):
    """(train_teacher.py's, distill.py's with 9 temperatures) peak RSS in GB on the image folder at 224 px, each
    training `steps` steps: train_teacher.py writes the teacher that distill.py then measures."""
    data_args = ["--dataset", "imagefolder", "--data-root", folder, "--image-size", "224", "--device", "cpu"]
    teacher = Path(tmp) / f"teacher-{code.name}.pt"
    t_args = [*data_args, "--arch", "test_resnet", "--epochs", "1", "--bs", "32", "--out", teacher]
    temps = ["1", "2", "3", "4", "5", "10", "20", "30", "40"]
    d_args = [*data_args, "--teacher", teacher, "--student", "resnet18", "--T", *temps, "--epochs", "1", "--bs", "32"]
    d_args += ["--allow-weak-teacher", "--out", Path(tmp) / f"runs-{code.name}"]
    return probe(code, "train_teacher.py", t_args, steps)[0], probe(code, "distill.py", d_args, steps)[0]


def ckpt_bytes_per_epoch(code, tmp, epochs=3):
    """Bytes distill.py writes per epoch for 9 ResNet18 students (a 1.2 GB checkpoint set) on a small synth set."""
    sizes = ["--synth", "target_train_per_class=8", "test_per_class=2", "--device", "cpu", "--bs", "32"]
    teacher = Path(tmp) / f"synth-teacher-{code.name}.pt"
    probe(code, "train_teacher.py", ["--arch", "test_resnet", "--epochs", "1", "--out", teacher, *sizes])
    temps = ["1", "2", "3", "4", "5", "10", "20", "30", "40"]
    args = ["--teacher", teacher, "--student", "resnet18", "--T", *temps, "--epochs", epochs, "--allow-weak-teacher"]
    return probe(code, "distill.py", [*args, *sizes, "--out", Path(tmp) / f"bytes-{code.name}"])[1] / epochs


def section_host(images, before_rev, before_images, tmp):
    """Peak RSS (train_teacher.py, distill.py) on a CIFAR-100-sized folder and checkpoint bytes per epoch, with the
    code at `before_rev` and with this code; the old code's peaks at `before_images` (it may not fit at `images`)."""
    old, out = old_code(before_rev, tmp), {}
    for name, code, n in (("before", old, before_images), ("after", ROOT, images)):
        folder = Path(tmp) / f"folder-{n}"
        if not folder.is_dir():
            image_folder(folder, n, n // 5)
        teacher_gb, distill_gb = host_memory(code, folder, tmp)
        out[name] = {"train_images": n, "train_teacher_peak_gb": teacher_gb, "distill_9T_peak_gb": distill_gb}
        out[name]["ckpt_bytes_per_epoch"] = ckpt_bytes_per_epoch(code, tmp)
        print(f"  {name} ({before_rev if code is old else 'this code'}): {json.dumps(out[name])}", flush=True)
    return out


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


def print_table(r):
    print(
        f"device: {r['device']}  teacher {r['teacher']} -> student {r['student']}  {r['resolution']} px  "
        f"batch {r['batch_size']}  {r['train_images']} images x {r['epochs']} epoch(s)  workers {r['workers']}  "
        f"channels_last {'on' if r['channels_last'] else 'off'}"
    )
    rows = [
        ("step: plain KD loop", f"{r['step_plain_img_s']:.0f} img/s", ""),
        ("step: this loop, teacher live", f"{r['step_live_img_s']:.0f} img/s", f"{r['step_ratio_live']:.2f}x plain"),
        (
            "step: this loop, recording the tape",
            f"{r['step_record_img_s']:.0f} img/s",
            f"{r['step_record_img_s'] / r['step_plain_img_s']:.2f}x plain",
        ),
        (
            "step: this loop, teacher tape",
            f"{r['step_replay_img_s']:.0f} img/s",
            f"{r['step_ratio_replay']:.2f}x plain",
        ),
        (
            f"data: per sample ({r['workers']} workers)",
            f"{r['data_workers_img_s']:.0f} img/s",
            f"{r['data_workers_img_s'] / r['step_live_img_s']:.1f}x step rate",
        ),
        (
            "data: whole batches on the device",
            f"{r['data_device_img_s']:.0f} img/s",
            f"{r['data_device_img_s'] / r['step_live_img_s']:.1f}x step rate",
        ),
        (f"sweep: {r['K']} plain runs", f"{r['sweep_plain_s']:.1f} s", ""),
        (
            f"sweep: 1 lockstep run of {r['K']}, tape",
            f"{r['sweep_lockstep_tape_s']:.1f} s",
            f"ratio {r['sweep_ratio']:.2f}",
        ),
        ("images: PNG folder decoded once (then cached)", f"{r['images_png_decode_img_s']:.0f} img/s", ""),
        ("images: synth-* generated", f"{r['images_synth_generate_img_s']:.0f} img/s", ""),
        ("images: stream from the PNG folder's cache", f"{r['images_png_stream_img_s']:.0f} img/s", ""),
        ("images: stream from synth-*", f"{r['images_synth_stream_img_s']:.0f} img/s", ""),
    ]
    base = r["levers_student_img_s"]["float32"]
    rows += [
        (f"lever ({r['levers_K']} students, tape): {k}", f"{v:.0f} img/s", f"{v / base:.2f}x float32")
        for k, v in r["levers_student_img_s"].items()
    ]
    rows.append(
        (
            f"lab step: one lab command, {r['lab_step_epochs']} epochs, old defaults / new",
            f"{r['lab_step_old_s']:.1f} s / {r['lab_step_new_s']:.1f} s",
            f"{r['lab_step_ratio']:.2f}x",
        )
    )
    if "lab_pair_ratio" in r:
        rows.append(
            (
                "lab step: two lab commands at once (the lab's pool), old / new",
                f"{r['lab_pair_old_s']:.1f} s / {r['lab_pair_new_s']:.1f} s",
                f"{r['lab_pair_ratio']:.2f}x",
            )
        )
    w = max(len(a) for a, _, _ in rows)
    for a, b, c in rows:
        print(f"  {a:<{w}}  {b:>12}  {c}")


if __name__ == "__main__":
    main()
