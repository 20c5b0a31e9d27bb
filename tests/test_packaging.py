"""The sdist and the wheel (``python -m build``): every package file is in the wheel, the licence and version are
in its metadata, and the CLI runs from the wheel installed into a clean virtual environment (so a file missing
from the package fails here)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = "examples/minimal_case"
PACKAGED_EXAMPLE = "neckmatch/data/minimal_case"  # a link to EXAMPLE in the source tree
NOT_SHIPPED = {f"{EXAMPLE}/make_case.py"}  # the script that makes the example case, not part of it


def _source_files() -> list[str]:
    """The files of the source tree that a clone has (tracked, or new and not ignored), as git lists them."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         check=True, capture_output=True).stdout.decode()  # fmt: skip
    return sorted(f for f in out.split("\0") if f and ((REPO / f).exists() or (REPO / f).is_symlink()))


def _version() -> str:
    return str(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist and wheel built from a copy of the source tree (the wheel is built from the sdist, as pip would)."""
    root = tmp_path_factory.mktemp("build")
    src = root / "src"
    for rel in _source_files():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, src / rel, follow_symlinks=False)
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(root / "dist"), str(src)],
                   check=True, capture_output=True)  # fmt: skip
    return root / "dist"


def _wheel(dist: Path) -> Path:
    (wheel,) = dist.glob("neckmatch-*.whl")
    return wheel


def test_wheel_holds_every_package_file(dist: Path) -> None:
    files = _source_files()
    expected = {f for f in files if f.startswith("neckmatch/") and f != PACKAGED_EXAMPLE}
    expected |= {f.replace(EXAMPLE, PACKAGED_EXAMPLE, 1) for f in files
                 if f.startswith(f"{EXAMPLE}/") and f not in NOT_SHIPPED}  # fmt: skip
    assert {f"{PACKAGED_EXAMPLE}/case.json", f"{PACKAGED_EXAMPLE}/mri/nodes.nii.gz"} <= expected
    names = set(zipfile.ZipFile(_wheel(dist)).namelist())
    assert sorted(expected - names) == []
    assert not [n for n in names if n.endswith(".pyc") or "/tests/" in n or n.startswith("tests/")]


def test_metadata_carries_version_and_licence(dist: Path) -> None:
    version = _version()
    assert _wheel(dist).name == f"neckmatch-{version}-py3-none-any.whl"
    with zipfile.ZipFile(_wheel(dist)) as zf:
        meta = zf.read(f"neckmatch-{version}.dist-info/METADATA").decode()
        licence = zf.read(f"neckmatch-{version}.dist-info/licenses/LICENSE").decode()
    assert f"\nVersion: {version}\n" in meta and "\nLicense-Expression: Apache-2.0\n" in meta
    assert licence == (REPO / "LICENSE").read_text()
    with tarfile.open(dist / f"neckmatch-{version}.tar.gz") as tf:
        names = set(tf.getnames())
    top = f"neckmatch-{version}"
    shipped = {"LICENSE", "README.md", "pyproject.toml", f"{PACKAGED_EXAMPLE}/case.json"}
    assert {f"{top}/{name}" for name in shipped} <= names


def test_the_installed_wheel_runs_the_cli(dist: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([str(env_dir / "bin" / "python"), "-c", purelib], check=True, capture_output=True,
                               text=True).stdout.strip())  # fmt: skip
    # the dependencies come from the test environment, appended after the clean site-packages (no neckmatch there
    # is importable: the editable install's own .pth is not read from a path added this way)
    (site / "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"), "install", "-q",
                    "--no-deps", "--no-index", str(_wheel(dist))], check=True, capture_output=True)  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    work = tmp_path / "work"
    work.mkdir()

    def cli(*args: str) -> str:
        res = subprocess.run([str(env_dir / "bin" / "neckmatch"), *args], cwd=work, env=env, capture_output=True,
                             text=True)  # fmt: skip
        assert res.returncode == 0, res.stderr
        return res.stdout

    where = subprocess.run([str(env_dir / "bin" / "python"), "-c", "import neckmatch; print(neckmatch.__file__)"],
                           cwd=work, env=env, check=True, capture_output=True, text=True).stdout  # fmt: skip
    assert Path(where.strip()).is_relative_to(env_dir)
    assert cli("--version").strip() == f"neckmatch {_version()}"
    cli("example", "--out", "case")
    summary = json.loads(cli("inspect", "case", "--json"))
    assert summary["case_id"] == "MIN01" and summary["nodes"]["labels"] == [1, 2, 3, 4]
    cli("levels", "case", "--out", "levels", "--no-level-map")
    assert (work / "levels" / "levels.csv").read_text().count("\n") == 5  # header + four MR nodes
