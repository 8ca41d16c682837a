"""The compatibility job: Flask's own test suite, and those of the extensions
karaffe builds on, pass with :class:`karaffe.App` in place of ``flask.Flask``.

"Plain Flask stays plain" is checked against the specification of what a Flask
is: its test suite. For each suite the job downloads the sdist of the
*installed* version (with pip, so your pip configuration applies: index,
proxy, ``--find-links``), runs its tests twice in a subprocess, as released
and with ``flask.Flask`` replaced by ``karaffe.App`` (``karaffe_as_flask.py``),
and fails on any test that passes for Flask and does not for App, unless it is
listed in the suite's ``expected`` differences with the reason. A test that
fails in both runs (an environment without ``asgiref``, a newer SQLAlchemy)
says nothing about karaffe and is ignored.

Downloads are cached per version in the temporary directory, so a run costs
the suites' own time (about 15 s in all). Where an sdist cannot be
downloaded, the test says why and is skipped; with ``CI`` set it fails
instead, as the real-server tests do, so the job cannot silently stop running
there. See docs/flask-compatibility.md.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import typing as t
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import karaffe

HERE = Path(__file__).resolve().parent
CACHE = Path(tempfile.gettempdir()) / f"karaffe-compat-{getattr(os, 'getuid', lambda: 0)()}"
#: Each run of a suite, which takes seconds, is stopped after this long.
RUN_TIMEOUT = 180
#: Only the source distribution: the tests are not in the wheels.
PIP_DOWNLOAD = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
# An offline machine gives up in seconds instead of retrying for minutes.
PIP_DOWNLOAD += ["--timeout", "20", "--retries", "1", "--disable-pip-version-check", "--quiet"]


@dataclass(frozen=True)
class Suite:
    """An upstream test suite, run from the sdist of the installed ``dist``."""

    dist: str
    #: Tests that may pass for Flask and fail for App, on purpose: node id
    #: (``tests/test_basic.py::test_name``) -> why. A listed test that no longer
    #: differs fails the job, so that the list (and the docs) stay true.
    expected: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.dist


# karaffe's one difference on purpose, problem+json for HTTP errors on routes
# under API_PREFIXES ("/api" by default), shows in none of these suites: the
# only upstream test that requests such a path (Flask-WTF's
# test_protect_apply_exemptions, POST /api) checks status codes, which the
# problem document keeps. Were one to compare an error body under /api, it
# would be listed here as: "problem+json on API routes; API_PREFIXES=[] turns
# it off (docs/flask-compatibility.md)".
SUITES = [Suite("flask"), Suite("flask-sqlalchemy"), Suite("flask-wtf")]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("suite", SUITES, ids=str)
def test_upstream_suite_passes_with_karaffe_app(suite: Suite, tmp_path: Path) -> None:
    source = unpacked(sdist(suite.dist))
    flask_run, app_run = run_suites(source, tmp_path)

    passed_for_flask = [test for test, result in flask_run.items() if result.passed]
    if not len(passed_for_flask) > 0.5 * len(flask_run) > 0:
        pytest.fail(
            f"the {suite} suite mostly fails with plain Flask; is the environment broken?\n"
            + summary(flask_run),
            pytrace=False,
        )
    missing = Result("not run with App")
    regressions = {
        test: app_run.get(test, missing)
        for test in passed_for_flask
        if not app_run.get(test, missing).passed
    }
    unexpected = {test: r for test, r in regressions.items() if test not in suite.expected}
    if unexpected:
        pytest.fail(
            f"{len(unexpected)} test(s) of {suite} {version(suite.dist)} pass for Flask and "
            "fail for karaffe.App:\n"
            + "".join(f"- {test}: {r.message}\n" for test, r in sorted(unexpected.items()))
            + f"To run one: cd {source} && PYTHONPATH={HERE}:$PYTHONPATH python -m pytest "
            "-p no:karaffe -p upstream_shims -p karaffe_as_flask TEST_ID",
            pytrace=False,
        )
    no_longer_differ = sorted(set(suite.expected) - set(regressions))
    if no_longer_differ:
        pytest.fail(
            f"listed as expected differences of {suite}, but the same for Flask and App now: "
            f"{no_longer_differ}; remove them here and in docs/flask-compatibility.md",
            pytrace=False,
        )


# -- running a suite ----------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """The outcome of one upstream test: passed, or why not."""

    message: str = ""
    passed: bool = False
    skipped: bool = False


def run_suites(source: Path, out: Path) -> tuple[dict[str, Result], dict[str, Result]]:
    """Run the suite under ``source`` twice, at once, each in a fresh
    interpreter with the suite's own pytest configuration: as released, and
    with karaffe.App as flask.Flask. Returns each run's result by test id."""
    karaffe_path = str(Path(karaffe.__file__).resolve().parent.parent)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    # Only the plugins named below: not every pytest plugin installed here
    # (schemathesis, hypothesis, xdist...), whose imports took most of each
    # run's time (about 10 s of 13 for Flask-WTF) and which no suite uses.
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(HERE), karaffe_path, *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    runs = []
    for name, plugins in [("flask", []), ("app", ["-p", "karaffe_as_flask"])]:
        junit = out / f"{name}.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "--tb=no",  # the outcomes are read from the JUnit XML, with their messages
            # No cache in the unpacked sdist; not karaffe's own pytest plugin,
            # whose app and client fixtures are karaffe's, not the suite's.
            "-p",
            "no:cacheprovider",
            "-p",
            "no:karaffe",
            "-p",
            "upstream_shims",
            *plugins,
            f"--junitxml={junit}",
            "-o",
            "junit_family=xunit1",
            "tests",
        ]
        proc = subprocess.Popen(
            command,
            cwd=source,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        runs.append((junit, command, proc))
    results = []
    for junit, command, proc in runs:
        try:
            output, _ = proc.communicate(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            for _, _, p in runs:
                p.kill()
                p.communicate()
            pytest.fail(f"{' '.join(command)} took over {RUN_TIMEOUT} s")
        if not junit.exists():  # pytest could not even start: say why
            pytest.fail(f"{' '.join(command)} in {source} failed:\n{output}")
        results.append(read_junit(junit))
    return results[0], results[1]


def read_junit(path: Path) -> dict[str, Result]:
    """The result of each test in a JUnit XML report (xunit1, which names each
    test's file), by pytest node id: ``tests/test_basic.py::test_name``."""
    results = {}
    for case in ET.parse(path).iter("testcase"):
        file, classname = case.get("file", ""), case.get("classname", "")
        module = file.removesuffix(".py").replace("/", ".")
        test_class = classname[len(module) + 1 :] if classname.startswith(module) else ""
        test = "::".join(filter(None, [file or classname, test_class, case.get("name")]))
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is not None:
            message = problem.get("message", "").strip()
            results[test] = Result((message.splitlines() or ["failed"])[0][:300])
        elif case.find("skipped") is not None:
            results[test] = Result("skipped", skipped=True)
        else:
            results[test] = Result(passed=True)
    return results


def summary(results: dict[str, Result]) -> str:
    passed = sum(r.passed for r in results.values())
    skipped = sum(r.skipped for r in results.values())
    failures = [f"- {test}: {r.message}" for test, r in sorted(results.items()) if r.message]
    return f"{passed} passed, {skipped} skipped, {len(results) - passed - skipped} failed\n" + (
        "\n".join(failures[:20])
    )


# -- getting the sdist --------------------------------------------------------


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        unavailable(f"{dist} is not installed")


def sdist(dist: str) -> Path:
    """The sdist of the installed version of ``dist``, downloaded once."""
    pinned = f"{dist}=={version(dist)}"
    target = CACHE / pinned
    found = sorted(target.glob("*.tar.gz"))
    if found:
        return found[0]
    CACHE.mkdir(parents=True, exist_ok=True)
    download = Path(tempfile.mkdtemp(prefix="download-", dir=CACHE))
    try:
        try:
            proc = subprocess.run(
                [*PIP_DOWNLOAD, "-d", str(download), pinned],
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
        except subprocess.TimeoutExpired:
            unavailable(f"the sdist of {pinned} could not be downloaded: pip took over 180 s")
        found = sorted(download.glob("*.tar.gz"))
        if proc.returncode != 0 or not found:
            reason = (proc.stderr.strip().splitlines() or ["no .tar.gz"])[-1]
            unavailable(f"the sdist of {pinned} could not be downloaded: {reason}")
        with contextlib.suppress(OSError):  # a concurrent run got there first
            download.rename(target)
        return sorted(target.glob("*.tar.gz"))[0]
    finally:
        shutil.rmtree(download, ignore_errors=True)


def unpacked(archive: Path) -> Path:
    """The sdist unpacked next to it, once: later runs reuse the bytecode and
    the assertion rewriting of its tests, which is most of a run's time."""
    target = archive.parent / "unpacked"
    if not target.exists():
        staging = Path(tempfile.mkdtemp(prefix="unpack-", dir=archive.parent))
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(staging, filter="data")
            else:  # Python < 3.11.4
                tar.extractall(staging)  # a release from the index pip trusts
        with contextlib.suppress(OSError):  # a concurrent run got there first
            staging.rename(target)
        shutil.rmtree(staging, ignore_errors=True)
    (top,) = (p for p in target.iterdir() if p.is_dir())
    return top


def unavailable(reason: str) -> t.NoReturn:
    """Skip, saying why (pytest's summary shows the reason): the issue asks for
    the job to step aside where the sdist cannot be downloaded, not to fail."""
    pytest.skip(reason)
