from pathlib import Path

import pytest

from curation.config import ConfigError, PipelineConfig, dump_config, load_config, parse_config

MINIMAL = """
sources:
  - {name: web, path: data/web, priority: 2}           # folder of images + sidecar captions
  - {name: laion, path: data/laion/*.parquet, priority: 1, image_column: path, caption_column: caption}
  - {name: old, path: data/old/{000..009}.tar, priority: 3}   # existing WebDataset shards
output: runs/demo
"""


def test_minimal_config_from_the_issue_loads(tmp_path: Path):
    p = tmp_path / "c.yaml"
    p.write_text(MINIMAL)
    cfg = load_config(p)
    assert [s.name for s in cfg.sources] == ["web", "laion", "old"]
    assert cfg.sources[1].image_column == "path" and cfg.sources[1].caption_columns == ["caption"]
    # relative paths resolve against the config's folder, brace patterns survive
    assert cfg.sources[2].path == str(tmp_path / "data/old/{000..009}.tar")
    assert cfg.output == str(tmp_path / "runs/demo")


def test_unknown_key_and_wrong_type_name_the_key_path():
    with pytest.raises(ConfigError) as e:
        parse_config({"sources": [{"name": "a", "path": "x", "priority": "high", "colour": 1}], "output": "o",
                      "decode": {"max_pixelz": 3}})  # fmt: skip
    msg = str(e.value)
    assert "sources.0.priority" in msg and "'high'" in msg
    assert "sources.0.colour" in msg
    assert "decode.max_pixelz" in msg


def test_missing_required_and_duplicate_names_are_errors():
    with pytest.raises(ConfigError, match="output"):
        parse_config({"sources": [{"name": "a", "path": "x"}]})
    with pytest.raises(ConfigError, match="unique"):
        parse_config({"sources": [{"name": "a", "path": "x"}, {"name": "a", "path": "y"}], "output": "o"})


def test_dumped_config_reloads_identically(tmp_path: Path):
    cfg = parse_config({"sources": [{"name": "a", "path": "/x"}], "output": "/o"})
    (tmp_path / "c.yaml").write_text(dump_config(cfg))
    assert load_config(tmp_path / "c.yaml") == cfg
    assert isinstance(cfg, PipelineConfig)


def test_invalid_yaml_and_missing_file(tmp_path: Path):
    (tmp_path / "bad.yaml").write_text("sources: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
