"""The pre-commit hooks (.pre-commit-config.yaml) run the checks of `make lint`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ingestion import project

REPO_ROOT = project.REPO_ROOT
VENV_BIN = Path(sys.executable).parent


def _pre_commit(cwd: Path, *args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PRE_COMMIT_HOME": str(home), "SKIP": ""}
    return subprocess.run(
        [str(VENV_BIN / "pre-commit"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_hooks_pass_on_the_tree_and_stop_bad_python_and_sql(tmp_path: Path) -> None:
    home = tmp_path / "pre-commit-home"
    config = _pre_commit(REPO_ROOT, "validate-config", ".pre-commit-config.yaml", home=home)
    assert config.returncode == 0, config.stdout + config.stderr

    # a repository with the project's lint settings and the virtualenv's tools
    repo = tmp_path / "repo"
    (repo / "dbt_project" / "models").mkdir(parents=True)
    for name in (".pre-commit-config.yaml", "pyproject.toml"):
        shutil.copy(REPO_ROOT / name, repo / name)
    for name in (".sqlfluff", ".sqlfluffignore"):
        shutil.copy(REPO_ROOT / "dbt_project" / name, repo / "dbt_project" / name)
    (repo / ".venv").mkdir()
    (repo / ".venv" / "bin").symlink_to(VENV_BIN)
    (repo / ".gitignore").write_text(".venv/\n")
    good_sql = REPO_ROOT / "dbt_project" / "models" / "marts" / "f_sales.sql"
    shutil.copy(good_sql, repo / "dbt_project" / "models" / "f_sales.sql")
    shutil.copy(REPO_ROOT / "ingestion" / "dates.py", repo / "dates.py")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    clean = _pre_commit(repo, "run", "--all-files", home=home)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.count("Passed") == 3, clean.stdout

    (repo / "bad.py").write_text("import os\nx = {  'a':1 }\n")
    (repo / "dbt_project" / "models" / "bad.sql").write_text("SELECT A,b FROM t\n")
    _git(repo, "add", "-A")
    dirty = _pre_commit(repo, "run", "--all-files", home=home)
    assert dirty.returncode != 0
    assert "F401" in dirty.stdout  # ruff: unused import
    assert "1 file reformatted" in dirty.stdout  # ruff format fixed bad.py
    assert "bad.sql" in dirty.stdout and "CP01" in dirty.stdout  # sqlfluff: capitalisation
    assert (repo / "bad.py").read_text() == 'import os\n\nx = {"a": 1}\n'
