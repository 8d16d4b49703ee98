from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import oblivio
from oblivio.errors import OblivioError
from oblivio.models import build, read_config


@pytest.mark.parametrize("arch", ["resnet18", "vgg11_bn", "vit_tiny_patch16_224", "test_vit"])
def test_small_input_architectures(arch: str) -> None:
    torch.manual_seed(0)
    model = build(arch, num_classes=10, in_chans=1, img_size=28).eval()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert model(x).shape == (2, 10)
        assert model.features(x).shape[0] == 2
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert layers, "projection needs conv/linear layers"


@pytest.mark.parametrize("arch", ["vit_tiny_patch16_224", "test_vit"])
def test_vit_uses_patch_4_on_small_images(arch: str) -> None:
    model = build(arch, 10, 1, 28)
    assert model.net.patch_embed.proj.kernel_size == (4, 4)
    assert model.net.pos_embed.shape[1] == 49 + 1


def test_vgg_head_is_a_wide_layer_not_100m_weights() -> None:
    model = build("vgg11_bn", 10, 1, 28)
    assert model.net.pre_logits.fc1.weight.flatten(1).shape == (512, 4608)
    assert sum(p.numel() for p in model.parameters()) < 15_000_000


def test_rgb_and_other_sizes() -> None:
    model = build("resnet18", num_classes=3, in_chans=3, img_size=32).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 3)
    assert model.mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])


def test_unknown_arch_and_bad_class_count() -> None:
    with pytest.raises(OblivioError, match="unknown architecture 'resnet9000'"):
        build("resnet9000", 10)
    with pytest.raises(OblivioError, match="at least 2 classes"):
        build("resnet18", 1)


def _saved(tmp_path: Path) -> tuple[nn.Module, Path]:
    torch.manual_seed(0)
    model = build("resnet18", 10, 1, 28).eval()
    out = tmp_path / "model"
    oblivio.save_model(model, out, arch="resnet18", class_names=[str(i) for i in range(10)],
                       img_size=28, parent_fingerprint="abc", provenance={"note": "test"})
    return model, out


def test_save_load_gives_identical_outputs(tmp_path: Path) -> None:
    model, out = _saved(tmp_path)
    loaded = oblivio.load_model(out)
    assert not loaded.training
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    config = read_config(out)
    assert config["parent_fingerprint"] == "abc"
    assert config["provenance"] == {"note": "test"}
    assert config["normalization"] == {"mean": [0.5], "std": [0.5]}
    assert loaded.config["weights_sha256"] == config["weights_sha256"]


def test_corrupt_weights_rejected(tmp_path: Path) -> None:
    _, out = _saved(tmp_path)
    blob = bytearray((out / "model.safetensors").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (out / "model.safetensors").write_bytes(bytes(blob))
    with pytest.raises(OblivioError, match="does not match the SHA-256"):
        oblivio.load_model(out)


def _rewrite_config(out: Path, **changes: object) -> None:
    config = json.loads((out / "config.json").read_text())
    config.update(changes)
    (out / "config.json").write_text(json.dumps(config))


def test_pickle_or_garbage_is_never_unpickled(tmp_path: Path) -> None:
    _, out = _saved(tmp_path)
    torch.save({"x": torch.zeros(1)}, out / "model.safetensors")  # a pickle in disguise
    import hashlib

    digest = hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
    _rewrite_config(out, weights_sha256=digest)
    with pytest.raises(OblivioError, match="not a valid safetensors file"):
        oblivio.load_model(out)


def test_mismatched_config_rejected(tmp_path: Path) -> None:
    _, out = _saved(tmp_path)
    _rewrite_config(out, num_classes=7, class_names=[str(i) for i in range(7)])
    with pytest.raises(OblivioError, match="do not fit resnet18 with 7 classes"):
        oblivio.load_model(out)
    _rewrite_config(out, num_classes=10, arch="vgg11_bn")
    with pytest.raises(OblivioError, match="do not fit vgg11_bn"):
        oblivio.load_model(out)
    _rewrite_config(out, arch="nonsense_net")
    with pytest.raises(OblivioError, match="unknown architecture"):
        oblivio.load_model(out)


def test_missing_model_files(tmp_path: Path) -> None:
    with pytest.raises(OblivioError, match="file not found"):
        oblivio.load_model(tmp_path / "nowhere")
    _, out = _saved(tmp_path)
    (out / "config.json").write_text(json.dumps({"arch": "resnet18"}))
    with pytest.raises(OblivioError, match="lacks num_classes"):
        oblivio.load_model(out)
