"""`[tool.looplint]`: discovery, validation, rule selection and path patterns."""

from __future__ import annotations

import pytest

from looplint.engine.config import DEFAULT_EXCLUDE, Config, ConfigError, load_config


def pyproject(directory, body: str):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "pyproject.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_nearest_pyproject_with_a_looplint_table_wins(tmp_path):
    pyproject(tmp_path, "[tool.looplint]\nignore = ['LL2']\n")
    # A nested pyproject.toml without [tool.looplint] does not stop the search.
    pyproject(tmp_path / "pkg", "[project]\nname = 'pkg'\n")
    (tmp_path / "pkg" / "src").mkdir()
    config = load_config(tmp_path / "pkg" / "src" / "train.py")
    assert config.source == tmp_path / "pyproject.toml"
    assert config.root == tmp_path
    assert config.ignore == ("LL2",)


def test_defaults_without_configuration_keep_the_project_root(tmp_path):
    pyproject(tmp_path, "[project]\nname = 'demo'\n")
    (tmp_path / "src").mkdir()
    config = load_config(tmp_path / "src")
    assert config.source is None
    assert config.root == tmp_path
    assert config.exclude == DEFAULT_EXCLUDE
    assert config.is_enabled("LL101", "src/train.py")


def test_all_keys_are_read(tmp_path):
    pyproject(
        tmp_path,
        """
[tool.looplint]
select = ["LL1", "ll2"]
extend-select = ["LL301"]
ignore = ["LL102"]
exclude = ["legacy/"]
extend-exclude = ["*_generated.py"]

[tool.looplint.per-file-ignores]
"tests/**" = ["LL101"]
"notebooks/*.py" = ["LL2"]
""",
    )
    config = load_config(tmp_path)
    assert config.select == ("LL1", "LL2")
    assert config.extend_select == ("LL301",)
    assert config.ignore == ("LL102",)
    assert config.exclude == ("legacy/",)
    assert config.extend_exclude == ("*_generated.py",)
    assert config.per_file_ignores == (("tests/**", ("LL101",)), ("notebooks/*.py", ("LL2",)))

    assert config.is_enabled("LL101", str(tmp_path / "src" / "train.py"))
    assert not config.is_enabled("LL101", str(tmp_path / "tests" / "unit" / "test_train.py"))
    assert config.is_enabled("LL102", "x.py") is False
    assert config.is_enabled("LL201", "x.py") and not config.is_enabled("LL201", "notebooks/a.py")
    assert config.is_enabled("LL301", "x.py") and not config.is_enabled("LL302", "x.py")
    # LL000 is never deselected by `select`, only by an explicit ignore.
    assert config.is_enabled("LL000", "x.py")

    assert config.is_excluded(tmp_path / "legacy", is_dir=True)
    assert config.is_excluded(tmp_path / "src" / "model_generated.py")
    assert not config.is_excluded(tmp_path / "src" / "model.py")
    # `exclude` replaced the defaults: build/ is no longer skipped.
    assert not config.is_excluded(tmp_path / "build", is_dir=True)


def test_default_excludes_apply_only_to_walked_paths(tmp_path):
    config = Config(root=tmp_path)
    assert config.is_excluded(tmp_path / "build", is_dir=True)
    assert config.is_excluded(tmp_path / "a" / "pkg.egg-info", is_dir=True)
    assert not config.is_excluded(tmp_path / "build", is_dir=True, explicit=True)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[tool.looplint]\nselekt = []\n", "unknown key 'selekt'"),
        ("[tool.looplint]\nselect = 'LL1'\n", "select must be a list of strings"),
        ("[tool.looplint]\nignore = [101]\n", "ignore must be a list of strings"),
        ("[tool.looplint]\nselect = ['E501']\n", "'E501' is not a rule code or prefix"),
        ("[tool.looplint]\nselect = ['LL9']\n", "'LL9' matches no rule"),
        ("[tool.looplint]\nper-file-ignores = ['x']\n", "per-file-ignores must be a table"),
        ('[tool.looplint.per-file-ignores]\n"a.py" = "LL1"\n', "must be a list of codes"),
        ("[tool.looplint\nselect = []\n", "invalid TOML"),
        ("[tool]\nlooplint = 3\n", "[tool.looplint] must be a table"),
    ],
)
def test_bad_configuration_is_a_clear_error(tmp_path, body, message):
    path = pyproject(tmp_path, body)
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_explicit_config_path(tmp_path):
    other = tmp_path / "ci"
    path = pyproject(other, "[tool.looplint]\nselect = ['LL3']\n")
    config = load_config(tmp_path, path=path)
    assert config.select == ("LL3",) and config.root == other
    with pytest.raises(ConfigError, match="no \\[tool.looplint\\] table"):
        load_config(tmp_path, path=pyproject(tmp_path / "empty", "[project]\n"))


def test_command_line_selection_overrides_and_extends():
    config = Config(select=("LL1",), extend_select=("LL301",), ignore=("LL102",))
    narrowed = config.with_cli(select=("LL2",), ignore=("LL201",))
    assert narrowed.select == ("LL2",) and narrowed.extend_select == ()
    assert narrowed.ignore == ("LL102", "LL201")
    widened = config.with_cli(extend_select=("LL4",))
    assert widened.select == ("LL1",) and widened.extend_select == ("LL301", "LL4")


def test_fingerprint_changes_with_the_selection_only():
    base = Config()
    assert base.fingerprint() == Config(extend_exclude=("x",)).fingerprint()
    assert base.fingerprint() != Config(ignore=("LL1",)).fingerprint()
    assert base.fingerprint() != Config(per_file_ignores=(("a.py", ("LL1",)),)).fingerprint()
