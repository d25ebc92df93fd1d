"""components/Dockerfile without a Docker engine: what it copies exists and is let through by
.dockerignore, it runs as a non-root user on BASE_IMAGE without credentials, its command works in
the project's environment, and `make image` builds it with the Makefile's BASE_IMAGE."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "components" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CREDENTIAL_WORDS = ("AWS_SECRET", "AWS_ACCESS_KEY", "AWS_SESSION_TOKEN", "PASSWORD", "TOKEN", "SECRET", "API_KEY")


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    arguments: str  # continuation lines joined


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with their continuation lines joined; comments and parser directives dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        keyword, _, arguments = text.partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return instructions


def copy_sources(instruction: Instruction) -> list[str]:
    """Build-context sources of a COPY/ADD (none for ``--from=`` copies or URLs); the last word is the destination."""
    text = instruction.arguments
    words = shlex.split(text)
    flags = [word for word in words if word.startswith("--")]
    if any(flag.startswith("--from=") for flag in flags):
        return []
    rest = text
    for flag in flags:
        rest = rest.replace(flag, "", 1)
    rest = rest.strip()
    items = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
    assert len(items) >= 2, f"{instruction.keyword} {text}: needs at least one source and a destination"
    return [item for item in items[:-1] if not re.match(r"^[a-z]+://", item)]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore pattern (Go filepath.Match plus ``**``) as a regular expression."""
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif char == "*":
            out, i = out + "[^/]*", i + 1
        elif char == "?":
            out, i = out + "[^/]", i + 1
        elif char == "[":
            end = pattern.index("]", i)
            out, i = out + "[" + pattern[i + 1 : end].replace("!", "^", 1) + "]", end + 1
        else:
            out, i = out + re.escape(char), i + 1
    return re.compile(out + r"\Z")


def dockerignore_rules(path: Path) -> list[tuple[bool, re.Pattern[str]]]:
    """(is an exception ``!``, pattern) in file order."""
    rules = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((negate, _pattern_regex(pattern)))
    return rules


def is_ignored(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parent folders decides."""
    parts = Path(relative).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for negate, regex in rules:
        if any(regex.match(candidate) for candidate in candidates):
            ignored = not negate
    return ignored


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE)


def test_dockerignore_matcher_follows_docker_semantics():
    rules = [(False, _pattern_regex("*")), (True, _pattern_regex("src")), (False, _pattern_regex("**/__pycache__"))]
    assert is_ignored("data", rules) and is_ignored("data/raw/x.png", rules)
    assert not is_ignored("src", rules) and not is_ignored("src/asymsr/cli.py", rules)
    assert is_ignored("src/asymsr/__pycache__/cli.cpython-311.pyc", rules)
    assert copy_sources(Instruction("COPY", "--chown=1000:1000 a.txt b/ ./")) == ["a.txt", "b/"]
    assert copy_sources(Instruction("COPY", '["a b.txt", "c", "/opt/"]')) == ["a b.txt", "c"]
    assert copy_sources(Instruction("COPY", "--from=builder /wheels /tmp/wheels")) == []


def test_every_copied_path_exists_and_is_in_the_build_context(instructions):
    rules = dockerignore_rules(DOCKERIGNORE)
    sources = [source for ins in instructions if ins.keyword in ("COPY", "ADD") for source in copy_sources(ins)]
    assert sources, "the Dockerfile copies nothing from the build context"
    for source in sources:
        matches = sorted(ROOT.glob(source.rstrip("/"))) if any(c in source for c in "*?[") else [ROOT / source]
        assert matches and all(m.exists() for m in matches), f"COPY {source}: no such path in the repository"
        for match in matches:
            relative = match.relative_to(ROOT).as_posix()
            assert not is_ignored(relative, rules), f"COPY {source}: .dockerignore leaves {relative} out of the context"
            if match.is_dir():  # and the files inside, except build debris
                for file in match.rglob("*"):
                    inner = file.relative_to(ROOT).as_posix()
                    if file.is_file() and "__pycache__" not in inner and ".egg-info" not in inner:
                        assert not is_ignored(inner, rules), f".dockerignore leaves {inner} out of the context"
    for heavy in (".venv", ".git", "data", "models", "mlruns", "runs", ".dvc/cache", "reports/validation"):
        assert is_ignored(heavy, rules), f".dockerignore should leave {heavy} out of the build context"


def test_non_root_user_base_image_argument_and_no_credentials(instructions):
    users = [ins.arguments for ins in instructions if ins.keyword == "USER"]
    assert users, "no USER: the image would run as root"
    assert users[-1].split(":")[0] not in ("root", "0"), f"the final USER is {users[-1]}"

    first_from = next(i for i, ins in enumerate(instructions) if ins.keyword == "FROM")
    global_args = [ins.arguments for ins in instructions[:first_from] if ins.keyword == "ARG"]
    assert any(arg.startswith("BASE_IMAGE=") for arg in global_args), "ARG BASE_IMAGE=<default> before FROM"
    assert re.match(r"\$\{?BASE_IMAGE\}?(\s|$)", instructions[first_from].arguments), "FROM must use BASE_IMAGE"

    for ins in instructions:
        if ins.keyword in ("ENV", "ARG"):
            names = [word.split("=", 1)[0] for word in shlex.split(ins.arguments)]
            if ins.keyword == "ENV" and "=" not in ins.arguments:  # legacy form ENV NAME value
                names = names[:1]
            for name in names:
                bad = [word for word in CREDENTIAL_WORDS if word in name.upper()]
                assert not bad, f"{ins.keyword} {name}: credentials do not belong in the image"
    env = " ".join(ins.arguments for ins in instructions if ins.keyword == "ENV")
    assert "ASYMSR_PROFILES=/opt/asymsr/profiles" in env and "PYTHONUNBUFFERED=1" in env


def test_the_image_command_works_in_the_project_environment(instructions, tmp_path):
    """CMD run as the image runs it: the installed console script first on PATH, a fresh working folder."""
    cmds = [ins.arguments for ins in instructions if ins.keyword == "CMD"]
    assert cmds, "no CMD"
    command = json.loads(cmds[-1])  # exec form: a JSON array
    assert isinstance(command, list) and command
    scripts = sysconfig.get_path("scripts")
    env = dict(os.environ, PATH=scripts + os.pathsep + os.environ.get("PATH", ""), PYTHONUNBUFFERED="1")
    env.update(HOME=str(tmp_path), ASYMSR_PROFILES=str(ROOT / "profiles"))
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: asymsr")


def _make() -> str:
    make = shutil.which("make")
    if make is None:
        pytest.skip("needs make")
    return make


def test_make_image_prints_the_docker_build_with_the_dockerfile_base_image(instructions):
    default = next(
        ins.arguments.split("=", 1)[1]
        for ins in instructions
        if ins.keyword == "ARG" and ins.arguments.startswith("BASE_IMAGE=")
    )
    result = subprocess.run([_make(), "-n", "image"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    build = [line for line in result.stdout.splitlines() if line.startswith("docker build")]
    assert len(build) == 1, result.stdout
    words = shlex.split(build[0])
    assert words[words.index("-f") + 1] == "components/Dockerfile" and words[-1] == "."
    assert words[words.index("--build-arg") + 1] == f"BASE_IMAGE={default}", "Makefile and Dockerfile disagree"
    assert re.fullmatch(r"asymsr:[0-9a-z]+", words[words.index("-t") + 1])

    custom = subprocess.run(
        [_make(), "-n", "image", "IMAGE=registry.example.org/asymsr:v1", "BASE_IMAGE=pytorch/pytorch:other"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "--build-arg BASE_IMAGE=pytorch/pytorch:other -t registry.example.org/asymsr:v1 ." in custom.stdout


def test_make_image_without_docker_says_so():
    """A PATH without any docker executable (dropped from PATH here, so no build can start)."""
    kept = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not shutil.which("docker", path=d)]
    env = dict(os.environ, PATH=os.pathsep.join(kept))
    result = subprocess.run([_make(), "image"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "'docker' was not found on PATH" in result.stderr


OFFLINE = ROOT / "components" / "Dockerfile.offline"


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """The instructions of each build stage, FROM first (the global ARGs before the first FROM dropped)."""
    out: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def test_offline_dockerfile_builds_from_local_bases_and_a_wheelhouse_only():
    """components/Dockerfile.offline (make image-offline): nothing in it may need the network, the
    wheels and the compiler stay in the builder stage, and the runtime stage gets a venv with the
    prebuilt row kernel and runs as uid 1000. The build itself runs in test_kubeflow.py."""
    builder, runtime = stages(parse_dockerfile(OFFLINE))
    assert re.fullmatch(r"\$\{BUILDER_IMAGE\} AS builder", builder[0].arguments)
    assert runtime[0].arguments == "${BASE_IMAGE}"
    env = " ".join(ins.arguments for ins in builder if ins.keyword == "ENV")
    assert "PIP_NO_INDEX=1" in env and "PIP_FIND_LINKS=/wheels" in env  # pip may use the wheelhouse only
    builder_runs = " ".join(ins.arguments for ins in builder if ins.keyword == "RUN")
    assert "python -m asymsr.nn.native --prebuild" in builder_runs
    assert not [
        ins for ins in runtime if ins.keyword == "RUN" and re.search(r"\b(pip|apt-get|curl|wget)\b", ins.arguments)
    ]
    copies = [ins.arguments for ins in runtime if ins.keyword == "COPY"]
    assert "--from=builder /opt/venv /opt/venv" in copies and not [c for c in copies if "wheel" in c.lower()]
    assert [ins.arguments for ins in runtime if ins.keyword == "USER"] == ["1000:1000"]
    for ins in builder + runtime:
        if ins.keyword in ("ENV", "ARG"):
            names = [word.split("=", 1)[0].upper() for word in shlex.split(ins.arguments)]
            assert not [n for n in names for word in CREDENTIAL_WORDS if word in n], ins

    # every path it copies from the context is in the tar that `make image-offline` sends
    sources = {s.rstrip("/") for ins in builder + runtime if ins.keyword == "COPY" for s in copy_sources(ins)}
    dry = subprocess.run(
        [_make(), "-n", "image-offline", "IMAGE=asymsr:t"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert dry.returncode == 0, dry.stderr
    tar = next(line for line in dry.stdout.splitlines() if line.startswith("tar "))
    context = set(tar.split(" -cf - ", 1)[1].split(" -C ")[0].split())
    assert sources - {"${WHEELHOUSE}"} <= context, f"COPY sources missing from the build context: {sources - context}"
    assert "--build-arg WHEELHOUSE=" in dry.stdout and "-f components/Dockerfile.offline" in dry.stdout
