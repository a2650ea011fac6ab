"""Tests for per-product configuration: layering of YAML files, strictness and the repository's own configs."""

import re
from pathlib import Path

import pytest
import yaml

from inspection.errors import ConfigError
from inspection.product_config import ProductConfig, load_product_config

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_defaults_when_no_files(tmp_path: Path) -> None:
    config = load_product_config(tmp_path, "widget")
    assert config == ProductConfig()
    assert config.kind == "classifier"
    assert config.image_size == 224
    assert config.augment.hflip is False
    assert config.split.test_fraction == 0.2


def test_product_yaml_overrides_default_yaml_deeply(tmp_path: Path) -> None:
    _write(
        tmp_path / "default.yaml",
        "image_size: 256\naugment:\n  hflip: false\n  vflip: true\n  blur_probability: 0.3\ntrain:\n  epochs: 7\n",
    )
    _write(tmp_path / "products" / "widget.yaml", "augment:\n  hflip: true\ntrain:\n  batch_size: 8\n")
    config = load_product_config(tmp_path, "widget")
    assert config.image_size == 256  # from default.yaml
    assert config.augment.hflip is True  # product wins
    assert config.augment.vflip is True  # sibling key of default.yaml kept
    assert config.augment.blur_probability == 0.3
    assert config.train.epochs == 7
    assert config.train.batch_size == 8


def test_other_product_sees_only_the_defaults_file(tmp_path: Path) -> None:
    _write(tmp_path / "default.yaml", "image_size: 256\n")
    _write(tmp_path / "products" / "widget.yaml", "image_size: 320\n")
    assert load_product_config(tmp_path, "widget").image_size == 320
    assert load_product_config(tmp_path, "gadget").image_size == 256


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("imgsize: 128\n", "imgsize"),
        ("augment:\n  hflipp: true\n", "hflipp"),
        ("train:\n  epochs: 3\n  learnin_rate: 0.1\n", "learnin_rate"),
    ],
)
def test_unknown_key_is_rejected_and_named(tmp_path: Path, text: str, key: str) -> None:
    _write(tmp_path / "products" / "widget.yaml", text)
    with pytest.raises(ConfigError, match=key):
        load_product_config(tmp_path, "widget")


def test_unknown_key_in_default_yaml_is_rejected(tmp_path: Path) -> None:
    _write(tmp_path / "default.yaml", "split:\n  seeed: 3\n")
    with pytest.raises(ConfigError, match="seeed"):
        load_product_config(tmp_path, "widget")


def test_out_of_range_value_is_rejected(tmp_path: Path) -> None:
    _write(tmp_path / "products" / "widget.yaml", "split:\n  test_fraction: 0.9\n")
    with pytest.raises(ConfigError, match="test_fraction"):
        load_product_config(tmp_path, "widget")


def test_invalid_yaml_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    _write(tmp_path / "products" / "widget.yaml", "augment: [hflip: true\n  vflip: {\n")
    with pytest.raises(ConfigError, match=r"widget\.yaml"):
        load_product_config(tmp_path, "widget")


def test_non_mapping_yaml_is_a_config_error(tmp_path: Path) -> None:
    _write(tmp_path / "default.yaml", "- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_product_config(tmp_path, "widget")


def test_empty_yaml_means_defaults(tmp_path: Path) -> None:
    _write(tmp_path / "default.yaml", "# nothing set\n")
    _write(tmp_path / "products" / "widget.yaml", "")
    assert load_product_config(tmp_path, "widget") == ProductConfig()


def test_overrides_win_over_both_files(tmp_path: Path) -> None:
    _write(tmp_path / "default.yaml", "image_size: 256\naugment:\n  vflip: true\n")
    _write(tmp_path / "products" / "widget.yaml", "image_size: 320\naugment:\n  hflip: true\n")
    config = load_product_config(tmp_path, "widget", overrides={"image_size": 64, "augment": {"hflip": False}})
    assert config.image_size == 64
    assert config.augment.hflip is False
    assert config.augment.vflip is True  # overrides merge deeply too


def test_unknown_override_key_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bogus"):
        load_product_config(tmp_path, "widget", overrides={"train": {"bogus": 1}})


def test_repository_configs_for_solar_cells() -> None:
    config = load_product_config(REPO_CONFIGS, "solar-cells")
    assert config.augment.hflip is True
    assert config.augment.vflip is True
    assert config.augment.rotate90 is False


def test_repository_configs_for_unknown_product_are_the_defaults() -> None:
    config = load_product_config(REPO_CONFIGS, "no-such-product")
    assert config == ProductConfig.model_validate(yaml.safe_load((REPO_CONFIGS / "default.yaml").read_text()))
    assert config.augment.hflip is False
    assert config.augment.vflip is False
    assert config != load_product_config(REPO_CONFIGS, "solar-cells")


def test_target_is_a_miss_rate_or_a_false_detection_budget(tmp_path: Path) -> None:
    from inspection.operating_curve import CalibrationTarget

    assert load_product_config(tmp_path, "widget").target == CalibrationTarget("miss_rate", 0.02)
    _write(tmp_path / "default.yaml", "target_miss_rate: 0.03\n")
    assert load_product_config(tmp_path, "widget").target == CalibrationTarget("miss_rate", 0.03)
    # A product's budget replaces the defaults' miss rate: the two keys are one setting.
    _write(tmp_path / "products" / "widget.yaml", "target_false_detection_rate: 0.05\n")
    config = load_product_config(tmp_path, "widget")
    assert config.target == CalibrationTarget("false_detection_rate", 0.05)
    assert (config.target_miss_rate, config.target_false_detection_rate) == (None, 0.05)


def test_both_targets_in_one_file_are_refused(tmp_path: Path) -> None:
    _write(tmp_path / "products" / "widget.yaml", "target_miss_rate: 0.02\ntarget_false_detection_rate: 0.05\n")
    with pytest.raises(ConfigError, match="exactly one"):
        load_product_config(tmp_path, "widget")
    with pytest.raises(ValueError, match="exactly one"):
        ProductConfig(target_miss_rate=0.02, target_false_detection_rate=0.05)
    _write(tmp_path / "products" / "widget.yaml", "target_false_detection_rate: 1.5\n")
    with pytest.raises(ConfigError, match="target_false_detection_rate"):
        load_product_config(tmp_path, "widget")


def test_audit_rates_come_from_the_product_yaml(tmp_path: Path) -> None:
    (tmp_path / "products").mkdir()
    (tmp_path / "products" / "widget.yaml").write_text(
        "audit: {pass: 0.1, defect: 0.5, pass_bands: [{lo: 0, hi: 0.5, rate: 0.02}, {lo: 0.5, hi: 1, rate: 0.3}]}\n"
    )
    audit = load_product_config(tmp_path, "widget").audit
    assert (audit.pass_rate, audit.defect_rate) == (0.1, 0.5)
    assert audit.pass_probability(0.7) == (0.3, "pass:0.5-1")
    assert load_product_config(tmp_path, "other").audit.pass_rate == 0.05  # the defaults: 5 % of passes


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("audit: {pass: 1.2}", "less than or equal to 1"),
        ("audit: {pass_bands: [{lo: 0.2, hi: 1, rate: 0.1}]}", "cover [0, 1]"),
        ("audit: {passes: 0.1}", "passes"),
    ],
)
def test_impossible_audit_rates_in_yaml_are_refused(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "products").mkdir()
    (tmp_path / "products" / "widget.yaml").write_text(text + "\n")
    with pytest.raises(ConfigError, match=r"(?s)audit.*" + re.escape(fragment)):
        load_product_config(tmp_path, "widget")
