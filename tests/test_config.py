"""Settings: defaults < MARS_CONFIG file < MARS_* environment < mapping; every problem reported."""

from __future__ import annotations

import logging
import re

import pytest
from click.testing import CliRunner

from mars_server import create_app
from mars_server.config import ConfigError
from mars_server.ops.cli import cli
from mars_server.testing import settings_for_tests


@pytest.fixture
def clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("MARS_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_sources_are_layered(clean_env, tmp_path):
    config_file = tmp_path / "mars.toml"
    config_file.write_text(
        'page_size_default = 10\nmax_content_length = 4096\nlog_level = "WARNING"\n'
        "[plugins.projects]\ndescription_max_length = 100\n"
    )
    clean_env.setenv("MARS_CONFIG", str(config_file))
    clean_env.setenv("MARS_MAX_CONTENT_LENGTH", "8192")
    clean_env.setenv("MARS_PAGE_SIZE_DEFAULT", "20")
    app = create_app(settings_for_tests("sqlite://", tmp_path, PAGE_SIZE_DEFAULT=30))
    settings = app.config["MARS"]
    assert settings["PAGE_SIZE_DEFAULT"] == 30  # mapping beats environment
    assert settings["MAX_CONTENT_LENGTH"] == 8192  # environment beats file
    assert app.config["MAX_CONTENT_LENGTH"] == 8192
    assert settings["LOG_LEVEL"] == "WARNING"  # file beats default
    assert settings["PAGE_SIZE_MAX"] == 200  # default
    assert app.extensions["mars"].plugin_settings["projects"] == {"description_max_length": 100}


def test_production_needs_a_real_secret_key(clean_env, tmp_path):
    with pytest.raises(ConfigError, match="MARS_SECRET_KEY: required in production"):
        create_app({"INSTANCE_PATH": str(tmp_path)})
    with pytest.raises(ConfigError, match="at least 32 characters"):
        create_app({"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "short"})


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, "MARS_PUBLIC_URL: required in production"),
        ("mars.example.org", "is not an http(s) address"),
        ("https://mars.example.org/?x=1", "is not an http(s) address"),
        ("http://mars.example.org", "must be https:// in production"),
    ],
)
def test_production_needs_a_public_https_address(clean_env, tmp_path, value, problem):
    settings = {"INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "k" * 40, "MAIL_BACKEND": "files"}
    with pytest.raises(ConfigError, match=re.escape(problem)):
        create_app({**settings, "PUBLIC_URL": value})
    app = create_app({**settings, "PUBLIC_URL": "https://mars.example.org/"})
    assert app.config["MARS"]["PUBLIC_URL"] == "https://mars.example.org"


def test_development_keeps_a_generated_key_in_the_instance_folder(clean_env, tmp_path):
    first = create_app({"ENV": "development", "INSTANCE_PATH": str(tmp_path)})
    second = create_app({"ENV": "development", "INSTANCE_PATH": str(tmp_path)})
    assert len(first.config["SECRET_KEY"]) >= 32
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"]
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_default_database_is_sqlite_in_the_instance_folder(clean_env, tmp_path):
    app = create_app({"ENV": "development", "INSTANCE_PATH": str(tmp_path)})
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'mars.db'}"


@pytest.mark.parametrize(
    "url", ["postgresql://u@h/d", "postgres://u@h/d", "postgresql+psycopg2://u@h/d"]
)
def test_postgres_urls_use_psycopg3_with_pre_ping(clean_env, tmp_path, url):
    app = create_app(settings_for_tests(url, tmp_path))
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@h/d"
    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"]["pool_pre_ping"] is True


def test_unknown_environment_names_are_warned_about(clean_env, tmp_path, caplog):
    clean_env.setenv("MARS_DATABSE_URL", "sqlite://")
    with caplog.at_level(logging.WARNING):
        create_app(settings_for_tests("sqlite://", tmp_path))
    assert "unknown setting MARS_DATABSE_URL ignored" in caplog.text


def test_every_problem_is_reported_at_once(clean_env, tmp_path):
    clean_env.setenv("MARS_MAX_CONTENT_LENGTH", "lots")
    clean_env.setenv("MARS_LOG_LEVEL", "LOUD")
    with pytest.raises(ConfigError) as info:
        create_app({"INSTANCE_PATH": str(tmp_path)})
    # ...and the missing secret key, SMTP host and public address
    assert len(info.value.problems) == 5
    assert any(p.startswith("MARS_MAX_CONTENT_LENGTH:") for p in info.value.problems)
    assert any(p.startswith("MARS_LOG_LEVEL:") for p in info.value.problems)


def test_bad_config_file_is_a_problem(clean_env, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = not toml =")
    clean_env.setenv("MARS_CONFIG", str(bad))
    with pytest.raises(ConfigError, match="not valid TOML"):
        create_app(settings_for_tests("sqlite://", tmp_path))


def test_mars_check_prints_every_problem_and_fails(clean_env, tmp_path):
    clean_env.setenv("MARS_INSTANCE_PATH", str(tmp_path))
    clean_env.setenv("MARS_CORS_ORIGINS", "*,https://ok.test/path")
    clean_env.setenv("MARS_PROJECTS__DESCRIPTION_MAX_LENGTH", "0")
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 1
    problems = [line for line in result.output.splitlines() if line.startswith("problem:")]
    assert len(problems) == 6, result.output
    assert any("MARS_SMTP_HOST: required" in p for p in problems)
    assert any("MARS_PUBLIC_URL: required in production" in p for p in problems)
    assert any("MARS_SECRET_KEY" in p for p in problems)
    assert any("'*' is refused" in p for p in problems)
    assert any("'https://ok.test/path' is not an origin" in p for p in problems)
    assert any("plugin 'projects' setting 'description_max_length'" in p for p in problems)


def test_mars_check_passes_on_a_migrated_database(clean_env, tmp_path):
    clean_env.setenv("MARS_ENV", "development")
    clean_env.setenv("MARS_INSTANCE_PATH", str(tmp_path))
    runner = CliRunner()
    failing = runner.invoke(cli, ["check"])
    assert failing.exit_code == 1
    assert "not at head" in failing.output
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(cli, ["check"])
    assert result.exit_code == 0, result.output
    assert "are fine" in result.output
    assert "warning" not in result.output


def test_mars_check_warns_of_values_under_a_key_about_to_go_and_never_shows_a_key(
    clean_env, tmp_path
):
    from cryptography.fernet import Fernet

    from mars_server.crypto import seal
    from mars_server.db import db
    from mars_server.events import enqueue

    key = Fernet.generate_key().decode()
    clean_env.setenv("MARS_ENV", "development")
    clean_env.setenv("MARS_INSTANCE_PATH", str(tmp_path))
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    app = create_app()
    with app.app_context():
        enqueue("mail.send", message=seal(b"under the derived key"), template="t")
        db.session.commit()
    clean_env.setenv("MARS_ENCRYPTION_KEYS", f"{key},derived")
    result = runner.invoke(cli, ["check"])
    assert result.exit_code == 0, result.output
    warning = "warning: sealed values still depend on keys other than the first (1 under derived)"
    assert warning in result.output
    assert key not in result.output
    assert runner.invoke(cli, ["keys", "rotate"]).exit_code == 0
    assert "warning" not in runner.invoke(cli, ["check"]).output


# --- settings from files (MARS_X_FILE) ------------------------------------------------------


def test_a_setting_can_come_from_the_file_its_FILE_variable_names(clean_env, tmp_path):
    token = tmp_path / "metrics_token"
    token.write_text("a-metrics-token-from-a-file\n")  # one final newline, as `echo` writes
    size = tmp_path / "page_size"
    size.write_text("25")
    clean_env.setenv("MARS_METRICS_TOKEN_FILE", str(token))
    clean_env.setenv("MARS_PAGE_SIZE_DEFAULT_FILE", str(size))
    settings = create_app(settings_for_tests("sqlite://", tmp_path)).config["MARS"]
    assert settings["METRICS_TOKEN"] == "a-metrics-token-from-a-file"
    assert settings["PAGE_SIZE_DEFAULT"] == 25
    # a setting whose own name ends in _FILE is that setting, and has a _FILE of its own
    (tmp_path / "ca.pem").write_text("")  # only its path is read here
    ca = tmp_path / "ca_path"
    ca.write_text(str(tmp_path / "ca.pem"))
    clean_env.setenv("MARS_SMTP_CA_FILE_FILE", str(ca))
    settings = create_app(settings_for_tests("sqlite://", tmp_path)).config["MARS"]
    assert settings["SMTP_CA_FILE"] == str(tmp_path / "ca.pem")


def test_a_setting_file_that_cannot_serve_is_a_problem_that_never_shows_it(clean_env, tmp_path):
    secret = "hunter2-must-never-be-printed"
    both = tmp_path / "both"
    both.write_text(secret)
    large = tmp_path / "large"
    large.write_text(secret + "x" * 70_000)
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe" + secret.encode())
    clean_env.setenv("MARS_SMTP_PASSWORD", secret)
    clean_env.setenv("MARS_SMTP_PASSWORD_FILE", str(both))
    clean_env.setenv("MARS_METRICS_TOKEN_FILE", str(large))
    clean_env.setenv("MARS_SMTP_USERNAME_FILE", str(binary))
    clean_env.setenv("MARS_REDIS_URL_FILE", str(tmp_path / "missing"))
    clean_env.setenv("MARS_INSTANCE_PATH", str(tmp_path))
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 1
    assert "MARS_SMTP_PASSWORD_FILE: MARS_SMTP_PASSWORD is set too; set one of them" in (
        result.output
    )
    assert f"MARS_METRICS_TOKEN_FILE: {large} holds more than 64 KiB" in result.output
    assert f"MARS_SMTP_USERNAME_FILE: {binary} is not UTF-8 text" in result.output
    assert f"MARS_REDIS_URL_FILE: cannot read {tmp_path / 'missing'}: No such file" in (
        result.output
    )
    assert secret not in result.output


def test_a_plugin_setting_can_come_from_a_file(clean_env, install_plugins, tmp_path):
    install_plugins(good="good")
    greeting = tmp_path / "greeting"
    greeting.write_text("bonjour\n")
    clean_env.setenv("MARS_GOOD__GREETING_FILE", str(greeting))
    app = create_app(settings_for_tests("sqlite://", tmp_path))
    assert app.extensions["mars"].plugin_settings["good"]["greeting"] == "bonjour"
    clean_env.setenv("MARS_GOOD__GREETING", "hello")
    clean_env.setenv("MARS_GOOD__RETRIES_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError) as info:
        create_app(settings_for_tests("sqlite://", tmp_path))
    problems = info.value.problems
    assert "plugin 'good' setting 'greeting_file': 'greeting' is set too; set one of them" in (
        problems
    )
    assert any(p.startswith("plugin 'good' setting 'retries_file': cannot read") for p in problems)
