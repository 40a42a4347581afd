"""Scorers for comparisons: ``(image, prompt) -> float``, higher is better.

A scorer is any callable taking a PIL image and its prompt. This module ships only
technical measures that need no model weights; they say nothing about beauty or about
how well an image follows its prompt. For those, wrap a learned scorer (CLIPScore,
ImageReward, HPSv2 — each downloads its weights on first use) in a function of the same
shape; the README's "Compare" section shows how.
"""

from __future__ import annotations

from PIL import Image, ImageMath

__all__ = ["sharpness"]

_MAX_SIDE = 1024


def _mean(image: Image.Image) -> float:
    # a box filter down to one pixel is the exact mean, computed in C
    return float(image.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0)))  # type: ignore[arg-type]


def sharpness(image: Image.Image, prompt: str = "") -> float:
    """Variance of the Laplacian of the grey image: a technical measure of fine detail.

    Higher means more edges and texture (a blurred or flat image scores near 0; noise
    scores high too). It ignores ``prompt``; use it to spot blurry or empty results,
    not to judge quality. Images larger than 1024 px on a side are measured at that size,
    so scores are comparable between sizes.
    """
    grey = image.convert("L")
    if max(grey.size) > _MAX_SIDE:
        grey.thumbnail((_MAX_SIDE, _MAX_SIDE), Image.Resampling.BILINEAR)
    w, h = grey.size
    if w < 3 or h < 3:
        return 0.0
    g = grey.convert("F")
    # the 4-neighbour Laplacian of the inner pixels, in floating point (no clipping)
    laplacian = ImageMath.lambda_eval(
        lambda a: a["up"] + a["down"] + a["left"] + a["right"] - a["centre"] * 4,
        centre=g.crop((1, 1, w - 1, h - 1)),
        up=g.crop((1, 0, w - 1, h - 2)),
        down=g.crop((1, 2, w - 1, h)),
        left=g.crop((0, 1, w - 2, h - 1)),
        right=g.crop((2, 1, w, h - 1)),
    )
    assert isinstance(laplacian, Image.Image)
    squared = ImageMath.lambda_eval(lambda a: a["x"] * a["x"], x=laplacian)
    assert isinstance(squared, Image.Image)
    mean = _mean(laplacian)
    return max(0.0, _mean(squared) - mean * mean)
