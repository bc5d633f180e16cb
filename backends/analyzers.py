"""Image analyzers: images in, per-image observations out (plain data), beside the embedders.

An embedder sees a whole image as one vector (layout); an analyzer reports what is *in* the image.
The built-in `faces` analyzer uses dlib's models as shipped in `face-recognition-models` (CC0) with
the `dlib-bin` wheels, no download at run time:

1. the HOG frontal face detector (`dlib.get_frontal_face_detector`), run on a copy downscaled to
   DETECT_SIZE on its long side, upsampled once (smallest face found: about 40 px of that copy,
   6% of the long side), detections scoring below DETECT_THRESHOLD dropped;
2. the 5-point landmark model (eye corners and the base of the nose) on the full-size image;
3. the 128-d face-identity ResNet (`dlib_face_recognition_resnet_model_v1`): two descriptors closer
   than 0.6 (Euclidean) are the same person (dlib: 99.38% on LFW).

From the box and landmarks it derives the shot size (`shot_bin`), framing (`framing_bin`) and head
pose (`head_pose`: yaw, pitch and roll in degrees). The 68-point landmark model is never used: its
training data (iBUG 300-W) bars commercial use.

`load_analyzer(name)` builds one by name (`faces`, or a package's through the entry point group
`zit_agent.analyzers`); a plugin implements `Analyzer`: `name` and `analyze(images)`.
"""

from __future__ import annotations

import importlib.util
import math
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from zit_agent.errors import UserError

if TYPE_CHECKING:
    from PIL import Image

    from zit_agent.settings import Settings

ANALYZER_HELP = "use faces (needs dlib-bin and face-recognition-models) or none"
INSTALL_HINT = "pip install dlib-bin face-recognition-models (zit-agent's own install brings them)"
DETECT_SIZE = 640  # the detector's copy: long side in pixels
DETECT_UPSAMPLE = 1
# HOG detection scores: real faces in the test photographs score 1.09-2.24; the one false
# detection seen (on scikit-image's astronaut photograph, a patch on the suit) 0.12.
DETECT_THRESHOLD = 0.5
MODEL_FILES = {
    "shape_5": "shape_predictor_5_face_landmarks.dat",
    "resnet": "dlib_face_recognition_resnet_model_v1.dat",
}

# -- shot size: the face box's height over the image height (see docs/ruts.md) --------------------
# dlib's HOG box spans roughly brows to chin, about 0.65 of a head's height. With a figure of about
# 7.5 heads: a close-up frames the head and shoulders (about 1.8 heads: 0.65 / 1.8 = 0.36), a medium
# close-up the chest up (about 3 heads: 0.22), a medium shot the waist up (about 4 to 5 heads: 0.14),
# a full shot the whole figure with margins (about 9 heads: 0.07). Edges sit between those.
ShotBin = Literal["extreme close-up", "close-up", "medium close-up", "medium shot", "wide shot"]
SHOT_EDGES: list[tuple[float, ShotBin]] = [
    (0.50, "extreme close-up"),
    (0.28, "close-up"),
    (0.18, "medium close-up"),
    (0.10, "medium shot"),
    (0.0, "wide shot"),
]
FramingBin = Literal["left", "centre", "right"]
YawBin = Literal["frontal", "three-quarter", "profile"]
PitchBin = Literal["high angle", "eye level", "low angle"]
YAW_EDGES = (20.0, 50.0)  # |yaw| below 20 degrees frontal, below 50 three-quarter, else profile
PITCH_EDGE = 15.0  # pitch above +15 degrees: seen from above (high angle); below -15: low angle
# Head geometry for the pose (in inter-ocular distances, eye centre to eye centre):
# NOSE_DROP: the base of the nose below the eye line, seen frontally: 0.75, measured here on the
# frontal test photographs (0.74-0.78); NOSE_DEPTH: the base of the nose in front of the eye
# corners: 0.4 (about 25 mm for a 62 mm inter-ocular distance, an anthropometric estimate).
NOSE_DROP = 0.75
NOSE_DEPTH = 0.4


class Face(BaseModel):
    """One face found in an image (pixel coordinates of the image as given)."""

    box: list[int] = Field(description="left, top, right, bottom in pixels")
    score: float = Field(description="the detector's confidence")
    landmarks: list[list[float]] = Field(default_factory=list, description="5 points (x, y)")
    descriptor: list[float] = Field(default_factory=list, description="128-d identity vector")
    yaw: float = Field(0.0, description="degrees; + the nose turned toward the image's right")
    pitch: float = Field(0.0, description="degrees; + seen from above (high angle)")
    roll: float = Field(0.0, description="degrees; the eye line's tilt")
    height_ratio: float = Field(description="box height over image height")
    shot: ShotBin
    framing: FramingBin
    yaw_bin: YawBin
    pitch_bin: PitchBin


class Observation(BaseModel):
    """What an analyzer saw in one image."""

    analyzer: str
    width: int
    height: int
    faces: list[Face] = Field(default_factory=list)

    @property
    def main_face(self) -> Face | None:
        """The largest face: the one a shot size is read from."""
        return max(self.faces, key=lambda f: f.box[3] - f.box[1], default=None)


@runtime_checkable
class Analyzer(Protocol):
    name: str

    def analyze(self, images: list[Image.Image]) -> list[Observation]: ...


# -- derived bins ----------------------------------------------------------------------------------
def shot_bin(height_ratio: float) -> ShotBin:
    for edge, name in SHOT_EDGES:
        if height_ratio >= edge:
            return name
    return "wide shot"


def framing_bin(centre_x: float, width: int) -> FramingBin:
    """Which third of the width holds the face's centre."""
    third = centre_x / max(width, 1) * 3
    return "left" if third < 1 else "right" if third >= 2 else "centre"


def yaw_bin(yaw: float) -> YawBin:
    return (
        "frontal"
        if abs(yaw) < YAW_EDGES[0]
        else "three-quarter"
        if abs(yaw) < YAW_EDGES[1]
        else "profile"
    )


def pitch_bin(pitch: float) -> PitchBin:
    return (
        "high angle" if pitch > PITCH_EDGE else "low angle" if pitch < -PITCH_EDGE else "eye level"
    )


def head_pose(points: list[list[float]]) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from dlib's 5 landmarks: two corners of each eye, then the
    base of the nose.

    The points are turned so the eye line is level (roll). With e the inter-ocular distance (eye
    centre to eye centre, as seen) and (dx, dy) the nose base's offset from the eyes' midpoint:
    a head turned by yaw y shows dx / e = NOSE_DEPTH * tan(y) (the eye distance shrinks by cos y);
    tilted by pitch p it shows dy / e * cos(y) = NOSE_DROP * cos(p) + NOSE_DEPTH * sin(p).
    A weak-perspective estimate: good to bins, not to degrees."""
    (x0, y0), (x1, y1), (x2, y2), (x3, y3), (xn, yn) = points[:5]
    first = ((x0 + x1) / 2, (y0 + y1) / 2)
    second = ((x2 + x3) / 2, (y2 + y3) / 2)
    if first[0] > second[0]:
        first, second = second, first  # the eye on the image's left first
    ex, ey = second[0] - first[0], second[1] - first[1]
    distance = math.hypot(ex, ey)
    if distance < 1e-6:
        return 0.0, 0.0, 0.0
    roll = math.degrees(math.atan2(ey, ex))
    mx, my = (first[0] + second[0]) / 2, (first[1] + second[1]) / 2
    cos_r, sin_r = ex / distance, ey / distance
    dx = ((xn - mx) * cos_r + (yn - my) * sin_r) / distance
    dy = (-(xn - mx) * sin_r + (yn - my) * cos_r) / distance
    yaw = math.degrees(math.atan2(dx, NOSE_DEPTH))
    reach = math.hypot(NOSE_DROP, NOSE_DEPTH)
    seen = max(-1.0, min(1.0, dy * math.cos(math.radians(yaw)) / reach))
    pitch = math.degrees(math.asin(seen) - math.atan2(NOSE_DROP, NOSE_DEPTH))
    return yaw, pitch, roll


def make_face(
    box: list[int],
    score: float,
    landmarks: list[list[float]],
    descriptor: list[float],
    size: tuple[int, int],
) -> Face:
    """A face with its derived pose and bins (`size`: the image's width and height)."""
    width, height = size
    left, top, right, bottom = box
    yaw, pitch, roll = head_pose(landmarks) if len(landmarks) >= 5 else (0.0, 0.0, 0.0)
    ratio = (bottom - top) / max(height, 1)
    return Face(
        box=box,
        score=score,
        landmarks=landmarks,
        descriptor=descriptor,
        yaw=round(yaw, 2),
        pitch=round(pitch, 2),
        roll=round(roll, 2),
        height_ratio=round(ratio, 4),
        shot=shot_bin(ratio),
        framing=framing_bin((left + right) / 2, width),
        yaw_bin=yaw_bin(yaw),
        pitch_bin=pitch_bin(pitch),
    )


# -- the dlib face analyzer ------------------------------------------------------------------------
def models_dir() -> Path | None:
    """The folder of `face-recognition-models`' files, found without importing the package (its
    `__init__` needs pkg_resources, gone from new setuptools)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    return folder if all((folder / f).is_file() for f in MODEL_FILES.values()) else None


def faces_unavailable() -> str | None:
    """Why the `faces` analyzer cannot run here (one line with the fix), or None when it can."""
    try:
        import dlib  # noqa: F401
    except ImportError:
        return f"face analysis needs dlib: {INSTALL_HINT}"
    if models_dir() is None:
        return f"face analysis needs the face-recognition-models files: {INSTALL_HINT}"
    return None


class FaceAnalyzer:
    """dlib's HOG detector + 5-point landmarks + 128-d identity ResNet (module docstring)."""

    name = "faces"

    def __init__(self, detector, shape_predictor, encoder, detect_size: int = DETECT_SIZE):
        self.detector = detector
        self.shape_predictor = shape_predictor
        self.encoder = encoder
        self.detect_size = detect_size

    @classmethod
    def load(cls) -> FaceAnalyzer:
        why = faces_unavailable()
        if why is not None:
            raise UserError(why, hint=INSTALL_HINT)
        import dlib

        folder = models_dir()
        return cls(
            dlib.get_frontal_face_detector(),
            dlib.shape_predictor(str(folder / MODEL_FILES["shape_5"])),
            dlib.face_recognition_model_v1(str(folder / MODEL_FILES["resnet"])),
        )

    def analyze(self, images: list[Image.Image]) -> list[Observation]:
        return [self._observe(image) for image in images]

    def _observe(self, image: Image.Image) -> Observation:
        import dlib
        import numpy as np
        from PIL import Image

        rgb = image.convert("RGB")
        width, height = rgb.size
        scale = min(1.0, self.detect_size / max(width, height))
        small = rgb.resize(
            (max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR
        )
        rects, scores, _ = self.detector.run(np.asarray(small), DETECT_UPSAMPLE, DETECT_THRESHOLD)
        pixels = np.asarray(rgb)
        faces = []
        for rect, score in zip(rects, scores, strict=True):
            box = [
                max(0, round(rect.left() / scale)),
                max(0, round(rect.top() / scale)),
                min(width, round(rect.right() / scale)),
                min(height, round(rect.bottom() / scale)),
            ]
            full = dlib.rectangle(*box)
            shape = self.shape_predictor(pixels, full)
            points = [[float(p.x), float(p.y)] for p in shape.parts()]
            descriptor = list(self.encoder.compute_face_descriptor(pixels, shape))
            faces.append(make_face(box, float(score), points, descriptor, (width, height)))
        return Observation(analyzer=self.name, width=width, height=height, faces=faces)


# -- by name ---------------------------------------------------------------------------------------
def load_analyzer(name: str, settings: Settings | None = None) -> Analyzer:
    """An analyzer by name: `faces`, or one a package registers."""
    from zit_agent.backends.registry import factory, registered

    kind, _, target = name.partition(":")
    if kind not in registered("analyzer"):
        raise UserError(f"unknown analyzer {name!r}", hint=ANALYZER_HELP)
    return factory("analyzer", kind)(target.strip(), settings=settings)


@cache
def load_faces(target: str = "", *, settings: Settings | None = None) -> FaceAnalyzer:
    """The face analyzer, loaded once per process (its models are only read)."""
    return FaceAnalyzer.load()


def load_default_analyzer(name: str | None = "faces") -> tuple[Analyzer | None, list[str]]:
    """The named analyzer (default `faces`) when it can run here, else None and a note saying
    how to install it; `none` or None: no analyzer, no note."""
    if name in (None, "none"):
        return None, []
    if name == "faces" and (why := faces_unavailable()) is not None:
        return None, [why]
    return load_analyzer(name), []
