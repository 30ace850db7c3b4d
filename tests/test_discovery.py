import pytest
from PIL import Image

from shared.data import labels_from_folders, list_images, list_labelled_images
from shared.errors import MissingInputError
from shared.sagemaker.hosts import host_share


def touch_image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (2, 2)).save(path)


def test_imagefolder_with_nested_folders_hidden_files_and_non_images(tmp_path):
    for rel in ["cat/a.png", "cat/sub/b.PNG", "dog/c.jpg", "dog/.hidden.png", ".git/x.png",
                "loose.png", "empty/readme.txt"]:
        touch_image(tmp_path / rel) if rel.lower().endswith((".png", ".jpg")) else (
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True),
            (tmp_path / rel).write_text("x"))
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    images, classes = list_labelled_images(tmp_path)
    assert classes == ["cat", "dog"]
    assert [(f.relpath, f.label) for f in images] == [
        ("cat/a.png", "cat"), ("cat/sub/b.PNG", "cat"), ("dog/c.jpg", "dog")]
    assert [f.relpath for f in list_images(tmp_path)] == [
        "cat/a.png", "cat/sub/b.PNG", "dog/c.jpg", "loose.png"]


def test_order_is_deterministic_whatever_the_creation_order(tmp_path):
    for name in ["z.png", "a.png", "m.png"]:
        touch_image(tmp_path / "c" / name)
    assert [f.relpath for f in list_images(tmp_path)] == ["c/a.png", "c/m.png", "c/z.png"]


def test_labels_from_folders_detects_an_imagefolder(tmp_path):
    touch_image(tmp_path / "a" / "1.png")
    assert labels_from_folders(tmp_path)
    touch_image(tmp_path / "2.png")
    assert not labels_from_folders(tmp_path)


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(MissingInputError, match="does not exist"):
        list_images(tmp_path / "nope")


@pytest.mark.parametrize("n", [0, 1, 7, 100])
@pytest.mark.parametrize("hosts", [1, 2, 3, 8])
def test_host_shares_are_disjoint_and_complete(n, hosts):
    items = list(range(n))
    shares = [host_share(items, i, hosts) for i in range(hosts)]
    assert sorted(x for share in shares for x in share) == items
    assert sum(len(s) for s in shares) == n
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_host_index_out_of_range_is_refused():
    with pytest.raises(ValueError):
        host_share([1, 2], 2, 2)
