"""What leaves the laptop: the package `orch submit` / `orch sweep --address` upload, its
`--dry-run` listing, and the git diff recorded with a sweep (real git repositories)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from orchestrator.cluster import package_project, prepare_submission
from orchestrator.provenance import MAX_DIFF_BYTES, SUBMITTED_FILE, collect
from orchestrator.shipping import plan
from orchestrator.workspace import STORES_FILE
from tests.conftest import REPO

ORCH = str(Path(sys.executable).with_name("orch"))
SPEC = (REPO / "search_spaces" / "quadratic.yaml").read_text()
SECRETS = {
    ".env": "DB_PASSWORD=hunter2-env\n",
    ".env.local": "TOKEN=hunter2-env-local\n",
    ".aws/credentials": "[default]\naws_secret_access_key=hunter2-aws\n",
    ".aws/config": "[default]\nregion=eu-west-1\n",
    ".ssh/id_ed25519": "hunter2-ssh\n",
    "id_rsa": "hunter2-rsa\n",
    "keys/server.pem": "hunter2-pem\n",
    "deploy.key": "hunter2-key\n",
    ".netrc": "machine x password hunter2-netrc\n",
    "gcp-credentials.json": '{"private_key": "hunter2-gcp"}\n',
}


def _project(root: Path) -> Path:
    """A project with code, a git-ignored folder, and secret-looking files all over."""
    (root / "search_spaces").mkdir(parents=True)
    (root / "jobs").mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    (root / "search_spaces" / "q.yaml").write_text(SPEC)
    (root / "jobs" / "__init__.py").write_text("")
    (root / "jobs" / "quadratic.py").write_text((REPO / "jobs" / "quadratic.py").read_text())
    (root / "data").mkdir()
    (root / "data" / "big.bin").write_bytes(b"0" * 1000)
    (root / ".gitignore").write_text("data/\n")
    for name, text in SECRETS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def _orch(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "ORCH_"))}
    return subprocess.run(
        [ORCH, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, "PYTHONPATH": str(REPO), "COLUMNS": "80", **env},
    )


def test_secret_looking_files_are_never_shipped_unless_orchignore_names_them(
    tmp_path: Path,
) -> None:
    project = _project(tmp_path / "proj")
    submission = prepare_submission(project / "search_spaces" / "q.yaml")
    shipped = submission.shipment.paths
    assert {"pyproject.toml", "search_spaces/q.yaml", "jobs/quadratic.py", ".gitignore"} <= shipped
    assert not any(path.startswith("data/") for path in shipped)
    assert not shipped & set(SECRETS)
    assert set(submission.shipment.secrets) == {
        ".env",
        ".env.local",
        ".aws/",
        ".ssh/",
        "id_rsa",
        "keys/server.pem",
        "deploy.key",
        ".netrc",
        "gcp-credentials.json",
    }
    archive = tmp_path / "p.zip"
    files, size = package_project(submission, archive)
    with zipfile.ZipFile(archive) as bundle:
        names = set(bundle.namelist())
        assert names == shipped | {SUBMITTED_FILE}
        assert files == len(names) and size > 0
        assert not any(b"hunter2" in bundle.read(name) for name in names)

    # orch's own ignore file: more to leave out, and secrets shipped only when named.
    ignore = "# ours\njobs/__init__.py\n!keys/server.pem\n!.aws/config\n"
    (project / ".orchignore").write_text(ignore)
    shipped = plan(project).paths
    assert "keys/server.pem" in shipped and ".aws/config" in shipped
    assert ".aws/credentials" not in shipped and ".env" not in shipped
    assert "jobs/__init__.py" not in shipped and ".orchignore" in shipped


def test_submit_dry_run_lists_every_file_and_the_command_without_a_cluster(
    tmp_path: Path,
) -> None:
    project = _project(tmp_path / "proj")
    storage = "postgresql://orch:hunter2-db@db.example:5432/optuna"
    done = _orch(
        "submit",
        "search_spaces/q.yaml",
        "--dry-run",
        "--set",
        "trials=4",
        "--storage",
        storage,
        cwd=project,
        ORCH_HOME=str(tmp_path / "no-clusters"),  # no cluster known: contacting one would fail
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for path in plan(project).paths | {SUBMITTED_FILE, STORES_FILE}:
        line = next((x for x in text.splitlines() if x.endswith(f"  {path}")), None)
        assert line is not None and ("B" in line.split()[1] or "KiB" in line), path
    assert "hunter2" not in text + done.stderr
    assert "postgresql://orch:***@db.example:5432/optuna" in text
    command = next(x for x in text.splitlines() if "sweep search_spaces/q.yaml" in x)
    assert "--set trials=4" in command and "--storage" not in command
    listed = text[text.index("left out as secret-looking") :]
    assert ".env" in listed and ".aws/" in listed and "keys/server.pem" in listed
    assert "dry run: nothing was sent" in text

    # orch sweep --address --dry-run: the same package, the command, no Ray started.
    swept = _orch(
        "sweep", "search_spaces/q.yaml", "--address", "127.0.0.1:9", "--dry-run", cwd=project
    )
    assert swept.returncode == 0, swept.stderr
    uploaded = swept.stdout[: swept.stdout.index("left out as secret-looking")]
    assert "  jobs/quadratic.py" in uploaded and ".env" not in uploaded
    assert "trials run on 127.0.0.1:9" in swept.stdout
    assert not (project / ".orch").exists()


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
    )


def test_recorded_diff_covers_only_shipped_files_capped_and_without_secrets(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    project = _project(repo / "proj")
    (repo / "outside").mkdir()
    (repo / "outside" / "notes.txt").write_text("nothing yet\n")
    (project / "big.txt").write_text("x\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A", "-f")  # the secrets are tracked too (it happens)
    _git(repo, "commit", "-q", "-m", "init")
    # Changes: shipped code, a file outside the project, a tracked secret, new secrets, a
    # deleted file, and one change over the cap.
    (project / "jobs" / "quadratic.py").write_text("# changed here\n")
    (repo / "outside" / "notes.txt").write_text("password: hunter2-outside\n")
    (project / ".env").write_text("DB_PASSWORD=hunter2-changed\n")
    (project / ".env.production").write_text("hunter2-untracked\n")
    (project / "id_ecdsa").write_text("hunter2-untracked-key\n")
    (project / "pyproject.toml").unlink()
    (project / "big.txt").write_text(("y" * 79 + "\n") * (MAX_DIFF_BYTES // 80 + 10))

    found = collect(project)
    diff = found.files["code/git.diff"].decode()
    status = found.files["code/git-status.txt"].decode()
    assert found.tags["orch.git_dirty"] == "true"
    assert "+# changed here" in diff and "jobs/quadratic.py" in status
    assert "pyproject.toml" in diff and "D pyproject.toml" in status  # deleted shipped file
    assert "hunter2" not in diff + status
    assert ".env" not in status and "id_ecdsa" not in status and "outside" not in diff
    assert len(found.files["code/git.diff"]) <= MAX_DIFF_BYTES + 1000
    assert "diff cut at" in diff and "big.txt" in diff.splitlines()[-1]

    # A change outside the project alone leaves the shipped code clean.
    _git(repo, "checkout", "-q", "--", "proj")
    for name in (".env.production", "id_ecdsa"):
        (project / name).unlink()
    clean = collect(project)
    assert clean.tags["orch.git_dirty"] == "false" and "code/git.diff" not in clean.files


@pytest.mark.parametrize("name", ["../../x", "a/b", ".", "~x", "x" * 65, "", "é"])
def test_path_like_cluster_names_are_refused_with_exit_2(tmp_path: Path, name: str) -> None:
    home = tmp_path / "home"
    victim = tmp_path / "x"
    (victim / "keep").mkdir(parents=True)
    (victim / "state.json").write_text(
        '{"name": "x", "provider": "fake_multinode", "sessions": [], '
        f'"temp_dir": "{victim / "keep"}"}}'
    )
    for args in (["cluster", "down", name], ["cluster", "env", name]):
        done = _orch(*args, cwd=tmp_path, ORCH_HOME=str(home))  # home/clusters/../../x is x
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "a cluster name is 1-64 letters" in lines[0], done.stderr
        assert "Traceback" not in done.stderr
    assert (victim / "keep").is_dir() and (victim / "state.json").exists()
