"""How long a grid takes on this machine: step rates measured here, and the work of a grid.Grid's commands.

    python grid.py study --data-root DIR --teacher CKPT --dry-run      # prints the study's estimate

A rough figure (perfect packing of the commands on the workers, evaluation four times per run), good to pick
budgets before committing hours; docs/LAB.md compares it with the lab's measured wall time.
"""

import time

import torch
import torch.nn.functional as F

import engine
import kd
import models


def step_rates(student, teacher_arch, num_classes, image_size, device, students=7, steps=3):
    """What the lab's work costs on this machine (one thread per CPU worker, as run_all.sh runs it): student
    images/s in a lockstep of `students` (bf16 and channels_last as the lab runs, KD on given teacher logits),
    the teacher's training and inference images/s, a student's evaluation images/s. Random images and weights:
    the speed of a step does not depend on them."""
    bs = 64 if image_size <= 64 else 16  # large images: a smaller batch keeps the measurement short
    x = torch.randint(0, 256, (bs, 3, image_size, image_size), dtype=torch.uint8, device=device)
    y = torch.randint(0, num_classes, (bs,), device=device)

    def timed(models_, objective):
        opts = [engine.build_optimizer(m.parameters(), "sgd", 0.01, 0.0) for m in models_]
        for i in range(steps + 1):  # the first step warms up
            if i == 1:
                t0 = time.time()
            for m, opt in zip(models_, opts):
                with torch.autocast(device.type, dtype=torch.bfloat16):
                    loss = objective(m(models.model_input(x, *models.normalization(m), True)))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                kd.per_layer_clip_(m.parameters(), 1.0)
                opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return steps * bs * len(models_) / (time.time() - t0)

    def model(arch):
        return models.create_model(arch, num_classes)[0].to(device).to(memory_format=torch.channels_last)

    def inference(m):
        images = x.repeat(4, 1, 1, 1)
        models.predict(m, images[:bs], models.normalization(m), device, amp=True, channels_last=True)  # warm-up
        t0 = time.time()
        models.predict(m, images, models.normalization(m), device, amp=True, channels_last=True)
        return len(images) / (time.time() - t0)

    threads = torch.get_num_threads()
    torch.set_num_threads(1 if device.type == "cpu" else threads)
    try:
        t = torch.randn(bs, num_classes, device=device)
        lockstep = [model(student) for _ in range(students)]
        teacher = model(teacher_arch)
        return {
            "student_img_s": timed(lockstep, lambda s: kd.kd_loss(s, t, 4.0)),
            "teacher_train_img_s": timed([teacher], lambda s: F.cross_entropy(s.float(), y)),
            "teacher_img_s": inference(teacher),
            "eval_img_s": inference(lockstep[0]),
        }
    finally:
        torch.set_num_threads(threads)


def estimate_seconds(g, classes, n_train, n_test, student, teacher_arch, image_size, device, jobs):
    """Wall seconds of a grid.Grid on `jobs` workers, from step rates measured here: the students' steps and
    evaluations, each tape's teacher, the teachers trained. A rough figure: perfect packing assumed."""
    rates = step_rates(student, teacher_arch, classes, image_size, device)
    work, tapes = 0.0, {}
    for cmd, runs in g.stages["distill"].items():
        epochs = g.cost[cmd] / runs
        work += g.cost[cmd] * n_train / rates["student_img_s"] + runs * 4 * n_test / rates["eval_img_s"]
        tapes[g.tape_of[cmd]] = max(tapes.get(g.tape_of[cmd], 0), epochs)
    work += sum(e * n_train + n_train + n_test for e in tapes.values()) / rates["teacher_img_s"]
    work += sum(e * n_train for _, _, e in g.trained.values()) / rates["teacher_train_img_s"]
    return work / jobs
