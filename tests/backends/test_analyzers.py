"""The `faces` analyzer with dlib's real models on real photographs (tests/backends/data/faces and
scikit-image's bundled photographs): identity, shot-size bins, head pose, and the rut kinds that
`zit ruts` reads from them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from tests.cli_helpers import run_zit
from zit_agent.agent import ruts
from zit_agent.backends.analyzers import SHOT_EDGES, faces_unavailable, load_faces

FACES = Path(__file__).parent / "data" / "faces"
OBAMA = [
    "obama.jpg",
    "obama2.jpg",
    "obama3.jpg",
    "obama_partial_face.jpg",
    "obama_partial_face2.jpg",
]
SHOTS = [name for _, name in SHOT_EDGES]  # closest first


def photo(name: str) -> Image.Image:
    with Image.open(FACES / name) as image:
        return image.convert("RGB")


def skimage_photo(name: str) -> Image.Image:
    import skimage

    with Image.open(Path(skimage.__file__).parent / "data" / name) as image:
        return image.convert("RGB")


@pytest.fixture(scope="module")
def faces():
    assert faces_unavailable() is None, faces_unavailable()
    return load_faces()


def one_face(faces, image: Image.Image):
    found = faces.analyze([image])[0].faces
    assert len(found) == 1, f"expected one face, found {len(found)}"
    return found[0]


def crop_to(image: Image.Image, box: list[int], ratio: float) -> Image.Image:
    """A crop centred on `box` in which the box's height is `ratio` of the crop's height (padded
    with grey where the crop runs past the photograph)."""
    left, top, right, bottom = box
    side = (bottom - top) / ratio
    cx, cy = (left + right) / 2, (top + bottom) / 2
    canvas = Image.new("RGB", (round(side), round(side)), (128, 128, 128))
    canvas.paste(image, (round(side / 2 - cx), round(side / 2 - cy)))
    return canvas


# -- identity --------------------------------------------------------------------------------------
def test_one_man_in_five_photographs_is_one_person_and_another_man_is_not(faces):
    observations = faces.analyze([photo(n) for n in [*OBAMA, "biden.jpg"]])
    assert [len(o.faces) for o in observations] == [1] * 6
    assert all(len(o.faces[0].descriptor) == 128 for o in observations)
    kinds = ruts.judge_kinds(observations[:5], OBAMA)
    assert kinds["identity"].verdict == "rut" and kinds["identity"].clusters == [OBAMA]
    people = ruts.person_clusters(ruts._descriptors(observations)[0])
    assert people == [0, 0, 0, 0, 0, 1]


def test_different_people_read_identity_ok(faces):
    images = [photo("obama.jpg"), photo("biden.jpg"), skimage_photo("astronaut.png")]
    observations = faces.analyze(images)
    assert [len(o.faces) for o in observations] == [1, 1, 1]  # the astronaut's patch is no face
    identity = ruts.judge_kinds(observations, ["obama", "biden", "astronaut"])["identity"]
    assert identity.verdict == "ok" and identity.clusters == []


def test_photographs_without_faces_read_unmeasured(faces):
    images = [skimage_photo(n) for n in ("coffee.png", "chelsea.png", "rocket.jpg")]
    observations = faces.analyze(images)
    assert all(not o.faces for o in observations)
    kinds = ruts.judge_kinds(observations, ["coffee", "chelsea", "rocket"])
    assert {k: r.verdict for k, r in kinds.items()} == dict.fromkeys(
        ruts.MEASURED_KINDS, "unmeasured"
    )


# -- shot size -------------------------------------------------------------------------------------
def test_a_tight_crop_reads_close_and_the_photograph_padded_reads_wider(faces):
    image = photo("obama.jpg")
    face = one_face(faces, image)
    tight = one_face(faces, crop_to(image, face.box, 0.6))
    padded = ImageOps.expand(image, border=image.height * 3 // 4, fill=(128, 128, 128))
    wide = one_face(faces, padded)
    assert tight.shot in ("extreme close-up", "close-up")
    assert face.shot == "medium close-up"
    assert wide.shot in ("medium shot", "wide shot")
    assert SHOTS.index(tight.shot) < SHOTS.index(face.shot) < SHOTS.index(wide.shot)


def test_same_size_crops_of_different_photographs_read_a_shot_rut(faces):
    crops = []
    for name in ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]:
        image = photo(name)
        crops.append(crop_to(image, one_face(faces, image).box, 0.38))
    kinds = ruts.judge_kinds(faces.analyze(crops), ["a", "b", "c", "d"])
    assert kinds["shot"].verdict == "rut" and kinds["shot"].bins == {"close-up": 4}
    assert kinds["identity"].verdict == "rut"  # three of four are one man
    mixed = [crops[0], photo("obama2.jpg"), *crops[2:]]
    mixed[3] = ImageOps.expand(photo("biden.jpg"), border=300, fill=(128, 128, 128))
    varied = ruts.judge_kinds(faces.analyze(mixed), ["a", "b", "c", "d"])["shot"]
    assert varied.verdict != "rut" and len(varied.bins) >= 3


# -- head pose -------------------------------------------------------------------------------------
def test_a_frontal_portrait_reads_frontal_at_eye_level_and_a_mirror_turns_the_yaw(faces):
    image = photo("obama.jpg")
    face = one_face(faces, image)
    assert (face.yaw_bin, face.pitch_bin) == ("frontal", "eye level")
    for name in ["obama2.jpg", "biden.jpg"]:
        image = photo(name)
        turned, mirrored = one_face(faces, image), one_face(faces, ImageOps.mirror(image))
        assert abs(turned.yaw) > 5 and turned.yaw * mirrored.yaw < 0
        assert abs(turned.yaw + mirrored.yaw) < 8  # the same turn, the other way


# -- through `zit ruts` ----------------------------------------------------------------------------
def copy_photos(folder: Path, images: dict[str, Image.Image]) -> Path:
    folder.mkdir()
    for name, image in images.items():
        image.save(folder / f"{name}.png")
    return folder


def test_zit_ruts_reads_the_same_man_as_an_identity_rut(capsys, tmp_path):
    folder = copy_photos(tmp_path / "one", {Path(n).stem: photo(n) for n in OBAMA})
    code, out, _ = run_zit(capsys, "ruts", str(folder), "--json")
    result = json.loads(out)
    assert code == 0 and result["kinds"]["layout"]["verdict"] == "ok"  # the hash sees no rut
    identity = result["kinds"]["identity"]
    assert identity["verdict"] == "rut" == result["verdict"]
    assert [[Path(p).stem for p in c] for c in identity["clusters"]] == [
        [Path(n).stem for n in OBAMA]
    ]
    assert sum(result["kinds"]["shot"]["bins"].values()) == 5
    # cached: a second run analyses nothing (the observations come from the history store)
    code, again, _ = run_zit(capsys, "ruts", str(folder), "--json")
    assert json.loads(again)["kinds"] == result["kinds"]


def test_zit_ruts_without_faces_or_without_dlib_says_unmeasured(capsys, tmp_path, monkeypatch):
    scenes = {n: skimage_photo(f"{n}.png") for n in ("coffee", "chelsea")}
    folder = copy_photos(tmp_path / "scenes", scenes)
    code, out, _ = run_zit(capsys, "ruts", str(folder), "--json")
    kinds = json.loads(out)["kinds"]
    assert code == 0 and kinds["identity"]["verdict"] == "unmeasured"
    assert kinds["layout"]["verdict"] in ("ok", "warn", "rut")

    monkeypatch.setitem(sys.modules, "dlib", None)  # `import dlib` fails
    people = copy_photos(tmp_path / "people", {Path(n).stem: photo(n) for n in OBAMA[:3]})
    code, out, _ = run_zit(capsys, "ruts", str(people), "--json")
    result = json.loads(out)
    assert code == 0 and result["kinds"]["layout"]["verdict"] in ("ok", "warn", "rut")
    for kind in ruts.MEASURED_KINDS:
        assert result["kinds"][kind]["verdict"] == "unmeasured"
        assert "pip install dlib-bin" in result["kinds"][kind]["reason"]
    assert any("dlib" in note for note in result["notes"])
    code, out, _ = run_zit(capsys, "ruts", str(people), "--analyzer", "none", "--json")
    assert json.loads(out)["kinds"] is None


def test_help_imports_no_face_model():
    code = (
        "import sys\n"
        "from zit_agent.agent.cli import main\n"
        "for args in (['--help'], ['ruts', '--help']):\n"
        "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
        "print('LOADED', [m for m in ('dlib', 'cv2', 'torch') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "LOADED []" in out.stdout, out.stdout + out.stderr


def test_an_unknown_analyzer_is_one_line_and_exit_2(capsys, tmp_path):
    folder = copy_photos(tmp_path / "two", {n: photo(f"{n}.jpg") for n in ("obama", "biden")})
    code, _, err = run_zit(capsys, "ruts", str(folder), "--analyzer", "bogus")
    assert code == 2 and "unknown analyzer 'bogus'" in err and "Traceback" not in err
