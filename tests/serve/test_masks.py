"""Uploaded masks: OpenAI's kind (fully transparent pixels are edited) and zit's (white is
redrawn, as the page's brush mask sends it: opaque white strokes on black)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from zit_agent.agent.serve.work import openai_mask


def test_transparent_pixels_of_an_openai_mask_are_redrawn():
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[1:3, 2:4, 3] = 0  # the hole OpenAI edits
    mask = np.asarray(openai_mask(Image.fromarray(rgba, "RGBA")))
    assert mask.tolist() == (np.pad(np.full((2, 2), 255), ((1, 1), (2, 2)))).tolist()


def test_an_opaque_brush_mask_is_taken_as_zits_own():
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[0, :, :3] = 255  # white strokes: redraw
    mask = np.asarray(openai_mask(Image.fromarray(rgba, "RGBA")))
    assert mask[0].tolist() == [255] * 6 and mask[1:].max() == 0
    grey = np.asarray(openai_mask(Image.fromarray(np.full((2, 2), 200, np.uint8))))
    assert grey.tolist() == [[200, 200], [200, 200]]  # binarized at 128 when used
