from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from deploy.cli import COMMON, build_parser
from deploy.commands import demo, simulate
from deploy.runtime.errors import ConfigError
from deploy.settings.features import FeatureSettings, schema_toml
from deploy.settings.resolve import resolve, unknown_environment
from deploy.settings.tables import Settings
from model.features import FeatureSchema, FieldSpec
from model.sparse_optim import SparseAdagrad, SparseFTRL, SplitRows
from model.trainer import row_layout
from model.zoo import ModelConfig

OPTIONS = [*COMMON, *simulate.OPTIONS]


def _resolve(argv: list[str], env: dict[str, str], config: Path | None = None) -> Settings:
    args = build_parser().parse_args(["simulate", *argv])
    return resolve(args, OPTIONS, env, config)


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fmstream.toml"
    path.write_text(text)
    return path


def test_defaults_without_any_layer() -> None:
    s = _resolve([], {})
    assert s.simulate.days == 8
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert s.simulate_output.out is None
    assert s.topics.dead_letter == "fmstream.dead-letter"


def test_precedence_is_file_then_environment_then_flag(tmp_path: Path) -> None:
    config = _toml(
        tmp_path, "[simulate]\ndays = 3\nseed = 5\nctr = 0.02\n[logging]\nlevel = 'DEBUG'\n"
    )
    from_file = _resolve([], {}, config)
    assert (from_file.simulate.days, from_file.simulate.seed, from_file.simulate.ctr) == (
        3,
        5,
        0.02,
    )
    assert from_file.logging.level == "DEBUG"
    env = {"FMSTREAM_SIMULATE_DAYS": "4", "FMSTREAM_SIMULATE_SEED": "6"}
    from_env = _resolve([], env, config)
    assert (from_env.simulate.days, from_env.simulate.seed, from_env.simulate.ctr) == (4, 6, 0.02)
    from_flag = _resolve(["--days", "9"], env, config)
    assert (from_flag.simulate.days, from_flag.simulate.seed) == (9, 6)


def test_paths_and_kafka_pass_through(tmp_path: Path) -> None:
    config = _toml(
        tmp_path,
        "[kafka]\nbootstrap_servers = 'k1:9092,k2:9092'\nsecurity_protocol = 'SSL'\n"
        "[topics]\nclicks = 'my-clicks'\npartitions = 8\n",
    )
    s = _resolve(["--out", str(tmp_path / "o")], {}, config)
    assert s.simulate_output.out == tmp_path / "o"
    assert s.kafka.options == {"security_protocol": "SSL"}
    assert s.kafka.bootstrap_servers == "k1:9092,k2:9092"
    assert (s.topics.clicks, s.topics.partitions) == ("my-clicks", 8)


@pytest.mark.parametrize(
    ("argv", "env", "toml", "words"),
    [
        (
            ["--days", "three"],
            {},
            "",
            "bad value for simulate.days from --days: expected an integer",
        ),
        ([], {"FMSTREAM_SIMULATE_CTR": "lots"}, "", "simulate.ctr from FMSTREAM_SIMULATE_CTR"),
        (
            [],
            {},
            "[simulate]\ndays = 'x'\n",
            "simulate.days must be an integer, got the string 'x'",
        ),
        ([], {}, "[simulate]\ndayz = 3\n", "unknown key simulate.dayz"),
        ([], {}, "[simlate]\ndays = 3\n", "unknown table [simlate]"),
        ([], {}, "[kafka]\nsesion_timeout_ms = 3\n", "unknown key kafka.sesion_timeout_ms"),
        ([], {}, "[simulate]\nctr = 0.9\n", "simulate.ctr must be in (0, 0.5)"),
        ([], {"FMSTREAM_LOGGING_LEVEL": "LOUD"}, "", "logging.level must be one of"),
        ([], {"FMSTREAM_KAFKA_PROFILE": "fast"}, "", "kafka.profile must be"),
        ([], {}, "[broker]\nport = 70000\n", "broker.port must be in 1..65535"),
        ([], {}, "[simulate\n", "cannot read config file"),
        ([], {}, "[train]\nadmit_after_fields = 'user_id'\n", "is not FIELD:COUNT"),
        ([], {}, "[train]\nstore = 'redis'\n", "train.store must be memory or rocksdb"),
    ],
)
def test_bad_values_name_the_key(
    tmp_path: Path, argv: list[str], env: dict[str, str], toml: str, words: str
) -> None:
    config = _toml(tmp_path, toml) if toml else None
    with pytest.raises(ConfigError) as info:
        _resolve(argv, env, config)
    assert words in str(info.value)


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        _resolve([], {}, tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[train]\nneurons = 0\n", "train.neurons must be >= 1"),
        ("[train]\nk = 0\n", "train.k must be >= 1"),
        ("[train]\ndense_lr = -1\n", "train.dense_lr must be in (0, 1]"),
        ("[train]\ndropout_keep = 0\n", "train.dropout_keep must be in (0, 1]"),
        ("[train]\ndevice = 'tpu'\n", "device must be auto, cpu, cuda or cuda:N"),
        ("[train]\ndevice = 'gpu'\n", "device must be auto, cpu, cuda or cuda:N"),
        ("[simulate]\nctr = '0.04'\n", "simulate.ctr must be a number, got the string '0.04'"),
        ("[kafka]\nbootstrap_servers = 'h:abc'\n", "must be host:port"),
        ("[features]\ncategorical = 'a,b'\nscaled = 'b'\n", "field 'b' is declared twice"),
    ],
)
def test_every_setting_out_of_its_range_is_a_configuration_error(
    tmp_path: Path, text: str, words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        _resolve([], {}, _toml(tmp_path, text))
    assert words in str(info.value)


def test_cuda_on_a_machine_without_it_is_a_configuration_error(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        assert _resolve([], {}, _toml(tmp_path, "[train]\ndevice = 'cuda'\n")).train.device
        return
    with pytest.raises(ConfigError, match="torch sees no CUDA device"):
        _resolve([], {}, _toml(tmp_path, "[train]\ndevice = 'cuda'\n"))


def test_a_config_file_that_is_not_utf8_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "fmstream.toml"
    path.write_bytes(b"[simulate]\ndays = 3 # \xff\xfe\n")
    with pytest.raises(ConfigError, match="TOML in UTF-8"):
        _resolve([], {}, path)


def test_unknown_fmstream_variables_are_named() -> None:
    env = {"FMSTREAM_SIMULATE_DAYZ": "3", "FMSTREAM_SIMULATE_DAYS": "3", "HOME": "/"}
    assert unknown_environment(env) == ["FMSTREAM_SIMULATE_DAYZ"]


def test_renamed_tables_and_variables_still_work_with_a_warning(tmp_path: Path) -> None:
    config = _toml(tmp_path, "[log]\nlevel = 'DEBUG'\n[joiner]\ngroup_id = 'old-group'\n")
    env = {"FMSTREAM_JOINER_STATE_DIR": "/var/lib/j", "FMSTREAM_LOG_LEVEL": "ERROR"}
    args = build_parser().parse_args(["simulate"])
    heard: list[str] = []
    s = resolve(args, OPTIONS, env, config, warn=heard.append)
    assert s.join_daemon.group_id == "old-group"
    assert s.join_daemon.state_dir == Path("/var/lib/j")
    assert s.logging.level == "ERROR"  # the environment still beats the file
    assert any("[joiner] is deprecated: rename it [join]" in w for w in heard)
    assert any("[log] is deprecated: rename it [logging]" in w for w in heard)
    assert any("set FMSTREAM_JOIN_STATE_DIR instead" in w for w in heard)
    assert unknown_environment(env) == []


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[joiner]\nwindow_ms = 5\n", "unknown key joiner.window_ms"),
        ("[joiner]\ngroup_id = 'a'\n[join]\ngroup_id = 'b'\n", "set in both [joiner] and [join]"),
    ],
)
def test_a_renamed_table_takes_only_its_own_keys(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        _resolve([], {}, _toml(tmp_path, text))
    assert words in str(info.value)


def test_the_embedding_regularization_flags_reach_the_row_optimizer() -> None:

    args = build_parser().parse_args(
        ["demo", "--sparse-l2", "0.5", "--sparse-initial-accumulator", "2"]
    )

    s = resolve(args, [*COMMON, *demo.OPTIONS], {}, None)
    optimizer = row_layout(ModelConfig("fm"), s.train.trainer_config()).optimizer
    assert optimizer == SplitRows(1, SparseFTRL(), SparseAdagrad(initial_accumulator=2.0, l2=0.5))
    with pytest.raises(ConfigError, match="sparse_initial_accumulator > 0"):
        resolve(
            build_parser().parse_args(["demo", "--sparse-initial-accumulator", "0"]),
            [*COMMON, *demo.OPTIONS],
            {},
            None,
        )


def test_a_features_table_declares_the_schema_and_prints_back_as_one(tmp_path: Path) -> None:
    text = "[features]\ncategorical = 'user, item'\ncontinuous = 'price'\nscaled = 'age'\n"
    text += "multi = 'tags'\n"
    schema = _resolve([], {}, _toml(tmp_path, text)).features.schema()
    assert schema == FeatureSchema(
        (
            FieldSpec("user"),
            FieldSpec("item"),
            FieldSpec("price", "continuous", "bucket"),
            FieldSpec("age", "continuous", "scaled"),
            FieldSpec("tags", "multi"),
        )
    )
    printed = tomllib.loads(schema_toml(schema, {"user": 3}))
    assert FeatureSettings(**printed["features"]).schema() == schema
    assert printed["train"] == {"admit_after_fields": "user:3"}
    assert _resolve([], {}, None).features.schema() is None  # inferred
