"""The training loop through its two scripts: end to end on tiny built-in data, lockstep sweeps, self-describing
results, the loss of every method and signal, and the student's initial weights (resumes: test_faults.py; bad input:
test_bad_input.py)."""

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import data
import distill
import engine
import kd
import models
import runs
import train_teacher
from helpers import distill_args, intra_op_threads, results_in, teacher_args


def teacher_logits(teacher, split_name):
    """The session teacher's logits and the labels on synth-fine's train or test images, measured here."""
    ckpt = models.load_checkpoint(teacher)
    split = data.load_split("synth-fine", split_name, "unused", synth=ckpt["args"]["synth"])
    model = models.model_from_checkpoint(ckpt, teacher)
    images = data.eval_images(split, data.aug_config_for("synth-fine"))
    return models.predict(model, images, models.checkpoint_normalization(ckpt), torch.device("cpu")), split.labels


def test_teacher_checkpoint_describes_itself(teacher):
    ckpt = models.load_checkpoint(teacher)
    assert ckpt["arch"] == "test_resnet" and ckpt["dataset"] == "synth-fine"
    assert ckpt["num_classes"] == len(ckpt["classes"]) == 3
    assert ckpt["origination"]["from_scratch"] is False and ckpt["origination"]["head_reset"] is True
    assert ckpt["origination"]["epochs_trained"] == 4 and ckpt["origination"]["target_epochs"] == 2
    assert len(ckpt["normalization"]["mean"]) == 3 and ckpt["code_version"]
    result = json.loads(teacher.with_suffix(".run").joinpath("result.json").read_text())
    logits, labels = teacher_logits(teacher, "test")
    assert result["status"] == "ok" and len(result["curve"]) == 2
    assert result["final"]["top1"] == pytest.approx(100 * (logits.argmax(1) == labels).double().mean().item())


def test_lockstep_sweep_equals_single_runs(teacher, tmp_path):
    """--T 1 4 in one process gives exactly what two separate runs give (same seed, CPU)."""
    assert distill.main(distill_args(teacher, tmp_path / "lock", "--T", "1", "4")) == 0
    assert distill.main(distill_args(teacher, tmp_path / "single", "--T", "1")) == 0
    assert distill.main(distill_args(teacher, tmp_path / "single", "--T", "4")) == 0
    lock, single = results_in(tmp_path / "lock"), results_in(tmp_path / "single")
    assert sorted(lock) == sorted(single) and len(lock) == 2  # same deterministic run ids
    for name in lock:
        a, b = lock[name], single[name]
        assert a["final"]["top1"] == b["final"]["top1"] and a["final"]["top5"] == b["final"]["top5"]
        assert [r["train_loss"] for r in a["curve"]] == [r["train_loss"] for r in b["curve"]]
    t1, t4 = (next(r for r in lock.values() if r["T"] == T) for T in (1.0, 4.0))
    assert t1["curve"][-1]["train_loss"] != t4["curve"][-1]["train_loss"]


def test_batched_students_compute_what_serial_students_compute(teacher, tmp_path):
    """--batched steps the students as one vmapped computation: the same update rule as stepping them one by
    one (floats differ by rounding only), BatchNorm statistics kept per student, and each student's checkpoint
    holds its own weights and optimizer state, so a batched run and a serial one resume each other."""
    sweep = ["--T", "1", "4", "--keep-ckpt", "--epochs", "2"]
    with intra_op_threads(1):
        assert distill.main(distill_args(teacher, tmp_path / "serial", *sweep)) == 0
        assert distill.main(distill_args(teacher, tmp_path / "batched", *sweep, "--batched")) == 0
    serial, batched = results_in(tmp_path / "serial"), results_in(tmp_path / "batched")
    assert sorted(serial) == sorted(batched) and len(serial) == 2
    for name in serial:
        a = [r["train_loss"] for r in serial[name]["curve"]]
        assert [r["train_loss"] for r in batched[name]["curve"]] == pytest.approx(a, rel=1e-4)
        wa = torch.load(tmp_path / "serial" / name / "ckpt.pt", weights_only=True)
        wb = torch.load(tmp_path / "batched" / name / "ckpt.pt", weights_only=True)
        for key, value in wa["model"].items():
            assert torch.allclose(value.float(), wb["model"][key].float(), atol=1e-3), key  # running stats too
        assert wa["optimizer"]["state"].keys() == wb["optimizer"]["state"].keys()
        assert (tmp_path / "batched" / name / "ckpt.pt").stat().st_size < 1.2 * (
            tmp_path / "serial" / name / "ckpt.pt"
        ).stat().st_size
    t1, t4 = (next(r for r in batched.values() if r["T"] == T) for T in (1.0, 4.0))
    assert t1["curve"][-1]["train_loss"] != t4["curve"][-1]["train_loss"]  # two students, not one copied


def test_batched_falls_back_where_it_cannot_batch(teacher, tmp_path, capsys):
    assert distill.main(distill_args(teacher, tmp_path, "--T", "4", "--method", "ctkd", "--batched")) == 0
    assert "--batched: stepping the students one at a time instead" in capsys.readouterr().err


def test_labels_only_baseline_is_one_run_whatever_the_teacher(teacher, tmp_path, capsys):
    """--baseline trains a student on labels alone beside the sweep; its identity holds no teacher, so a
    sweep with another teacher finds it done; it records no agreement and no teacher."""
    assert distill.main(distill_args(teacher, tmp_path, "--T", "4", "--baseline")) == 0
    results = results_in(tmp_path)
    base = next(r for r in results.values() if r["config"]["method"] == "labels")
    assert len(results) == 2 and base["teacher"] is None and base["T"] is None
    assert "teacher_weights_sha1" not in base["config"] and "agreement" not in base["final"]
    other = tmp_path / "other.pt"
    model, origination = models.create_model("test_resnet", 3)
    models.save_checkpoint(other, model, arch="test_resnet", classes=["a", "b", "c"], dataset="synth-fine",
                           origination=origination, args={}, code_version="test")  # fmt: skip
    capsys.readouterr()
    assert distill.main(distill_args(other, tmp_path, "--T", "4", "--baseline")) == 0
    assert "already done" in capsys.readouterr().err and len(results_in(tmp_path)) == 3


def test_the_teachers_synth_sizes_are_the_default(teacher, tmp_path):
    """Without --synth, distill.py uses the built-in data its teacher was trained on."""
    args = distill_args(teacher, tmp_path, "--T", "4", "--epochs", "1")
    i = args.index("--synth")
    assert distill.main(args[:i] + args[args.index("--data-root") :]) == 0
    (r,) = results_in(tmp_path).values()
    assert r["config"]["synth"] == models.load_checkpoint(teacher)["args"]["synth"] and r["config"]["synth"]


def test_a_students_random_draws_do_not_depend_on_its_lockstep_neighbours(tmp_path):
    """Each lockstep student starts every step from the same global RNG state (dropout, drop-path and random
    signals draw from it): a student trained beside others gets exactly the floats it gets alone."""
    split = data.load_split("synth-fine", "train", "unused", synth=dict(target_train_per_class=8))
    aug = data.aug_config_for("synth-fine")

    def sweep(folder, temps):
        members = []
        for T in temps:
            torch.manual_seed(0)
            model = models.create_model("test_resnet", len(split.classes))[0]
            run = runs.RunDir(tmp_path / folder / str(T), {"T": T})
            run.start({})
            objective = lambda s, b, t, e, i, T=T: F.cross_entropy(F.dropout(s / T, 0.5), b["y"])
            members.append(
                engine.Member(name=str(T), run=run, model=model, objective=objective, norm=models.normalization(model))
            )
        stream = data.TrainStream(split, aug, batch_size=16, seed=0)
        recipe = engine.Recipe(epochs=1, opt="sgd", lr=0.01, wd=0)
        results = engine.train(
            members, stream, (data.eval_images(split, aug), split.labels, None), recipe, log=lambda line: None
        )
        return [r["curve"][-1]["train_loss"] for r in results]

    together, alone = sweep("together", (4.0, 1.0)), sweep("alone", (1.0,))
    assert together[1] == alone[0] and together[0] != together[1]


def test_result_is_self_describing(teacher, tmp_path):
    assert distill.main(distill_args(teacher, tmp_path, "--T", "2", "--eval-every", "1")) == 0
    (run,) = Path(tmp_path).iterdir()
    r = json.loads((run / "result.json").read_text())
    assert r["config"]["T"] == 2.0 and r["config"]["method"] == "kd" and r["config"]["seed"] == 0
    assert {"top1", "top5", "agreement"} <= set(r["final"]) and len(r["curve"]) == 2  # --eval-every 1
    assert r["best"]["top1"] == max(e["top1"] for e in r["curve"]) and r["final"]["top1"] == r["curve"][-1]["top1"]
    logits = teacher_logits(teacher, "train")[0]  # the teacher's train-set statistics at T = 2
    statistics = r["teacher"]["statistics"]
    assert statistics["T"] == 2.0 and statistics["H_rel"] == pytest.approx(kd.relative_entropies(logits, 2.0)[0].mean())
    assert statistics["mean_sorted_softmax"] == pytest.approx(kd.mean_sorted_softmax(logits, 2.0).tolist(), rel=1e-5)
    assert {"torch", "torchvision", "timm"} <= set(r["versions"]) and r["code_version"] and r["device"]
    assert r["wall_time_s"] > 0 and r["img_per_s"] > 0
    assert json.loads((run / "config.json").read_text())["identity"] == r["config"]
    assert [json.loads(ln)["epoch"] for ln in (run / "log.jsonl").read_text().splitlines()] == [1, 2]
    assert not (run / "ckpt.pt").exists()  # removed once result.json is written (--keep-ckpt keeps it)
    # a second identical command does nothing
    assert distill.main(distill_args(teacher, tmp_path, "--T", "2", "--eval-every", "1")) == 0
    assert json.loads((run / "result.json").read_text())["wall_time_s"] == r["wall_time_s"]


def test_restating_a_default_hyperparameter_keeps_the_run_id(teacher, tmp_path):
    def run_ids(*flags):
        plan = distill.make_plan(
            distill.get_args(distill_args(teacher, tmp_path, "--method", "dkd", "--T", "2", *flags))
        )
        return {runs.run_id(i) for i in plan.identities.values()}

    default = run_ids()
    assert run_ids("--hp", "beta=8", "--ce-weight", "1") == default  # DKD's own defaults
    assert run_ids("--hp", "beta=2") != default and run_ids("--ce-weight", "0.5") != default


# The loss of one step of each --method at its defaults and of each --signal, spelled out with kd.py's functions:
# (student logits, teacher logits, soft labels, T, the teacher's mean train-set entropy at T in nats) -> loss.
# Epoch 1: DKD's and RLD's warmup factor is 1/20; CTKD's temperature starts at 1 + 20 sigmoid(theta_init = 1).
CTKD_T0 = 1 + 20 * torch.sigmoid(torch.tensor(1.0))
EXPECTED_LOSS = {
    "kd": lambda s, t, y, T, h: kd.kd_loss(s, t, T),
    "dkd": lambda s, t, y, T, h: kd.cross_entropy(s, y) + kd.dkd_loss(s, t, y, T) / 20,
    "eakd": lambda s, t, y, T, h: 0.1 * kd.cross_entropy(s, y) + 0.9 * kd.eakd_loss(s, t, T),
    "ctkd": lambda s, t, y, T, h: 0.1 * kd.cross_entropy(s, y) + 0.9 * kd.ctkd_loss(s, t, CTKD_T0),
    "lskd": lambda s, t, y, T, h: 0.1 * kd.cross_entropy(s, y) + 9 * kd.lskd_loss(s, t, T),
    "mlkd": lambda s, t, y, T, h: 0.1 * sum(kd.cross_entropy(v, y) for v in s) + 0.9 * kd.mlkd_loss(s, t, T),
    "rld": lambda s, t, y, T, h: kd.cross_entropy(s, y) + kd.rld_loss(s, t, y, T) / 20,
    "dist": lambda s, t, y, T, h: kd.cross_entropy(s, y) + kd.dist_loss(s, t, T, weight=2.0),
    "smooth-global": lambda s, t, y, T, h: kd.soft_target_loss(
        s, kd.soft_targets(t, T, "smooth-global", mean_entropy=h), T
    ),
    "smooth-instance": lambda s, t, y, T, h: kd.soft_target_loss(s, kd.soft_targets(t, T, "smooth-instance"), T),
    # the run draws the permutation from a generator seeded with (seed + 1, epoch 1, step 0)
    "bottomk": lambda s, t, y, T, h: kd.soft_target_loss(
        s, kd.soft_targets(t, T, "bottomk", k=1, generator=torch.Generator().manual_seed(engine.step_seed(1, 1, 0))), T
    ),
}


@pytest.fixture(scope="module")
def sharp_teacher(teacher, tmp_path_factory):
    """The session's teacher with its head scaled by 20: logits of a few units, where T and each method's
    nonlinearity change the loss by far more than rounding (the tiny teacher's own logits are below 0.5)."""
    ckpt = models.load_checkpoint(teacher)
    for key in ("fc.weight", "fc.bias"):
        ckpt["state_dict"][key] *= 20
    path = tmp_path_factory.mktemp("sharp") / "teacher.pt"
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("kind", list(EXPECTED_LOSS))
def test_the_logged_loss_is_the_kd_function_of_the_method_or_signal(sharp_teacher, tmp_path, kind):
    """One step at lr 0 (the whole train set in one batch): log.jsonl's loss equals the kd.py function of the
    method (or control signal) applied to the student's and the teacher's logits on the step's batch."""
    assert sorted(EXPECTED_LOSS) == sorted([*kd.METHODS, *kd.SIGNALS[1:]])  # every method and signal
    teacher = sharp_teacher
    flags = ["--method", kind] if kind in kd.METHODS else ["--signal", kind] + (["--k", "1"] * (kind == "bottomk"))
    args = distill_args(teacher, tmp_path, "--T", "1", "--lr", "0", "--epochs", "1", "--bs", "36", "--keep-ckpt")
    args += [*flags, "--channels-last", "off"]
    assert distill.main(args) == 0
    (run,) = tmp_path.iterdir()
    (record,) = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    # the step's batch, the teacher (eval mode) and the student (train mode, its weights unchanged at lr 0)
    plan = distill.make_plan(distill.get_args(args))
    batch = plan.stream.batch(0, 0)
    ckpt = models.load_checkpoint(teacher)
    t_model = models.model_from_checkpoint(ckpt, teacher).eval()
    student = models.create_model("test_resnet", 3)[0]
    state = torch.load(run / "ckpt.pt", weights_only=True)
    student.load_state_dict(state["model"])
    views = [batch[k] for k in ("x", "x2") if k in batch]
    t_norm = models.checkpoint_normalization(ckpt)
    with torch.no_grad():
        t = [t_model(models.model_input(x, *t_norm)) for x in views]
        p_train = F.softmax(t_model(models.model_input(data.eval_images(plan.train, plan.aug), *t_norm)), 1)
        s = [student.train()(models.model_input(x, *models.normalization(student))) for x in views]
    s, t = (tuple(v) if kind == "mlkd" else v[0] for v in (s, t))
    h = -torch.xlogy(p_train, p_train).sum(1).mean()
    expected = EXPECTED_LOSS[kind](s, t, batch["y_soft"], 1.0, h).item()
    assert record["train_loss"] == pytest.approx(expected, rel=1e-5)
    if kind == "ctkd":  # the learned temperature: in the optimizer and the checkpoint, unchanged at lr 0
        assert record["T_learned"] == pytest.approx(CTKD_T0.item()) and state["objective"]["theta"].item() == 1.0
        assert len(state["optimizer"]["param_groups"][0]["params"]) == len(list(student.parameters())) + 1


def test_optimisation_flags_are_applied_and_recorded(teacher, tmp_path):
    flags = ["--opt", "sgd", "--lr", "0.02", "--wd", "0.001", "--warmup-epochs", "1", "--clip", "0", "--ce-weight"]
    args = distill_args(teacher, tmp_path, "--T", "4", *flags, "0.5", "--hp", "t2=false", "--seed", "3")
    assert distill.main(args) == 0
    (r,) = results_in(tmp_path).values()
    c = r["config"]
    assert (c["opt"], c["lr"], c["wd"], c["warmup_epochs"], c["clip"], c["ce_weight"], c["hp"], c["seed"]) == (
        "sgd", 0.02, 0.001, 1, 0.0, 0.5, {"t2": False}, 3)  # fmt: skip
    assert r["curve"][0]["lr"] == pytest.approx(0.02)  # end of the warmup epoch: the peak
    assert r["curve"][1]["lr"] < 0.02


@pytest.mark.parametrize("opt", ["adamw", "sgd"])
def test_fused_optimizers_follow_the_per_tensor_update_rule(opt):
    """build_optimizer uses the fused kernels on CPU; ten steps land where torch's per-tensor loop lands."""
    torch.manual_seed(0)
    fused_model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    loop_model = [p.detach().clone().requires_grad_() for p in fused_model.parameters()]
    fused = engine.build_optimizer(fused_model.parameters(), opt, lr=0.05, wd=0.05)
    cls = torch.optim.AdamW if opt == "adamw" else torch.optim.SGD
    loop = cls(loop_model, lr=0.05, weight_decay=0.05, foreach=False, **({"momentum": 0.9} if opt == "sgd" else {}))
    assert fused.defaults["fused"] is True
    for _ in range(10):
        x = torch.randn(32, 8)
        for params, optimizer in ((list(fused_model.parameters()), fused), (loop_model, loop)):
            w1, b1, w2, b2 = params
            loss = (F.relu(x @ w1.T + b1) @ w2.T + b2).logsumexp(1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    for a, b in zip(fused_model.parameters(), loop_model):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_device_flags_do_not_change_cpu_results(teacher, tmp_path):
    """--workers, --channels-last, --augment-on change how, not what (on CPU); --amp runs bf16 autocast."""
    base = distill_args(teacher, tmp_path / "a", "--T", "4", "--augment-on", "workers", "--channels-last", "off")
    assert distill.main(base) == 0
    assert distill.main(distill_args(teacher, tmp_path / "b", "--T", "4", "--workers", "2", "--channels-last")) == 0
    (a,), (b,) = results_in(tmp_path / "a").values(), results_in(tmp_path / "b").values()
    assert a["final"]["top1"] == b["final"]["top1"]
    assert a["curve"][-1]["train_loss"] == pytest.approx(b["curve"][-1]["train_loss"], rel=1e-5)
    assert distill.main(distill_args(teacher, tmp_path / "c", "--T", "4", "--amp")) == 0
    (c,) = results_in(tmp_path / "c").values()
    assert c["config"]["amp"] is True and math.isfinite(c["curve"][-1]["train_loss"])
    device = ["--augment-on", "device", "--workers", "2", "--channels-last", "off"]
    assert distill.main(distill_args(teacher, tmp_path / "d", "--T", "4", *device)) == 0
    (d,) = results_in(tmp_path / "d").values()
    without_speed = lambda curve: [{k: v for k, v in row.items() if k != "img_per_s"} for row in curve]
    assert without_speed(d["curve"]) == without_speed(a["curve"]) and d["final"]["top1"] == a["final"]["top1"]


def test_bf16_stays_off_on_the_cpu_where_a_strided_conv_sees_one_pixel():
    """torch's CPU bf16 conv backward gives non-finite weight gradients now and then for a strided 3x3 conv on a 1x1
    map (measured: test_resnet at 16 px, layer4.0.conv1); --amp is then float32, said in one line."""
    assert models.one_pixel_convs("test_resnet", 16) == ["layer4.0.conv1"]
    assert models.one_pixel_convs("test_resnet", 32) == [] and models.one_pixel_convs("resnet18", 64) == []
    lines, cpu = [], torch.device("cpu")
    assert engine.amp_for(True, cpu, "test_resnet", 16, lines.append) is False
    assert len(lines) == 1 and "layer4.0.conv1" in lines[0] and "--image-size" in lines[0]
    assert engine.amp_for(True, cpu, "test_resnet", 32, lines.append) is True and len(lines) == 1
    assert engine.amp_for(True, torch.device("cuda"), "test_resnet", 16, lines.append) is True  # no probe on a GPU
    assert engine.amp_for(False, cpu, "test_resnet", 16, lines.append) is False and len(lines) == 1


def test_channels_last_auto_picks_convnets():
    import timm

    cnn = models.create_model("resnet10t", 3)[0]
    vit = timm.create_model("vit_tiny_patch16_224", img_size=32, num_classes=3)
    gpu, cpu = torch.device("cuda"), torch.device("cpu")  # device objects only: nothing runs on them
    assert models.is_convnet(cnn) and not models.is_convnet(vit)
    assert engine.channels_last_for("auto", cnn, gpu) and not engine.channels_last_for("auto", vit, gpu)
    assert engine.channels_last_for("auto", cnn, cpu) and not engine.channels_last_for("auto", vit, cpu)
    assert engine.channels_last_for("on", vit, cpu) and not engine.channels_last_for("off", cnn, gpu)


@pytest.mark.slow
def test_compile_flag_compiles_once_for_all_lockstep_students(teacher, tmp_path):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    graphs = []  # compiled graphs so far: after one student, then after three new ones
    for temps in (["4"], ["1", "4", "8"]):
        assert (
            distill.main(distill_args(teacher, tmp_path / str(len(temps)), "--T", *temps, "--epochs", "1", "--compile"))
            == 0
        )
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[0] >= 1 and graphs[1] == graphs[0]  # three new students reuse the first one's graphs
    assert [r["status"] for r in results_in(tmp_path / "3").values()] == ["ok"] * 3


@pytest.mark.parametrize("init", ["checkpoint", "in1k"])
def test_the_student_starts_from_its_checkpoints_weights(teacher, tmp_path, monkeypatch, init):
    """At step 0 the student holds every tensor of its checkpoint but the head: timm-style in1k weights from a local
    file (--image-size read too), or a checkpoint fine-tuned from them on 6 classes by train_teacher.py (head reset)."""
    torch.manual_seed(1)
    torch.save(models.create_model("test_resnet", 1000)[0].state_dict(), tmp_path / "w.pth")
    in1k = ["--init", "in1k", "--pretrained-file", str(tmp_path / "w.pth")]
    if init == "in1k":
        flags, saved = ["--student-init", *in1k[1:], "--image-size", "24"], torch.load(tmp_path / "w.pth")
    else:
        ft = tmp_path / "ft.pt"
        assert (
            train_teacher.main(teacher_args(ft, *in1k, "--opt", "sgd", "--label-smoothing", "0.2", dataset="synth-src"))
            == 0
        )
        ckpt = models.load_checkpoint(ft)
        assert ckpt["origination"]["pretrained"].startswith("timm:test_resnet") and ckpt["num_classes"] == 6
        flags, saved = ["--student-init", str(ft)], ckpt["state_dict"]
    at_step_0 = []
    real_step = engine.train_step

    def train_step(m, xs, *a):
        if not at_step_0:
            at_step_0.extend([{k: v.clone() for k, v in m.model.state_dict().items()}, xs[0].shape])
        return real_step(m, xs, *a)

    monkeypatch.setattr(engine, "train_step", train_step)
    assert distill.main(distill_args(teacher, tmp_path / "runs", "--T", "4", "--epochs", "1", *flags)) == 0
    weights, shape = at_step_0
    assert weights.keys() == saved.keys() and weights["fc.weight"].shape == (3, saved["fc.weight"].shape[1])
    for key, value in saved.items():
        assert key.startswith("fc.") or torch.equal(weights[key], value), key
    assert shape[-2:] == ((24, 24) if init == "in1k" else (32, 32))
