import io
import json
import tarfile

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.layers import Conv2dSame

from shared.errors import MissingInputError
from shared.models import (
    ImageClassifier,
    UnknownModelError,
    UnsafeArtifactError,
    create_network,
    load_artifact,
    load_config,
    save_artifact,
    write_tarball,
)
from shared.models.centre_tap import CentreTapConv2d, croppable
from shared.models.fold import conv_norm_pairs, fold_batch_norms

ARCH = "resnet10t"


def small_model(classes=("a", "b", "c")) -> ImageClassifier:
    torch.manual_seed(0)
    return ImageClassifier.create(ARCH, list(classes), 32).eval()


@pytest.fixture
def artifact(tmp_path):
    model = small_model()
    save_artifact(model, tmp_path / "model")
    return model, tmp_path / "model"


def same_outputs(a, b):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.allclose(a(x), b(x), atol=1e-6)


def test_unknown_architecture_suggests_close_names():
    with pytest.raises(UnknownModelError, match="did you mean.*resnet18"):
        create_network("resnet_18", 3)


def test_folder_round_trip_gives_the_same_model_and_config(artifact):
    model, folder = artifact
    loaded = load_artifact(folder)
    config = loaded.config
    assert same_outputs(model, loaded)
    assert config.class_names == ["a", "b", "c"] and config.input_size == 32
    meta = json.loads((folder / "model.json").read_text())
    assert meta["num_classes"] == 3 and "torch" in meta["library_versions"]


def test_tarball_round_trip_and_folder_holding_only_the_tarball(artifact, tmp_path):
    model, folder = artifact
    tarball = write_tarball(folder, tmp_path / "out" / "model.tar.gz")
    assert same_outputs(model, load_artifact(tarball))
    assert same_outputs(model, load_artifact(tarball.parent))
    assert load_config(tarball).class_names == ["a", "b", "c"]


def test_pickled_weights_are_refused(tmp_path, artifact):
    model, folder = artifact
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    torch.save(model.state_dict(), pickled / "model.pth")
    (pickled / "model.json").write_text((folder / "model.json").read_text())
    with pytest.raises(UnsafeArtifactError, match="pickled weights are refused"):
        load_artifact(pickled)
    torch.save(model.state_dict(), pickled / "model.safetensors")  # a pickle in disguise
    with pytest.raises(UnsafeArtifactError, match="pickle"):
        load_artifact(pickled)


def add_bytes(tar, name, data, **attrs):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("entry", ["../evil.txt", "/tmp/evil.txt", "sub/../../evil.txt"])
def test_tarball_with_path_traversal_is_refused_and_writes_nothing_outside(tmp_path, entry):
    tarball = tmp_path / "work" / "model.tar.gz"
    tarball.parent.mkdir()
    with tarfile.open(tarball, "w:gz") as tar:
        add_bytes(tar, entry, b"gotcha")
    with pytest.raises(UnsafeArtifactError, match="outside the archive"):
        load_artifact(tarball)
    assert not (tmp_path / "evil.txt").exists()


def test_tarball_with_a_symlink_is_refused(tmp_path):
    tarball = tmp_path / "model.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        info = tarfile.TarInfo("model.safetensors")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(UnsafeArtifactError, match="link"):
        load_artifact(tarball)


def test_symlinked_files_in_a_folder_are_refused(tmp_path, artifact):
    _, folder = artifact
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "model.safetensors").symlink_to(folder / "model.safetensors")
    (linked / "model.json").write_text((folder / "model.json").read_text())
    with pytest.raises(UnsafeArtifactError, match="symbolic link"):
        load_artifact(linked)


@pytest.mark.parametrize("field,value", [
    ("class_names", "abc"), ("input_size", "32"), ("mean", [0.5, 0.5]), ("architecture", 7),
    ("num_classes", 4), ("std", [0, 1, 1]), ("format_version", 99)])
def test_model_json_with_wrong_types_is_refused(artifact, field, value):
    _, folder = artifact
    meta = json.loads((folder / "model.json").read_text())
    meta[field] = value
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(UnsafeArtifactError, match=field.split("_")[0]):
        load_artifact(folder)


def test_weights_of_another_architecture_are_refused(artifact):
    _, folder = artifact
    meta = json.loads((folder / "model.json").read_text())
    meta["architecture"] = "resnet18"
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(UnsafeArtifactError, match="does not match resnet18"):
        load_artifact(folder)


def test_local_pretrained_weights_load_the_backbone_and_skip_a_mismatched_head(tmp_path):
    source = small_model(classes="abcde").network
    weights = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(weights))
    model = create_network(ARCH, 3, pretrained_weights=weights)
    assert torch.equal(model.conv1[0].weight, source.conv1[0].weight)
    assert model.get_classifier().out_features == 3


def test_missing_artifact_is_a_clear_error(tmp_path):
    with pytest.raises(MissingInputError, match="does not exist"):
        load_artifact(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingInputError, match="no model.safetensors"):
        load_artifact(tmp_path / "empty")


def with_learnt_norms(model: ImageClassifier) -> ImageClassifier:
    """Batch-norm statistics and affine terms away from their initial identity, as after training."""
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                for tensor, low, high in ((module.running_mean, -1, 1), (module.running_var, .5, 2),
                                          (module.weight, .5, 1.5), (module.bias, -.5, .5)):
                    tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)
    return model


@pytest.mark.parametrize("arch", ["resnet10t", "efficientnet_b0"])
def test_serving_folds_norms_into_convolutions_and_answers_the_same(arch):
    model = with_learnt_norms(ImageClassifier.create(arch, ["a", "b", "c"], 32)).place("cpu")
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2)
    with torch.no_grad():
        expected = (model.logits(images), model.encode(images), model.stage_statistics(pixels))
    pairs = conv_norm_pairs(model.network)
    served = model.for_serving()
    norms = [m for m in served.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if arch == "resnet10t":  # plain convolution -> BatchNorm2d everywhere: every norm folds
        assert len(pairs) == 14 and not norms
    else:  # timm's BatchNormAct2d also activates: never folded, kept as it is
        assert not pairs and norms
    stem = next(m for m in served.modules() if isinstance(m, torch.nn.Conv2d))
    assert stem.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        got = (served.logits(images), served.encode(images), served.stage_statistics(pixels))
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)


def test_norms_fold_only_in_evaluation_mode():
    with pytest.raises(ValueError, match="evaluation mode"):
        fold_batch_norms(small_model().network.train())


@pytest.mark.parametrize("arch", ["resnet10t", "efficientnet_b0"])
def test_convolutions_on_1x1_maps_give_the_plain_networks_outputs_and_gradients(arch):
    """At 32 px the last stage is 1 x 1: the cropped convolutions must change nothing but speed."""
    torch.manual_seed(0)
    cropped = create_network(arch, 3)
    plain = timm.create_model(arch, num_classes=3)
    plain.load_state_dict(cropped.state_dict())  # same names and shapes: checkpoints carry over
    assert sum(isinstance(m, CentreTapConv2d) for m in cropped.modules()) > 0
    assert not any(isinstance(m, CentreTapConv2d) for m in plain.modules())
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    grads = []
    for network in (cropped, plain):
        network.train()
        pixels = x.clone().requires_grad_()
        logits = network(pixels)
        logits.square().sum().backward()
        grads.append((logits.detach(), pixels.grad,
                      *[p.grad for p in network.parameters()]))
    for a, b in zip(*grads, strict=True):  # float32 rounding, relative to each tensor's scale
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * max(1.0, b.abs().max().item()))
    # the taps a 1 x 1 map never reaches get no gradient, as in the plain network
    last = [m for m in cropped.modules() if isinstance(m, CentreTapConv2d)][-1]
    assert last.weight.grad[:, :, 0].abs().max() == 0


@pytest.mark.parametrize(("conv", "expected"), [
    (torch.nn.Conv2d(4, 4, 3, padding=1), True),
    (torch.nn.Conv2d(4, 4, 5, stride=2, padding=2), True),
    (torch.nn.Conv2d(4, 4, 3, padding=2, dilation=2), True),
    (torch.nn.Conv2d(4, 4, 1), False),  # already one tap
    (torch.nn.Conv2d(4, 4, 3), False),  # unpadded: a 1 x 1 input is too small for it
    (torch.nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), False),  # the padding is not zero
    (torch.nn.Conv2d(4, 4, 4, padding=2), False),  # even: no centre tap
    (Conv2dSame(4, 4, 3), False),  # timm's own padding: not a plain convolution
])
def test_only_zero_padded_same_size_convolutions_are_cropped(conv, expected):
    assert croppable(conv) is expected
