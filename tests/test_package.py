"""The distributions as PyPI would get them: the sdist and the wheel are built once, checked by
twine, their file lists and metadata compared with the source tree, and the wheel installed in a
fresh virtualenv where a new project (``django-admin startproject``) checks, migrates, runs
``taskd`` and collects the static files. Nothing here imports the repository's djangotasks: a
file missing from the wheel would pass every other test, which runs the source tree."""

from __future__ import annotations

import ast
import os
import shlex
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from email import message_from_string
from pathlib import Path, PurePosixPath

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.package

PACKAGE = ROOT / "djangotasks"
# What the sdist ships: the package, what a packager reads, PKG-INFO, and the .gitignore that
# hatchling always adds (a wheel built from the sdist excludes what it excludes). Its own test
# suite stays out: it needs the repository (demo/, the database servers of .ci/run, Chromium).
SDIST_TOP = {
    "djangotasks",
    "pyproject.toml",
    "README.md",
    "CHANGELOG.md",
    "LICENSE",
    "PKG-INFO",
    ".gitignore",
}
# What the getting-started guide asks for, appended to the new project's settings.py; the
# OPTIONS are what check W001 (djangotasks/checks.py) asks of a SQLite database.
SETTINGS = """
INSTALLED_APPS += ["django_htmx", "djangotasks"]
DATABASES["default"]["OPTIONS"] = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
}
STATIC_ROOT = BASE_DIR / "static_root"
"""


@dataclass(frozen=True)
class Dists:
    """The two distributions of one ``python -m build``."""

    sdist: Path
    wheel: Path


@dataclass(frozen=True)
class Venv:
    """A fresh virtualenv with the wheel (and its dependencies, from PyPI) installed."""

    root: Path
    python: Path
    site_packages: Path


@dataclass(frozen=True)
class Project:
    """A project made by the venv's ``django-admin startproject``, outside the repository."""

    venv: Venv
    root: Path

    def manage(self, *args: str) -> str:
        return run([self.venv.python, "manage.py", *args], cwd=self.root)


def clean_env() -> dict[str, str]:
    """A user's environment, without what this test run sets for its own processes: pytest-
    django's DJANGO_SETTINGS_MODULE (it would override manage.py's), a PYTHONPATH naming the
    repository, DJANGOTASKS_* and coverage's variables."""
    dropped = ("DJANGO", "PYTHON", "COVERAGE", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if not k.startswith(dropped)}


def run(command: list[str | Path], cwd: Path) -> str:
    """Run ``command`` and return what it printed; fail the test with all of it if it fails."""
    args = [str(arg) for arg in command]
    result = subprocess.run(
        args, cwd=cwd, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert result.returncode == 0, (
        f"{shlex.join(args)} (in {cwd}) exited with {result.returncode}:\n{result.stdout}"
    )
    return result.stdout


def source_version() -> str:
    """``__version__`` as written in djangotasks/__init__.py (hatchling reads the same line),
    without importing the package."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "__version__" for target in node.targets
        ):
            return str(ast.literal_eval(node.value))
    raise AssertionError("djangotasks/__init__.py sets no __version__")


def source_files(subdir: str, pattern: str = "*") -> set[str]:
    """The files of ``djangotasks/SUBDIR`` in the source tree, as wheel names."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in (PACKAGE / subdir).rglob(pattern)
        if path.is_file() and "__pycache__" not in path.parts
    }


def wheel_names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def sdist_names(sdist: Path) -> list[str]:
    """The sdist's files, without the ``djangotasks-VERSION/`` directory they are all in."""
    prefix = sdist.name.removesuffix(".tar.gz")
    with tarfile.open(sdist) as archive:
        members = [m.name for m in archive.getmembers() if m.isfile()]
    assert all(name.startswith(f"{prefix}/") for name in members), members
    return [name.removeprefix(f"{prefix}/") for name in members]


def development_files(names: list[str]) -> list[str]:
    """What a distribution must not ship: bytecode and SQLite databases left by a run."""
    return [
        name
        for name in names
        if "__pycache__" in PurePosixPath(name).parts
        or name.endswith((".pyc", ".pyo", ".sqlite3", ".sqlite", ".db"))
        or ".sqlite3-" in name  # -wal, -shm, -journal
    ]


def dist_info(names: list[str]) -> str:
    [directory] = {
        name.split("/")[0] for name in names if name.split("/")[0].endswith(".dist-info")
    }
    return directory


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """Both distributions, built from the repository as ``make dist`` builds them."""
    outdir = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", outdir, ROOT], cwd=ROOT)
    version = source_version()
    sdist = outdir / f"djangotasks-{version}.tar.gz"
    wheel = outdir / f"djangotasks-{version}-py3-none-any.whl"
    assert sorted(outdir.iterdir()) == sorted([sdist, wheel]), sorted(outdir.iterdir())
    return Dists(sdist, wheel)


@pytest.fixture(scope="module")
def venv(dists: Dists, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """The wheel installed as a user installs it; its dependencies come from PyPI."""
    root = tmp_path_factory.mktemp("venv")
    assert not root.is_relative_to(ROOT)
    run([sys.executable, "-m", "venv", root], cwd=root)
    python = root / "bin" / "python"
    run([python, "-m", "pip", "install", "--disable-pip-version-check", "-q", dists.wheel], root)
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], root)
    return Venv(root, python, Path(purelib.strip()))


@pytest.fixture(scope="module")
def project(venv: Venv, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A new project with djangotasks in INSTALLED_APPS; its cwd is outside the repository, so
    only the installed copy of djangotasks can be imported."""
    root = tmp_path_factory.mktemp("project")
    assert not root.is_relative_to(ROOT)
    # "site" would be refused: startproject will not shadow the standard library's module.
    run([venv.root / "bin" / "django-admin", "startproject", "pkgsite", root], cwd=root)
    with open(root / "pkgsite" / "settings.py", "a") as settings:
        settings.write(SETTINGS)
    return Project(venv, root)


def test_twine_check_strict_passes(dists):
    """PyPI refuses an upload whose metadata or README does not render; twine says so first."""
    run([sys.executable, "-m", "twine", "check", "--strict", dists.sdist, dists.wheel], cwd=ROOT)


def test_the_wheel_ships_the_package_data_and_the_license(dists):
    """Templates, static files and migrations are data hatchling takes from the tree as it is:
    compared with the source tree, a new one cannot be left out unnoticed."""
    names = set(wheel_names(dists.wheel))
    for expected in (
        source_files("migrations", "*.py"),
        source_files("templates"),
        source_files("static"),
        {"djangotasks/py.typed"},
    ):
        assert expected, "the source tree has none of these"
        assert not expected - names, sorted(expected - names)
    assert f"{dist_info(list(names))}/licenses/LICENSE" in names, sorted(names)


def test_the_wheel_ships_only_the_package(dists):
    """The wheel is installed into site-packages: a tests/ or demo/ there would shadow a user's
    own, and bytecode or a database left by a test run must not travel."""
    names = wheel_names(dists.wheel)
    assert {name.split("/")[0] for name in names} == {"djangotasks", dist_info(names)}, names
    assert development_files(names) == []


def test_the_wheel_metadata(dists):
    """What pip and PyPI read: the version is djangotasks.__version__, and the classifiers claim
    only what CI runs (the daemon needs Linux)."""
    names = wheel_names(dists.wheel)
    with zipfile.ZipFile(dists.wheel) as archive:
        metadata = message_from_string(archive.read(f"{dist_info(names)}/METADATA").decode())
    assert metadata["Name"] == "djangotasks"
    assert metadata["Version"] == source_version()
    assert metadata["License-Expression"] == "BSD-3-Clause"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["Requires-Python"] == ">=3.12"
    classifiers = metadata.get_all("Classifier") or []
    for classifier in (
        "Framework :: Django :: 5.2",
        "Framework :: Django :: 6.0",
        "Framework :: Django :: 6.1",
        "Operating System :: POSIX :: Linux",
    ):
        assert classifier in classifiers, classifiers
    assert not [c for c in classifiers if "MacOS" in c], classifiers


def test_the_sdist_ships_the_package_and_the_license(dists):
    """Distributions rebuild from the sdist (conda-forge, Debian): it carries the package, the
    LICENSE the BSD licence requires with every copy, and no files of a development run."""
    names = sdist_names(dists.sdist)
    assert {name.split("/")[0] for name in names} == SDIST_TOP, sorted(names)
    wheel_package = {name for name in wheel_names(dists.wheel) if name.startswith("djangotasks/")}
    assert not wheel_package - set(names), sorted(wheel_package - set(names))
    assert development_files(names) == []
    with tarfile.open(dists.sdist) as archive:
        member = archive.extractfile(f"{dists.sdist.name.removesuffix('.tar.gz')}/PKG-INFO")
        assert member is not None
        pkg_info = message_from_string(member.read().decode())
    assert pkg_info["Version"] == source_version()


def test_a_wheel_built_from_the_sdist_is_the_same(dists, tmp_path):
    """pip builds the sdist when no wheel fits: that wheel must not lose a file the sdist left
    out (hatchling's sdist include list and the wheel's package are configured apart)."""
    with tarfile.open(dists.sdist) as archive:
        archive.extractall(tmp_path / "src", filter="data")
    [unpacked] = (tmp_path / "src").iterdir()
    outdir = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--wheel", "--outdir", outdir, unpacked], cwd=unpacked)
    [rebuilt] = outdir.glob("*.whl")
    assert rebuilt.name == dists.wheel.name
    assert sorted(wheel_names(rebuilt)) == sorted(wheel_names(dists.wheel))


def test_the_venv_imports_the_installed_wheel(project):
    """The other tests in the venv prove something only if they run the wheel's copy, not the
    repository's."""
    code = (
        "import importlib.metadata, djangotasks; "
        "print(djangotasks.__file__); print(importlib.metadata.version('djangotasks'))"
    )
    out = run([project.venv.python, "-c", code], cwd=project.root)
    path, version = out.split()
    assert Path(path).is_relative_to(project.venv.site_packages), out
    assert not Path(path).is_relative_to(ROOT), out
    assert version == source_version()


def test_a_new_project_checks_and_migrates(project):
    """A new project passes djangotasks' checks once it has the settings they ask for, and the
    shipped migrations apply from scratch."""
    out = project.manage("check", "--fail-level", "WARNING")
    assert "System check identified no issues" in out, out
    project.manage("migrate")
    out = project.manage("showmigrations", "djangotasks")
    shipped = {path.stem for path in (PACKAGE / "migrations").glob("0*.py")}
    applied = {line.split()[-1] for line in out.splitlines() if line.strip().startswith("[X]")}
    assert applied == shipped, out
    assert "[ ]" not in out, out


def test_taskd_is_a_command_of_the_new_project(project):
    """The management commands are found in the installed package (its management/ package)."""
    out = project.manage("taskd", "--help")
    assert "usage: manage.py taskd" in out, out


def test_collectstatic_collects_the_admin_assets(project):
    """The admin pages load djangotasks' CSS and JavaScript from STATIC_ROOT in production."""
    project.manage("collectstatic", "--noinput")
    static_root = project.root / "static_root"
    for name in source_files("static"):
        relative = Path(name).relative_to("djangotasks/static")
        collected = static_root / relative
        assert collected.is_file(), sorted(
            str(p.relative_to(static_root)) for p in static_root.rglob("*")
        )
        assert collected.read_bytes() == (PACKAGE / "static" / relative).read_bytes()
