"""Clip transforms against PIL (colour ops), torch.rot90 / shifts (geometry) and hand maths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from xvit.data.transforms import (
    AutoAugment,
    EvalTransform,
    Mixup,
    RandAugment,
    RandomErasing,
    TrainTransform,
    apply_op,
    normalize,
    one_hot,
    resize_short_side,
    spatial_crops,
)


def _clip(t=3, h=20, w=24, seed=0):
    return torch.randint(
        0, 256, (t, 3, h, w), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8
    )


def _pil(frame: torch.Tensor) -> Image.Image:
    return Image.fromarray(frame.permute(1, 2, 0).numpy())


def _from_pil(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float()


@pytest.mark.parametrize(
    "name, magnitude, reference",
    [
        ("Equalize", 0, ImageOps.equalize),
        ("Posterize", 3, lambda im: ImageOps.posterize(im, 3)),
        ("Solarize", 100.0, lambda im: ImageOps.solarize(im, 100)),
        ("Invert", 0, ImageOps.invert),
        ("AutoContrast", 0, ImageOps.autocontrast),
    ],
)
def test_colour_ops_match_pil_on_every_frame(name, magnitude, reference):
    clip = _clip()
    clip[1, :, :5] = 7  # a constant block so equalize/autocontrast see repeated values
    out = apply_op(clip.float(), name, magnitude)
    for t in range(clip.shape[0]):
        expected = _from_pil(reference(_pil(clip[t])))
        # AutoContrast: PIL rounds through a lookup table, we compute in float.
        tol = 1.0 if name == "AutoContrast" else 0.0
        assert (out[t].round() - expected).abs().max() <= tol, name


def test_brightness_contrast_color_hand_computed():
    clip = torch.full((2, 3, 4, 4), 100.0)
    clip[:, 0] = 200.0
    assert torch.equal(apply_op(clip, "Brightness", 0.5), (clip * 1.5).clamp(0, 255))
    gray = 0.2989 * 200 + 0.587 * 100 + 0.114 * 100
    assert torch.allclose(apply_op(clip, "Color", -1.0), torch.full_like(clip, gray))  # factor 0
    assert torch.allclose(apply_op(clip, "Contrast", -1.0), torch.full_like(clip, gray))  # the mean


def test_geometric_ops_exact():
    clip = _clip(t=2, h=9, w=9).float()
    # 90 degrees counter-clockwise about the centre == torch.rot90 (exact with nearest).
    assert torch.equal(apply_op(clip, "Rotate", 90.0), torch.rot90(clip, 1, dims=(-2, -1)))
    # Translate right by 3 pixels; the uncovered band is filled.
    out = apply_op(clip, "TranslateX", 3.0, fill=0.0)
    assert torch.equal(out[..., 3:], clip[..., :-3]) and (out[..., :3] == 0).all()
    out = apply_op(clip, "TranslateY", -2.0, fill=128.0)
    assert torch.equal(out[..., :-2, :], clip[..., 2:, :]) and (out[..., -2:, :] == 128).all()
    # ShearX by 1 about the centre row: row r moves by (r - 4) pixels.
    out = apply_op(clip, "ShearX", 1.0, fill=0.0)
    assert torch.equal(out[..., 4, :], clip[..., 4, :])
    assert torch.equal(out[..., 5, :-1], clip[..., 5, 1:])


def test_same_augmentation_for_every_frame():
    frame = _clip(t=1, h=32, w=32)
    clip = frame.repeat(6, 1, 1, 1)
    for aug in (RandAugment(num_ops=3, magnitude=15), AutoAugment()):
        for seed in range(10):
            out = aug(clip.float(), torch.Generator().manual_seed(seed))
            assert (out == out[:1]).all()
    train = TrainTransform(crop_size=24, flip=True, augment="rand-m9-n2", erase_prob=1.0)
    for seed in range(10):
        out = train(clip, torch.Generator().manual_seed(seed))
        assert out.shape == (3, 6, 24, 24) and (out == out[:, :1]).all()


def test_train_transform_deterministic_and_flip_off():
    clip = _clip(t=4, h=40, w=60)
    a = TrainTransform(32, augment="autoaugment")(clip, torch.Generator().manual_seed(3))
    b = TrainTransform(32, augment="autoaugment")(clip, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    # A left-dark / right-bright clip stays that way when flipping is off.
    grad = torch.arange(60, dtype=torch.float32).mul(4).expand(4, 3, 40, 60).to(torch.uint8)
    for seed in range(8):
        out = TrainTransform(32, scale=(32, 40), flip=False)(grad, torch.Generator().manual_seed(seed))
        assert (out[..., -1] > out[..., 0]).all()
    flipped = [
        TrainTransform(32, scale=(32, 40), flip=True)(grad, torch.Generator().manual_seed(s))
        for s in range(16)
    ]
    assert any((o[..., -1] < o[..., 0]).all() for o in flipped)


def test_scale_jitter_crop_matches_resize_then_crop():
    """The cheap crop-then-resize equals resizing the whole frame and cropping (smooth image)."""
    y, x = torch.meshgrid(torch.arange(60.0), torch.arange(90.0), indexing="ij")
    img = (100 + 60 * torch.sin(x / 9) * torch.cos(y / 7)).expand(2, 3, 60, 90).round().to(torch.uint8)
    g = torch.Generator().manual_seed(0)
    out = TrainTransform(48, scale=(72, 72), flip=False, mean=(0, 0, 0), std=(1, 1, 1))(img, g)
    g = torch.Generator().manual_seed(0)
    torch.randint(72, 73, (), generator=g)  # the scale draw
    top, left = (
        int(torch.randint(0, 72 - 48 + 1, (), generator=g)),
        int(torch.randint(0, 108 - 48 + 1, (), generator=g)),
    )
    ref = resize_short_side(img, 72)[..., top : top + 48, left : left + 48] / 255
    assert (out.transpose(0, 1) - ref).abs().max() < 0.03


def test_eval_crops_left_centre_right_and_normalisation():
    clip = torch.arange(10, dtype=torch.uint8).repeat_interleave(3)[None, None, None].expand(2, 3, 6, 30)
    crops = spatial_crops(clip, 6, 3)
    assert crops.shape == (3, 2, 3, 6, 6)
    assert crops[0, 0, 0, 0].tolist() == [0, 0, 0, 1, 1, 1]  # left
    assert crops[1, 0, 0, 0].tolist() == [4, 4, 4, 5, 5, 5]  # centre (offset 12)
    assert crops[2, 0, 0, 0].tolist() == [8, 8, 8, 9, 9, 9]  # right
    tall = clip.transpose(-1, -2)  # portrait: top / middle / bottom
    assert spatial_crops(tall, 6, 3)[2, 0, 0, :, 0].tolist() == [8, 8, 8, 9, 9, 9]
    out = EvalTransform(crop_size=8, num_crops=3, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))(
        torch.full((2, 3, 8, 40), 255, dtype=torch.uint8)
    )
    assert out.shape == (3, 3, 2, 8, 8) and torch.allclose(out, torch.ones_like(out))
    x = torch.tensor([0.0, 51.0, 255.0]).view(1, 3, 1, 1)
    n = normalize(x, (0.0, 0.1, 0.5), (1.0, 0.2, 0.25))
    assert torch.allclose(n.flatten(), torch.tensor([0.0, 0.5, 2.0]))


def test_random_erasing_box_same_for_all_frames():
    clip = torch.zeros(3, 5, 16, 16)
    out = RandomErasing(prob=1.0, mode="pixel")(clip, torch.Generator().manual_seed(0))
    mask = out != 0
    assert mask.any() and (mask == mask[:, :1]).all()
    area = mask[0, 0].sum().item()
    assert 0.02 * 256 * 0.5 <= area <= 256 / 3 * 1.5


def test_mixup_and_cutmix_targets():
    videos = torch.stack([torch.full((3, 2, 8, 8), float(i)) for i in range(4)])
    labels = torch.tensor([0, 1, 2, 3])
    assert torch.allclose(one_hot(labels, 4, 0.1)[0], torch.tensor([0.925, 0.025, 0.025, 0.025]))
    mixed, targets = Mixup(4, mixup_alpha=0.4, label_smoothing=0.0)(
        videos, labels, torch.Generator().manual_seed(1)
    )
    # sample 0 mixes with sample 3: value = 0 * lam + 3 * (1 - lam)
    lam = 1 - float(mixed[0].mean()) / 3
    assert torch.allclose(mixed[1], torch.full_like(mixed[1], 1 * lam + 2 * (1 - lam)))
    assert torch.allclose(targets[0], torch.tensor([lam, 0, 0, 1 - lam]), atol=1e-6)
    assert torch.allclose(targets.sum(1), torch.ones(4))
    mixed, targets = Mixup(4, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.1)(
        videos, labels, torch.Generator().manual_seed(2)
    )
    pasted = (mixed[0] == 3).float().mean().item()  # fraction of sample 0 replaced by sample 3
    assert (mixed[0] == mixed[0][:, :1]).all()  # same box in every frame
    expected = (1 - pasted) * one_hot(labels[:1], 4, 0.1)[0] + pasted * one_hot(labels[3:], 4, 0.1)[0]
    assert torch.allclose(targets[0], expected, atol=1e-6)
