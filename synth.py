"""Built-in procedural dataset ("synth"): a class hierarchy rendered on the fly, pure torch.

Hierarchy (calibrated so that what networks find most salient is the coarse level):
  coarse group  = colour family (hue; groups evenly spaced on the hue circle)
  fine class    = tone (a small hue offset inside the family) x stripe frequency (cycles per
                  object radius, so it survives zoom), the same attribute grid in every group
  sub-variant   = stripe orientation, v0 = 0 deg (vertical stripes), v1 = 90 deg, ... (never
                  named by src/fine/coarse labels; flip-safe: spread over 0..90 deg)
Stripes are a luminance pattern (same in every channel), so their detector is shared across
colour families. Nuisance per image: shape (3-6 lobes, depth), position, scale, rotation,
saturation/value and hue jitter, stripe phase and contrast, background gradient, random-colour
clutter blobs, brightness/contrast, pixel noise. Shape is a nuisance on purpose: CNNs at 32x32 learn it
slowest (a prototype with shape as a class cue got an inverted hierarchy / unlearned cue).

Views (each a pure function of (seed, view, split, sizes, style); one RNG stream per triple):
  src    all groups x classes_per_group fine classes, sub-variants mixed (ImageNet analog)
  fine   a subset of src classes, all classes of `fine_groups` groups: many close relatives per
         class (Pets analog: fine-grained, classes inside the pretraining data)
  coarse the same number of src classes spread over every group, `coarse_classes_per_group` per
         group: few relatives per class (CIFAR analog: coarse-grained, inside the pretraining data)
  novel  (fine class, sub-variant) pairs of some src classes: each class has one sibling that no
         pretraining label told apart (Cars / Finer-Grained Birds analog)
"""

import hashlib
import math
from dataclasses import dataclass

import torch

VIEWS = ("src", "fine", "coarse", "novel")
SPLITS = ("train", "test")
_HUE_NAMES = ["red", "orange", "yellow", "lime", "green", "teal", "cyan", "azure", "blue", "violet", "magenta", "pink"]


@dataclass(frozen=True)
class SynthStyle:
    """How hard each cue is. Defaults calibrated at the default sizes (32x32, timm resnet18d
    pretrained 5 epochs on src -> ~96% src test; 2-epoch fine-tune on fine -> ~93%, with ~58%
    of its wrong-class mass inside the true coarse group vs 22% chance)."""

    hue_jitter: float = 2.5  # deg, std of the object's hue around its class hue
    tone_step: float = 14.0  # deg between the tones of one group (groups: 360/G)
    stripe_freqs: tuple = (0.7, 1.1, 1.7)  # stripe cycles per object radius (one per level)
    lobe_amp: float = 0.3  # max lobe depth of the (nuisance) shape
    stripe_contrast: tuple = (0.25, 0.55)  # stripe amplitude (blend to white/black), uniform
    orient_jitter: float = 12.0  # deg, std of stripe orientation around its sub-variant
    scale: tuple = (0.3, 0.7)  # object radius / half image width: wider than the
    # frequency ratio, so pixel period alone is ambiguous
    shift: float = 0.25  # max centre offset (fraction of half width)
    clutter: int = 3  # random-colour blobs in the background
    clutter_alpha: float = 0.6  # max opacity of a blob
    noise: float = 0.04  # pixel noise std (in [0,1] units)


def _stream_seed(seed, view, split):
    h = hashlib.sha256(f"synth|{seed}|{view}|{split}".encode()).digest()
    return int.from_bytes(h[:8], "little") & (2**63 - 1)


def _hsv(h, s, v):
    """Vectorised HSV -> RGB; h in degrees, any shape; returns (..., 3)."""
    out = []
    for n in (5.0, 3.0, 1.0):
        k = (n + h / 60.0) % 6.0
        out.append(v - v * s * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(out, -1)


def class_names(groups, classes_per_group, n_freq=3):
    """src class c = g * classes_per_group + f; f -> (tone f // n_freq, stripe level f % n_freq)."""
    freq = ["wide", "mid", "thin"] if n_freq == 3 else [f"s{j}" for j in range(n_freq)]
    return [
        f"g{g}-{_HUE_NAMES[int(g * 12 / groups + 0.5) % 12]}/t{f // n_freq}-{freq[f % n_freq]}"
        for g in range(groups)
        for f in range(classes_per_group)
    ]


def _render(g, group, fine, sub, groups, classes_per_group, subvariants, size, st, chunk=1024):
    """Render one image per entry of the (N,) class-attribute tensors `group`, `fine`, `sub`."""
    n = group.numel()
    u = lambda lo, hi, *s: lo + (hi - lo) * torch.rand(n, *s, generator=g)
    nf = len(st.stripe_freqs)
    tones = -(-classes_per_group // nf)
    # per-image parameters, all drawn up front so chunking never changes the result
    tone = (fine // nf).float() - (tones - 1) / 2
    hue = group.float() * (360.0 / groups) + tone * st.tone_step + torch.randn(n, generator=g) * st.hue_jitter
    obj = _hsv(hue, u(0.55, 1.0), u(0.55, 1.0))  # (n,3)
    freq = torch.tensor(st.stripe_freqs, dtype=torch.float32)[fine % nf]
    lobes = torch.randint(3, 7, (n,), generator=g).float()
    amp = u(0.0, st.lobe_amp)
    # sub-variants spread over 0..90 deg so a horizontal flip (theta -> 180 - theta) never maps
    # one sub-variant onto another
    step = 90.0 / max(subvariants - 1, 1)
    orient = (sub.float() * step + torch.randn(n, generator=g) * st.orient_jitter) * (math.pi / 180)
    cx, cy = u(-st.shift, st.shift), u(-st.shift, st.shift)
    r0, rot, phase = u(*st.scale), u(0, 2 * math.pi), u(0, 2 * math.pi)
    contrast = u(*st.stripe_contrast)
    bg0 = _hsv(u(0, 360), u(0, 0.35), u(0.15, 0.85))
    bg1 = _hsv(u(0, 360), u(0, 0.35), u(0.15, 0.85))
    bgdir = u(0, 2 * math.pi)
    nb = st.clutter
    bc = _hsv(u(0, 360, nb), u(0.2, 0.9, nb), u(0.2, 0.95, nb))  # (n,nb,3)
    bxy, brad, balpha = u(-1, 1, nb, 2), u(0.08, 0.3, nb), u(0.0, st.clutter_alpha, nb)
    gain, bias = u(0.8, 1.2), u(-0.08, 0.08)
    ax = (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0
    y, x = ax.view(1, size, 1), ax.view(1, 1, size)
    edge = 1.2 / size  # ~0.6 px soft edge
    out = torch.empty(n, 3, size, size, dtype=torch.uint8)
    for a in range(0, n, chunk):
        s = slice(a, min(a + chunk, n))
        c3 = lambda t, s=s: t[s].view(-1, 1, 1)
        dx, dy = x - c3(cx), y - c3(cy)
        radius = c3(r0) * (1 + c3(amp) * torch.cos(c3(lobes) * (torch.atan2(dy, dx) - c3(rot))))
        mask = torch.sigmoid((radius - torch.sqrt(dx * dx + dy * dy)) / edge).unsqueeze(1)
        t = (dx * c3(torch.cos(orient)) + dy * c3(torch.sin(orient))) / c3(r0)
        # luminance stripes: multiplicative ones were per-colour and learned per group
        stripe = c3(contrast) * (0.5 + 0.5 * torch.sin(2 * math.pi * c3(freq) * t + c3(phase)))
        fg = obj[s].view(-1, 3, 1, 1) * (1 - c3(contrast)).unsqueeze(1) + stripe.unsqueeze(1)
        w = (0.5 + 0.35 * (x * c3(torch.cos(bgdir)) + y * c3(torch.sin(bgdir)))).unsqueeze(1)
        bg = bg0[s].view(-1, 3, 1, 1) * (1 - w) + bg1[s].view(-1, 3, 1, 1) * w
        for j in range(nb):
            d2 = (x - bxy[s, j, 0].view(-1, 1, 1)) ** 2 + (y - bxy[s, j, 1].view(-1, 1, 1)) ** 2
            al = balpha[s, j].view(-1, 1, 1) * torch.exp(-d2 / (2 * brad[s, j].view(-1, 1, 1) ** 2))
            bg = torch.lerp(bg, bc[s, j].view(-1, 3, 1, 1), al.unsqueeze(1))
        img = torch.lerp(bg, fg, mask) * gain[s].view(-1, 1, 1, 1) + bias[s].view(-1, 1, 1, 1)
        img = img + st.noise * torch.randn(img.shape, generator=g)
        out[s] = (img.clamp_(0, 1) * 255).round_().to(torch.uint8)
    return out


def make_synth(
    view: str,
    split: str,
    *,
    seed: int = 0,
    image_size: int = 32,
    groups: int = 8,
    classes_per_group: int = 6,
    subvariants: int = 2,
    src_train_per_class: int = 200,
    target_train_per_class: int = 60,
    test_per_class: int = 60,
    fine_groups: int = 4,
    novel_groups: int = 4,
    novel_classes_per_group: int = 3,
    coarse_classes_per_group: int = 3,
    style: SynthStyle | None = None,
):
    """Return (images uint8 (N,3,H,W), labels int64 (N,), class names, coarse group per class, src class
    per class).

    Images are ordered by label. `fine` = all classes of groups 0..fine_groups-1; `coarse` = the first
    coarse_classes_per_group classes of every group; `novel` = (class, sub-variant) for the first
    novel_classes_per_group classes of the last novel_groups groups (two novel classes with the same src
    class are siblings).
    """
    if view not in VIEWS:
        raise ValueError(f"unknown synth view {view!r}; expected one of {', '.join(VIEWS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown synth split {split!r}; expected 'train' or 'test'")
    G, C, S = groups, classes_per_group, subvariants
    problem = _size_problem(view, G, C, S, fine_groups, novel_groups, novel_classes_per_group, coarse_classes_per_group)
    if problem:
        raise ValueError(f"synth sizes out of range ({problem})")
    st = style or SynthStyle()
    src_names = class_names(G, C, len(st.stripe_freqs))
    per = test_per_class if split == "test" else (src_train_per_class if view == "src" else target_train_per_class)
    if view == "src":
        cls, sub = list(range(G * C)), [-1] * (G * C)
    elif view == "fine":
        cls = list(range(fine_groups * C))
        sub = [-1] * len(cls)
    elif view == "coarse":
        cls = [g * C + f for g in range(G) for f in range(coarse_classes_per_group)]
        sub = [-1] * len(cls)
    else:  # novel
        cls, sub = [], []
        for g in range(G - novel_groups, G):
            for f in range(novel_classes_per_group):
                cls += [g * C + f] * S
                sub += list(range(S))
    names = [src_names[c] + (f"/v{v}" if v >= 0 else "") for c, v in zip(cls, sub)]
    cgroup = [c // C for c in cls]
    gen = torch.Generator().manual_seed(_stream_seed(seed, view, split))
    K = len(names)
    labels = torch.arange(K).repeat_interleave(per)
    c = torch.tensor(cls)[labels]
    group, fine = c // C, c % C
    subv = torch.tensor(sub)[labels]
    subv = torch.where(subv < 0, torch.randint(0, S, (labels.numel(),), generator=gen), subv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core is fast enough; OpenMP on a busy CPU was 6-10x slower
    try:
        images = _render(gen, group, fine, subv, G, C, S, image_size, st)
    finally:
        torch.set_num_threads(threads)
    return images, labels, names, cgroup, cls


def _size_problem(view, G, C, S, fine_groups, novel_groups, novel_classes_per_group, coarse_classes_per_group):
    """What is wrong with a combination of sizes (None: nothing)."""
    if not (
        G >= 1
        and C >= 1
        and S >= 1
        and 1 <= fine_groups <= G
        and 1 <= novel_groups <= G
        and 1 <= novel_classes_per_group <= C
    ):
        return "need 1 <= fine_groups, novel_groups <= groups, 1 <= novel_classes_per_group <= classes_per_group"
    if view == "coarse" and not 1 <= coarse_classes_per_group <= C:
        return "need 1 <= coarse_classes_per_group <= classes_per_group"
    return None


def check_sizes(sizes, view=None):
    """ValueError naming --synth for an unknown key, a value that is not a positive integer, or sizes that do
    not fit together (for `view`)."""
    import inspect

    params = inspect.signature(make_synth).parameters
    valid = [k for k, p in params.items() if p.kind == p.KEYWORD_ONLY and k != "style"]
    for key, value in sizes.items():
        if key not in valid:
            raise ValueError(f"--synth: unknown key '{key}' (expected one of {', '.join(valid)})")
        low = 0 if key == "seed" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"--synth {key}: expected an integer >= {low}, got {value!r}")
        if key == "image_size" and not 8 <= value <= 1024:
            raise ValueError(f"--synth image_size: expected an integer in [8, 1024], got {value}")
    s = {**{k: params[k].default for k in valid}, **sizes}
    problem = _size_problem(
        view,
        s["groups"],
        s["classes_per_group"],
        s["subvariants"],
        s["fine_groups"],
        s["novel_groups"],
        s["novel_classes_per_group"],
        s["coarse_classes_per_group"],
    )
    if problem:
        raise ValueError(f"--synth: sizes out of range ({problem})")
