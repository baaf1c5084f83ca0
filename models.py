"""Models: every architecture choice of the study, created through timm, and this project's checkpoints.

create_model(arch, num_classes, init) gives a timm model initialised from random weights, from
timm's ImageNet-1k weights (a pinned tag per architecture), or from a checkpoint of this project.
Checkpoints are plain dicts (tensors, numbers, strings) saved atomically and loaded with
weights_only=True, so a checkpoint explains itself and can never execute code.
"""

import functools
import hashlib
from pathlib import Path

import timm
import torch

from runs import atomic_torch_save

# The study's architectures (docs/STUDY.md §2) and the pinned timm tag used for `--init in1k`.
# All are ImageNet-1k-only weights. timm's *default* tags differ for two of them:
# convnext_tiny defaults to `in12k_ft_in1k` (ImageNet-12k pretraining) and
# vit_small_patch16_224 to `augreg_in21k_ft_in1k` (ImageNet-21k pretraining).
PRETRAINED_TAGS = {
    "resnet50": "a1_in1k",  # teacher
    "vit_small_patch16_224": "augreg_in1k",  # teacher
    "convnext_tiny": "fb_in1k",  # teacher (origination study)
    "regnety_064": "ra3_in1k",  # teacher (origination study)
    "resnet18": "a1_in1k",  # student
    "mobilenetv4_conv_medium": "e500_r224_in1k",  # student
    "convnext_pico": "d1_in1k",  # student (initialization study)
    "mobilevitv2_150": "cvnets_in1k",  # student (initialization study)
    # small models for the built-in 32x32 data (resnet18's 7x7/2 stem + max-pool is too coarse there)
    "resnet18d": "ra2_in1k",
    "resnet10t": "c3_in1k",
}
CHECKPOINT_FORMAT = "kd-temperature-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable, or not one of this project's."""


def is_known_arch(arch):
    """True if timm can build `arch` (a bare model name, no pretrained tag)."""
    return timm.is_model(arch)


def create_model(arch, num_classes, init="random", pretrained_file=None, pretrained_tag=None, data=None):
    """Return (model, origination). `init`: 'random', 'in1k', or a path to a checkpoint of this project.

    A checkpoint trained on another label set keeps its backbone and gets a freshly initialised
    head for `num_classes` (timm's reset_classifier), as timm does when fine-tuning. `data` is the
    identity of the data the model will be trained on (cli.data_identity): a checkpoint trained on
    other data counts as general pretraining ("pretrained"), one trained on the same data continues
    its origination (same_data).
    """
    if not is_known_arch(arch):
        raise ValueError(
            f"--arch/--student: unknown timm architecture '{arch}' (e.g. {', '.join(list(PRETRAINED_TAGS)[:4])})"
        )
    if init == "random":
        model = fp32_head(timm.create_model(arch, pretrained=False, num_classes=num_classes))
        return model, {
            "init": "random",
            "pretrained": None,
            "from_scratch": True,
            "epochs_trained": 0,
            "target_epochs": 0,
        }
    if init == "in1k":
        tag = pretrained_tag or PRETRAINED_TAGS.get(arch)
        name = f"{arch}.{tag}" if tag else arch
        overlay = {"file": str(pretrained_file)} if pretrained_file else None
        if pretrained_file and not Path(pretrained_file).is_file():
            raise CheckpointError(f"--pretrained-file: no such file '{pretrained_file}'")
        try:
            model = timm.create_model(name, pretrained=True, num_classes=num_classes, pretrained_cfg_overlay=overlay)
        except (OSError, RuntimeError, ValueError) as e:  # offline, hub errors, a file of another model
            where = f"from '{pretrained_file}'" if pretrained_file else "from the Hugging Face hub"
            raise CheckpointError(
                f"in1k: cannot load timm weights '{name}' {where} ({str(e).splitlines()[0][:120]}); "
                "offline, download them elsewhere and pass --pretrained-file"
            ) from None
        return fp32_head(model), {
            "init": "in1k",
            "pretrained": f"timm:{name}",
            "from_scratch": False,
            "epochs_trained": 0,
            "target_epochs": 0,
        }
    ckpt = load_checkpoint(init)
    if ckpt["arch"] != arch:
        raise CheckpointError(f"checkpoint '{init}' holds a '{ckpt['arch']}', not the requested '{arch}'")
    model = model_from_checkpoint(ckpt, init)
    if ckpt["num_classes"] != num_classes:
        model.reset_classifier(num_classes)
        fp32_head(model)
    parent, same = ckpt["origination"], same_data(ckpt, data)
    chain = [p for p in (parent.get("pretrained"), ckpt["dataset"]) if p]
    origination = {
        "init": str(init),
        "pretrained": parent.get("pretrained") if same else " -> ".join(chain),
        "from_scratch": parent.get("from_scratch", False) if same else False,
        "epochs_trained": parent.get("epochs_trained", 0),
        "target_epochs": parent.get("target_epochs", 0) if same else 0,
        "parent_dataset": ckpt["dataset"],
        "head_reset": ckpt["num_classes"] != num_classes,
    }
    return model, origination


class Float32Linear(torch.nn.Linear):
    """A classifier that computes its logits in float32 under bf16 autocast (the same weights and state_dict keys):
    bf16 logits round by about 0.06 at 10, as large as late KD gradients (docs/PERFORMANCE.md, bf16 logits)."""

    def forward(self, x):
        with torch.autocast(x.device.type, enabled=False):
            return torch.nn.functional.linear(x.float(), self.weight, self.bias)


def fp32_head(model):
    """The model, its classifier (a Linear, as timm's get_classifier names it) turned into a Float32Linear."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if type(head) is torch.nn.Linear:
        head.__class__ = Float32Linear
    return model


def same_data(ckpt, data):
    """Whether a checkpoint was trained on the data `data` (a run's data identity) describes: the same dataset and,
    for files, the same content (fingerprint; the same folder for checkpoints that do not record one), for the
    built-in data the same sizes. Loaders' names alone do not tell two image folders apart."""
    if not data or ckpt["dataset"] != data.get("dataset"):
        return False
    recorded = ckpt.get("args") or {}
    if data.get("data_sha1") or recorded.get("data_sha1"):
        return recorded.get("data_sha1") == data.get("data_sha1")
    if data.get("data_id") is not None or recorded.get("data_id") is not None:
        return recorded.get("data_id") == data.get("data_id")
    return recorded.get("synth", data.get("synth")) == data.get("synth")


def model_from_checkpoint(ckpt, path):
    """The model a checkpoint describes, with its weights; CheckpointError if the weights do not fit it."""
    try:
        model = timm.create_model(ckpt["arch"], pretrained=False, num_classes=ckpt["num_classes"])
        model.load_state_dict(ckpt["state_dict"])
        fp32_head(model)
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        reason = str(e).strip().splitlines()[0][:160]
        raise CheckpointError(
            f"checkpoint '{path}': its weights do not fit a '{ckpt['arch']}' with "
            f"{ckpt['num_classes']} classes ({reason})"
        ) from None
    return model


def checkpoint_normalization(ckpt):
    """The (mean, std) a checkpoint's model expects, as recorded in it."""
    norm = ckpt["normalization"]
    return tuple(norm["mean"]), tuple(norm["std"])


def trained_image_size(ckpt):
    """The training resolution a checkpoint records (None for checkpoints that do not record it)."""
    image_size = ((ckpt.get("args") or {}).get("aug") or {}).get("image_size")
    return image_size if isinstance(image_size, int) else None


def normalization(model):
    """(mean, std) the model expects for [0, 1] RGB input, from timm's pretrained_cfg."""
    cfg = model.pretrained_cfg
    return tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))), tuple(
        float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))
    )


def save_checkpoint(path, model, *, arch, classes, dataset, origination, args, code_version):
    """Write a self-describing model checkpoint (state_dict + metadata), atomically."""
    mean, std = normalization(model)
    atomic_torch_save(
        {
            "format": CHECKPOINT_FORMAT,
            "arch": arch,
            "num_classes": len(classes),
            "classes": list(classes),
            "dataset": dataset,
            "normalization": {"mean": list(mean), "std": list(std)},
            "origination": origination,
            "args": args,
            "code_version": code_version,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        },
        path,
    )


def init_identity(init):
    """What an `init` contributes to a run's identity: 'random' or 'in1k' as is, a checkpoint by its weights."""
    return init if init in ("random", "in1k") else weights_fingerprint(load_checkpoint(init))


def weights_fingerprint(ckpt):
    """sha1 of a checkpoint's architecture and weights (not of its file): the same teacher wherever it is stored."""
    h = hashlib.sha1(ckpt["arch"].encode())
    for name in sorted(ckpt["state_dict"]):
        t = ckpt["state_dict"][name].contiguous()
        h.update(name.encode() + str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def load_checkpoint(path):
    """Load one of this project's checkpoints with weights_only=True; CheckpointError says what is wrong."""
    if not str(path).strip():  # Path("") would be the current folder
        raise CheckpointError("checkpoint path is empty, expected a .pt file written by train_teacher.py")
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint '{path}' is {'a folder' if path.is_dir() else 'not a regular file'}, "
            "expected a .pt file written by train_teacher.py"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # empty or truncated file, pickled code, not a torch file at all
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint '{path}' cannot be loaded safely (weights_only=True): {reason}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"'{path}' is not a checkpoint of this project (expected format '{CHECKPOINT_FORMAT}'; "
            "use --pretrained-file for timm weights)"
        )
    problem = checkpoint_problem(ckpt)
    if problem:
        raise CheckpointError(f"checkpoint '{path}' is malformed: {problem}")
    return ckpt


def checkpoint_problem(ckpt):
    """What is missing or inconsistent in a checkpoint's metadata (None if nothing)."""
    if not isinstance(ckpt.get("arch"), str) or not is_known_arch(ckpt["arch"]):
        return f"its arch {ckpt.get('arch')!r} is not a timm architecture"
    k = ckpt.get("num_classes")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        return f"num_classes {k!r} is not a positive integer"
    if not isinstance(ckpt.get("classes"), list) or len(ckpt["classes"]) != k:
        return f"it lists {len(ckpt.get('classes') or [])} class names for {k} classes"
    norm = ckpt.get("normalization")
    ok = isinstance(norm, dict) and all(
        isinstance(norm.get(key), list) and len(norm[key]) == 3 for key in ("mean", "std")
    )
    if not ok or not all(isinstance(v, (int, float)) and v > 0 for v in norm["std"]):
        return "no valid normalization (mean and std, 3 values each)"
    if not isinstance(ckpt.get("state_dict"), dict) or not ckpt["state_dict"]:
        return "no weights (state_dict)"
    if not isinstance(ckpt.get("origination"), dict) or not isinstance(ckpt.get("dataset"), str):
        return "no origination or dataset"
    return None


@functools.lru_cache(maxsize=32)
def _stats(mean, std, device):
    return torch.tensor(mean, device=device).view(1, 3, 1, 1), torch.tensor(std, device=device).view(1, 3, 1, 1)


def is_convnet(model) -> bool:
    """Whether most of the model's weights are convolution kernels (then channels_last pays off on GPUs;
    a ViT's patch embedding is a convolution too, but a small share of its weights)."""
    conv = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    return conv > 0.5 * sum(p.numel() for p in model.parameters())


@torch.no_grad()
def one_pixel_convs(arch, image_size):
    """Names of the strided convolutions wider than 1x1 that see a 1x1 feature map when `arch` reads image_size px
    images (one probe forward of a random 2-class model on the CPU, thrown away after)."""
    model = timm.create_model(arch, pretrained=False, num_classes=2).eval()
    seen = []

    def record(name):
        return lambda conv, inputs, out: seen.append(name) if inputs[0].shape[-2:] == (1, 1) else None

    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d) and tuple(m.kernel_size) != (1, 1) and tuple(m.stride) != (1, 1):
            m.register_forward_hook(record(name))
    try:
        model(torch.zeros(1, 3, image_size, image_size))
    except RuntimeError:  # a model that cannot read this size: the run itself says so, in its own words
        return []
    return seen


def model_input(x, mean, std, channels_last=False):
    """uint8 [0,255] or float [0,1] images (B,3,H,W) -> float32 normalised with the model's own mean/std."""
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    mean, std = _stats(tuple(mean), tuple(std), x.device)
    x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.inference_mode()
def predict(model, images, norm, device, batch_size=256, amp=False, channels_last=False):
    """Logits (N,K) float32 on the CPU of `model` in eval mode for uint8 images (N,3,H,W)."""
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = model_input(images[i : i + batch_size].to(device, non_blocking=True), *norm, channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out.append(model(x).float().cpu())
    model.train(was_training)
    return torch.cat(out)
