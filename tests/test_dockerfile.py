"""The Dockerfile's runtime, rebuilt without Docker and run.

There is no Docker engine here, so this test reads the Dockerfile and rebuilds what its image
would hold: the build stage's COPYs (through .dockerignore) into a fresh source tree, a new
virtual environment with the build stage's `pip install`s run in that tree (the runtime
dependencies locked in requirements.lock, hash-checked, then the package without resolving:
not editable, no test extras), the runtime stage's ENV with its absolute paths moved under a
temporary root, the one-off `todo-api migrate`, then its CMD, and its HEALTHCHECK against that.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from db.migrations import head_revision
from tests.conftest import TEST_SECRET
from tests.live import free_port
from tests.test_observability import running_service

REPO = Path(__file__).resolve().parent.parent
DEV_ONLY = ("pytest", "httpx", "hypothesis", "ruff", "pytest_asyncio", "uv")


# --- reading the Dockerfile -------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def read_dockerfile(path: Path) -> list[Stage]:
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append((keyword, args.strip()))
    return stages


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for word in shlex.split(args):
            key, sep, value = word.partition("=")
            assert sep, f"ENV {args!r}: use the KEY=value form"
            env[key] = value
    return env


def exec_form(args: str) -> list[str]:
    form = json.loads(args)
    assert isinstance(form, list) and all(isinstance(w, str) for w in form), args
    return form


def healthcheck_of(stage: Stage) -> tuple[dict[str, str], list[str]]:
    args = stage.last("HEALTHCHECK")
    assert args is not None, "the runtime stage has no HEALTHCHECK"
    options, _, command = args.partition("CMD ")
    flags = dict(re.findall(r"--([a-z-]+)=(\S+)", options))
    return flags, exec_form(command)


def pip_installs(stage: Stage) -> list[list[str]]:
    """The stage's RUNs but the venv's creation: each a `pip install`, as its arguments."""
    installs = []
    for args in stage.all("RUN"):
        words = shlex.split(args)
        if words[:3] == ["python", "-m", "venv"]:
            continue  # the test makes its own
        assert words[:2] == ["pip", "install"], f"this test does not replay RUN {args}"
        installs.append(words[2:])
    return installs


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_pins(path: Path) -> dict[str, tuple[str, bool]]:
    """name -> (version, whether an environment marker limits it) of an export of uv.lock."""
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"([A-Za-z0-9._-]+)==([^\s;\\]+)\s*(;)?", line)
        if match:
            pins[normalized(match[1])] = (match[2], match[3] is not None)
    return pins


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", duration)
    assert match, duration
    return float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[match.group(2)]


# --- reading .dockerignore (Docker's rules: relative to the context, `**` any depth) -------


def ignore_patterns(path: Path) -> list[tuple[bool, re.Pattern[str]]]:
    patterns = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        segments = line.lstrip("!").strip("/").split("/")
        regex = ""
        for i, segment in enumerate(segments):
            if segment == "**":
                regex += "(?:[^/]+/)*" if i < len(segments) - 1 else ".*"
                continue
            part = "".join(
                "[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch) for ch in segment
            )
            regex += part + ("/" if i < len(segments) - 1 else "")
        patterns.append((negated, re.compile(regex + r"\Z")))
    return patterns


def is_ignored(relative: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]  # itself or a parent
    ignored = False
    for negated, regex in patterns:
        if any(regex.match(candidate) for candidate in candidates):
            ignored = not negated
    return ignored


def copy_context(sources: list[str], destination: Path, dockerignore: Path) -> list[str]:
    """COPY <sources> <destination> as `docker build` would, from the repository as context."""
    patterns = ignore_patterns(dockerignore)
    copied: list[str] = []
    for source in sources:
        root = REPO / source
        assert root.exists(), f"the Dockerfile COPYs {source}, which does not exist"
        assert not is_ignored(source, patterns), f".dockerignore excludes {source}"
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for file in files:
            relative = file.relative_to(REPO).as_posix()
            if is_ignored(relative, patterns):
                continue
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, target)
            copied.append(relative)
    return copied


def test_dockerignore_rules_as_docker_reads_them() -> None:
    patterns = ignore_patterns(REPO / ".dockerignore")
    assert is_ignored("api/__pycache__/app.cpython-311.pyc", patterns)
    assert is_ignored("db/migrations/versions/__pycache__/x.pyc", patterns)
    assert is_ignored("tests/test_cli.py", patterns)
    assert is_ignored("todo_service.egg-info/PKG-INFO", patterns)
    assert not is_ignored("db/migrations/script.py.mako", patterns)
    assert not is_ignored("db/migrations/versions/0001_initial_schema.py", patterns)
    assert not is_ignored("README.md", patterns)


def test_the_runtime_image_facts() -> None:
    build, runtime = read_dockerfile(REPO / "Dockerfile")[-2:]
    assert runtime.last("USER") not in (None, "root", "0"), "the service must not run as root"
    assert exec_form(runtime.last("CMD") or "null") == ["todo-api", "serve"]
    for copy in runtime.all("COPY"):  # the runtime image gets the venv, never the source tree
        assert copy.startswith(f"--from={build.name} "), copy
    env = env_of(runtime)
    assert env["APP_ENV"] == "production"
    assert int(env["WEB_CONCURRENCY"]) >= 1 and env["PROMETHEUS_MULTIPROC_DIR"].startswith("/")
    flags, command = healthcheck_of(runtime)
    assert seconds(flags["timeout"]) > 0 and command[0] == "python"
    version = re.match(r"python:(\d+)\.(\d+)", runtime.base)
    assert version and (int(version[1]), int(version[2])) >= (3, 11), runtime.base
    assert runtime.base == build.base  # the venv runs on the Python that built it
    # The image installs the lock, not a fresh resolution: the runtime set exported from uv.lock
    # (hash-checked), then the package alone. `make lock-check` keeps that export current.
    installs = pip_installs(build)
    assert installs[0] == ["--require-hashes", "-r", "requirements.lock"], installs
    assert all("--no-deps" in words for words in installs[1:]), installs
    assert "requirements.lock" in build.all("COPY")[0].split()[:-1]


# --- building and running it ------------------------------------------------------------------


def run(command: list[str], *, env: dict[str, str] | None = None, cwd: Path, timeout: float = 600):
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_the_image_runtime_migrates_serves_and_passes_its_healthcheck(tmp_path: Path) -> None:
    build, runtime = read_dockerfile(REPO / "Dockerfile")[-2:]

    # The build stage: COPY what it copies (through .dockerignore), then its `pip install`s in a
    # venv, in the source tree (its WORKDIR).
    source = tmp_path / "src"
    sources = [
        word
        for args in build.all("COPY")
        if not args.startswith("--")
        for word in shlex.split(args)[:-1]
    ]
    copied = copy_context(sources, source, REPO / ".dockerignore")
    assert "db/migrations/env.py" in copied and "tests/conftest.py" not in copied
    venv = tmp_path / "opt" / "venv"
    assert run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path).returncode == 0
    python = venv / "bin" / "python"
    # Unlike the image (PIP_NO_CACHE_DIR=1), pip's cache may serve here: same packages, faster.
    for words in pip_installs(build):
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        installed = run([*pip, *words], cwd=source)
        assert installed.returncode == 0, installed.stdout + installed.stderr
    listed = run([str(python), "-m", "pip", "list", "--format=json"], cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    installed_versions = {
        normalized(p["name"]): p["version"]
        for p in json.loads(listed.stdout)
        if normalized(p["name"]) not in ("pip", "setuptools", "todo-service")
    }
    pins = locked_pins(source / "requirements.lock")
    # Exactly the lock: nothing it does not pin, and all it pins for every platform.
    assert installed_versions == {
        name: version
        for name, (version, marked) in pins.items()
        if not marked or name in installed_versions
    }

    probe = run(
        [
            str(python),
            "-c",
            "import importlib.util as u, json, api, db.migrations as m;"
            f"print(json.dumps([api.__file__, str(m.MIGRATIONS_DIR), "
            f"[n for n in {DEV_ONLY!r} if u.find_spec(n)]]))",
        ],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert probe.returncode == 0, probe.stderr
    api_file, migrations_dir, dev_only = json.loads(probe.stdout)
    assert api_file.startswith(str(venv)), "the package must come from the venv, not the repo"
    assert dev_only == [], f"test-only packages in the runtime image: {dev_only}"
    assert (Path(migrations_dir) / "script.py.mako").exists()
    assert (Path(migrations_dir) / "versions" / "0001_initial_schema.py").exists()

    # The runtime stage's environment, its absolute paths under a temporary root.
    root = tmp_path / "root"

    def relocate(value: str) -> str:
        if value.startswith("/opt/venv"):
            return str(venv) + value.removeprefix("/opt/venv")
        return str(root) + value if value.startswith("/") else value

    env = {"HOME": str(root / "home" / "app"), "LANG": "C.UTF-8"}
    for key, value in env_of(runtime).items():
        if key == "PATH":
            value = value.replace("$PATH", "/usr/local/bin:/usr/bin:/bin")
            env[key] = ":".join(relocate(part) for part in value.split(":"))
        else:
            env[key] = relocate(value)
    workdir = Path(relocate(runtime.last("WORKDIR") or "/"))
    workdir.mkdir(parents=True, exist_ok=True)
    Path(env["DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    env.update(
        PORT=str(free_port()),
        DATABASE_URL=f"sqlite:///{env['DATA_DIR']}/todo.db",
        BETTER_AUTH_SECRET=TEST_SECRET,
    )

    def resolve(command: list[str]) -> list[str]:
        executable = shutil.which(command[0], path=env["PATH"])
        assert executable and executable.startswith(str(venv)), command[0]
        return [executable, *command[1:]]

    flags, healthcheck = healthcheck_of(runtime)
    check_timeout = seconds(flags["timeout"])
    down = run(resolve(healthcheck), env=env, cwd=workdir, timeout=check_timeout + 5)
    assert down.returncode != 0, "the healthcheck passes with nothing listening"

    # Production never creates tables by itself: the release step is the one-off migrate.
    migrate = run(resolve(["todo-api", "migrate"]), env=env, cwd=workdir, timeout=120)
    assert migrate.returncode == 0, migrate.stderr
    assert f"at revision {head_revision()}" in migrate.stdout

    command = resolve(exec_form(runtime.last("CMD") or "null"))
    with running_service(command, cwd=workdir, env=env, ready_within=90) as service:
        started = run(resolve(healthcheck), env=env, cwd=workdir, timeout=check_timeout + 5)
        assert started.returncode == 0, started.stderr
        signup = httpx.post(
            f"{service.base}/api/auth/signup",
            json={"email": "docker@example.com", "password": "password1"},
        )
        assert signup.status_code == 201, signup.text
        assert "todo_http_requests_total" in httpx.get(f"{service.base}/metrics").text
        # The contract's rate limit across the image's WEB_CONCURRENCY workers: the 11th login
        # for one email within a minute is refused (new connections: either worker answers).
        wrong = {"email": "docker@example.com", "password": "wrong-password"}
        codes = [
            httpx.post(f"{service.base}/api/auth/login", json=wrong).status_code for _ in range(12)
        ]
        assert codes == [401] * 10 + [429] * 2, codes
    assert service.process.returncode in (0, -signal.SIGTERM)
    lines = [json.loads(line) for line in service.output().splitlines() if line.strip()]
    assert any(e["message"].startswith("Application shutdown complete") for e in lines)
    signups = [e for e in lines if e.get("path") == "/api/auth/signup"]
    assert [e["status"] for e in signups] == [201]
    assert "docker@example.com" not in service.output()
    assert not any("migrated" in e["message"] for e in lines)  # serve did not migrate
