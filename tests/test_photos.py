"""Real photos, as a user's folder holds them: RGB JPEG crops of the photographs installed packages
ship (nas.photos), one of them truncated. One real search through Ray with a time budget that ends
it early, then `nas export` and `nas evaluate` on the same folder."""

import json

import pytest
from nas_commands import run_nas
from PIL import Image

from nas.photos import PHOTOGRAPHS, write_photo_set

CLASSES = ["astronaut", "china", "coffee", "galaxies"]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    photos = write_photo_set(root / "photos", size=48, per_class=16, seed=0, classes=CLASSES)
    broken = photos / "coffee" / "0.jpg"
    broken.write_bytes(broken.read_bytes()[:300])  # a download cut short
    result = run_nas(
        "search",
        "--space",
        "linear",
        "--data",
        str(photos),
        "--image-size",
        "32",
        "--budget",
        "30",
        "--workers",
        "1",  # one worker starting TensorFlow, not two: the time budget ends the search after its first child
        "--epochs",
        "2",
        "--final-epochs",
        "20",
        "--time-budget",
        "1s",
        "--no-dashboard",
        "--runs-dir",
        str(root / "runs"),
        "--name",
        "photos",
        cwd=root,
    )
    return root, photos, broken, result


def test_the_photo_set_is_rgb_crops_of_each_photograph(searched):
    _, photos, _, _ = searched
    assert sorted(p.name for p in photos.iterdir()) == sorted(CLASSES) and set(CLASSES) <= set(PHOTOGRAPHS)
    with Image.open(photos / "astronaut" / "3.jpg") as image:
        assert image.mode == "RGB" and image.size == (48, 48) and image.format == "JPEG"


def test_a_search_skips_the_broken_photo_and_stops_at_its_time_budget(searched):
    root, _, broken, result = searched
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f"nas: skipped {broken}: not a readable image (OSError)"], result.stderr
    run = root / "runs" / "photos"
    config = json.loads((run / "config.json").read_text())
    assert config["skipped_images"] == [{"file": str(broken), "reason": "not a readable image (OSError)"}]
    assert "1 unreadable image skipped" in config["data_summary"] and config["time_budget"] == 1.0
    summary = json.loads((run / "summary.json").read_text())
    # The first children start whatever the budget; once one has finished, none that would end after
    # the budget does: far fewer than the 30 asked for.
    assert summary["ended_by"] == "the time budget of 1s ran out" and summary["status"] == "finished"
    assert 1 <= summary["trials_completed"] < 30
    assert "The search asked for no more children: the time budget of 1s ran out." in result.stdout
    evaluation = summary["evaluation"]  # the winner, retrained and tested as usual
    assert evaluation["class_names"] == sorted(CLASSES) and evaluation["accuracy"] > 0.25  # chance: 1/4
    page = (run / "report.html").read_text()
    assert "(1 unreadable image skipped)" in page and "The winner on the test split" in page


def test_nas_evaluate_decodes_the_folder_as_the_search_did(searched):
    root, photos, broken, _ = searched
    exported = run_nas("export", str(root / "runs" / "photos"), "--format", "keras", cwd=root)
    assert exported.returncode == 0, exported.stderr
    result = run_nas("evaluate", str(root / "runs" / "photos" / "export"), "--data", str(photos), "--json", cwd=root)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f"nas: skipped {broken}: not a readable image (OSError)"]
    evaluation = json.loads(result.stdout)
    assert evaluation["images"] == 4 * 16 - 1 and [r["support"] for r in evaluation["per_class"]] == [16, 16, 15, 16]
    assert evaluation["accuracy"] > 0.25
