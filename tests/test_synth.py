"""The built-in procedural dataset: API, determinism, disjoint splits, and the class hierarchy."""

import pytest
import torch

from synth import SynthStyle, make_synth

SMALL = dict(src_train_per_class=6, target_train_per_class=5, test_per_class=4)


@pytest.mark.parametrize("view", ["src", "fine", "coarse", "novel"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_shapes_dtypes_and_balanced_labels(view, split):
    x, y, names, groups, sources = make_synth(view, split, **SMALL)
    K = len(names)
    assert x.dtype == torch.uint8 and x.shape[1:] == (3, 32, 32)
    assert y.dtype == torch.int64 and y.shape == (x.shape[0],)
    assert len(groups) == len(sources) == K and all(0 <= g < 8 for g in groups) and all(0 <= c < 48 for c in sources)
    assert len(set(names)) == K
    counts = torch.bincount(y, minlength=K)
    assert int(y.min()) == 0 and int(y.max()) == K - 1 and bool((counts == counts[0]).all())
    assert {"src": 48, "fine": 24, "coarse": 24, "novel": 24}[view] == K


def test_default_sizes_and_other_resolution():
    x, y, names, _, _ = make_synth("src", "train", src_train_per_class=2, image_size=24)
    assert x.shape == (96, 3, 24, 24)
    x, _, names, _, _ = make_synth("fine", "test", test_per_class=3, groups=6, classes_per_group=3, fine_groups=2)
    assert len(names) == 6 and x.shape[0] == 18


def test_deterministic_and_seeded():
    a = make_synth("fine", "train", **SMALL)
    b = make_synth("fine", "train", **SMALL)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2:] == b[2:]
    c = make_synth("fine", "train", seed=1, **SMALL)
    assert not torch.equal(a[0], c[0]) and a[2:] == c[2:]  # same classes, other images


def test_splits_and_views_share_no_image():
    seen = {}
    for view in ["src", "fine", "coarse", "novel"]:
        for split in ["train", "test"]:
            x = make_synth(view, split, **SMALL)[0]
            for img in x:
                key = img.numpy().tobytes()
                assert key not in seen, f"{view}/{split} repeats an image of {seen.get(key)}"
                seen[key] = (view, split)


def test_class_relationships_between_views():
    _, _, src, src_g, src_c = make_synth("src", "test", **SMALL)
    _, _, fine, fine_g, fine_c = make_synth("fine", "test", **SMALL)
    _, _, novel, novel_g, novel_c = make_synth("novel", "test", **SMALL)
    _, _, coarse, coarse_g, coarse_c = make_synth("coarse", "test", **SMALL)
    assert src_c == list(range(48)) and [src[c] for c in fine_c] == fine and [src[c] for c in coarse_c] == coarse
    group_of = dict(zip(src, src_g))
    # fine-grained: a subset of src classes, all 6 classes of each of 4 groups (5 relatives per class)
    assert all(group_of[n] == g for n, g in zip(fine, fine_g))
    assert sorted(set(fine_g)) == [0, 1, 2, 3] and all(fine_g.count(g) == 6 for g in set(fine_g))
    # coarse-grained: as many src classes, spread over all 8 groups, 3 each (2 relatives per class)
    assert all(group_of[n] == g for n, g in zip(coarse, coarse_g))
    assert sorted(set(coarse_g)) == list(range(8)) and all(coarse_g.count(g) == 3 for g in set(coarse_g))
    # novel: each class is (src class, sub-variant); every src class appears with all its variants
    bases = [n.rsplit("/", 1)[0] for n in novel]
    assert all(group_of[b] == g for b, g in zip(bases, novel_g))
    assert all(bases.count(b) == 2 for b in bases) and [src[c] for c in novel_c] == bases
    assert [n.rsplit("/", 1)[1] for n in novel] == ["v0", "v1"] * (len(novel) // 2)


def _per_class(stat, y, K):
    return torch.stack([stat[y == k].mean(0) for k in range(K)])


def _object_chroma(xf):
    """Colour of the saturated pixels (the object), grey removed, unit length: (N, 3)."""
    w = (xf.amax(1) - xf.amin(1)) ** 4
    col = (xf * w[:, None]).sum((2, 3)) / w.sum((1, 2))[:, None]
    chroma = col - col.mean(1, keepdim=True)
    return chroma / chroma.norm(dim=1, keepdim=True)


def _stripe_energy(xf):
    """Mean |Laplacian|: rises with stripe frequency, blind to stripe orientation: (N,)."""
    return (
        (4 * xf[..., 1:-1, 1:-1] - xf[..., :-2, 1:-1] - xf[..., 2:, 1:-1] - xf[..., 1:-1, :-2] - xf[..., 1:-1, 2:])
        .abs()
        .mean((1, 2, 3))
    )


def test_hierarchy_colour_is_coarse_stripes_are_fine():
    x, y, names, groups, _ = make_synth("src", "train", src_train_per_class=30)
    xf, g, K = x.float() / 255, torch.tensor(groups), len(names)
    # coarse: every class's nearest other class (by object colour) lies in its own group, and
    # same-group classes are on average far closer than cross-group ones
    chroma = _per_class(_object_chroma(xf), y, K)
    d = torch.cdist(chroma, chroma)
    same, off = g[:, None] == g[None, :], ~torch.eye(K, dtype=torch.bool)
    assert bool((g[d.masked_fill(~off, float("inf")).argmin(1)] == g).all())
    assert d[same & off].mean() < 0.25 * d[~same].mean()
    # fine: stripe energy rises wide < mid < thin inside every (group, tone)
    hf = _per_class(_stripe_energy(xf), y, K).view(-1, 3)  # rows: (group, tone); cols: levels
    assert bool((hf[:, 0] < hf[:, 1]).all() and (hf[:, 1] < hf[:, 2]).all())


def test_hidden_subvariant_is_stripe_orientation():
    x, y, names, _, _ = make_synth("novel", "train", target_train_per_class=30)
    xf, K = x.float() / 255, len(names)
    # an orientation statistic separates the two sub-variants of every class: v0 has vertical
    # stripes (horizontal gradients dominate), v1 horizontal ones
    gx = (xf[..., :, 1:] - xf[..., :, :-1]).abs().mean((1, 2, 3))
    gy = (xf[..., 1:, :] - xf[..., :-1, :]).abs().mean((1, 2, 3))
    ratio = _per_class((gx / gy).log(), y, K).view(-1, 2)  # rows: base class; cols: v0, v1
    assert bool((ratio[:, 0] > 0.03).all() and (ratio[:, 1] < -0.03).all())
    # blind to orientation (colour + stripe energy), siblings are each other's nearest class
    feat = _per_class(torch.cat([_object_chroma(xf), 100 * _stripe_energy(xf)[:, None]], 1), y, K)
    d = torch.cdist(feat, feat).fill_diagonal_(float("inf"))
    assert (d.argmin(1) == torch.arange(K) ^ 1).float().mean() >= 0.9


def test_style_knobs_change_images():
    """Pixel noise and clutter are most of the images' fine-scale energy: without them it drops by far."""
    a = make_synth("fine", "test", test_per_class=4)[0].float() / 255
    b = make_synth("fine", "test", test_per_class=4, style=SynthStyle(noise=0.0, clutter=0))[0].float() / 255
    assert a.shape == b.shape
    assert _stripe_energy(b).mean() < 0.4 * _stripe_energy(a).mean()


def test_class_relations_of_each_view():
    """data.class_relations: same coarse group for every view; siblings (same src class) only in novel."""
    import data

    sizes = dict(SMALL, test_per_class=1)
    fine = data.class_relations(data.load_split("synth-fine", "test", "unused", synth=sizes))
    novel = data.class_relations(data.load_split("synth-novel", "test", "unused", synth=sizes))
    coarse = data.class_relations(data.load_split("synth-coarse", "test", "unused", synth=sizes))
    assert set(fine) == set(coarse) == {"group"} and set(novel) == {"group", "sibling"}
    assert fine["group"].sum(1).tolist() == [5] * 24 and coarse["group"].sum(1).tolist() == [2] * 24
    assert novel["sibling"].sum(1).tolist() == [1] * 24 and bool(novel["sibling"][0, 1])
    assert not fine["group"].diagonal().any()


@pytest.mark.parametrize("view,split", [("imagenet", "train"), ("fine", "val"), ("", "test")])
def test_bad_view_or_split_raises(view, split):
    with pytest.raises(ValueError, match="synth"):
        make_synth(view, split)


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match="out of range"):
        make_synth("fine", "train", fine_groups=9)
