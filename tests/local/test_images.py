from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest

from airflow_sidecar_batch.local.images import (
    ImageMap,
    ImageProgram,
    UnknownImageError,
    argv_for,
    repository_name,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com/main-app:latest", "main-app"),
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/main-app", "team/main-app"),
        ("public.ecr.aws/team/x:1", "team/x"),
        ("busybox", "busybox"),
        ("busybox:1.36", "busybox"),
        ("team/x", "team/x"),
        ("localhost/x:dev", "x"),
        ("localhost:5000/team/x:dev", "team/x"),
        ("registry:5000/x", "x"),
        ("main-app@sha256:" + "a" * 64, "main-app"),
        ("ghcr.io/o/x:1.0@sha256:" + "b" * 64, "o/x"),
        ("docker.io/library/busybox:1", "busybox"),
        ("docker.io/bitnami/redis", "bitnami/redis"),
        ("  main-app:latest\n", "main-app"),
    ],
    ids=[
        "ecr-tag",
        "ecr-nested",
        "public-ecr",
        "bare",
        "bare-tag",
        "hub-user",
        "localhost",
        "localhost-port",
        "host-port",
        "digest",
        "tag-and-digest",
        "hub-library",
        "hub-user-explicit",
        "whitespace",
    ],
)
def test_repository_name(image: str, expected: str) -> None:
    assert repository_name(image) == expected


@pytest.mark.parametrize("image", ["", "   ", ":latest", "ghcr.io/", "@sha256:abc"])
def test_repository_name_rejects_references_without_a_name(image: str) -> None:
    with pytest.raises(ValueError, match="has no repository name"):
        repository_name(image)


def test_load_expands_placeholders(tmp_path: Path) -> None:
    path = write(
        tmp_path / "conf" / "images.yaml",
        """
images:
  main-app:
    entrypoint: ["{python}", "{here}/main-app/app.py"]
    command: ['{"date": "{here}"}', "{unknown}"]
""",
    )

    program = ImageMap.load(path).resolve("1.dkr.ecr.eu-west-1.amazonaws.com/main-app:latest")

    here = str((tmp_path / "conf").resolve())
    assert program == ImageProgram(
        entrypoint=(sys.executable, f"{here}/main-app/app.py"),
        command=(f'{{"date": "{here}"}}', "{unknown}"),
    )


def test_command_defaults_to_empty(tmp_path: Path) -> None:
    path = write(tmp_path / "images.yaml", "images:\n  x:\n    entrypoint: [prog]\n")

    assert ImageMap.load(path).resolve("x") == ImageProgram(entrypoint=("prog",), command=())


def test_later_files_extend_and_override_earlier_ones(tmp_path: Path) -> None:
    base = write(
        tmp_path / "base.yaml",
        "images:\n  a: {entrypoint: [a1], command: [x]}\n  b: {entrypoint: [b1]}\n",
    )
    user = write(
        tmp_path / "user.yaml", "images:\n  b: {entrypoint: [b2]}\n  c: {entrypoint: [c]}\n"
    )

    images = ImageMap.load(base, user)

    assert images.repositories == ("a", "b", "c")
    assert images.resolve("a") == ImageProgram(("a1",), ("x",))
    assert images.resolve("b") == ImageProgram(("b2",), ())
    assert ImageMap.load(user, base).resolve("b") == ImageProgram(("b1",), ())


def test_unknown_image_names_image_repository_files_and_fix(tmp_path: Path) -> None:
    path = write(tmp_path / "images.yaml", "images:\n  main-app: {entrypoint: [a]}\n")

    with pytest.raises(UnknownImageError) as caught:
        ImageMap.load(path).resolve("public.ecr.aws/team/pipeline:7")

    message = str(caught.value)
    assert "'public.ecr.aws/team/pipeline:7'" in message
    assert "'team/pipeline'" in message
    assert str(path) in message
    assert "team/pipeline:\n    entrypoint:" in message
    assert isinstance(caught.value, LookupError)


def test_unknown_image_error_pickles(tmp_path: Path) -> None:
    error = UnknownImageError("x:1", "x", [tmp_path / "a.yaml"])

    copy = pickle.loads(pickle.dumps(error))

    assert (copy.image, copy.repository, copy.sources) == ("x:1", "x", (tmp_path / "a.yaml",))
    assert str(copy) == str(error)


def test_empty_map_says_no_file_was_loaded() -> None:
    with pytest.raises(UnknownImageError, match="no mapping file was loaded"):
        ImageMap.load().resolve("busybox")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("images: [\n", "not valid YAML"),
        ("", "expected a mapping with an 'images' key"),
        ("- a\n- b\n", "expected a mapping with an 'images' key"),
        ("image:\n  x: {entrypoint: [a]}\n", "expected a mapping with an 'images' key"),
        ("images: {}\nextra: 1\n", r"unknown top-level key\(s\) \['extra'\]"),
        ("images: [a, b]\n", "'images' must map repository names"),
        ("images:\n  1: {entrypoint: [a]}\n", "images key 1 must be a repository name"),
        ("images:\n  x: [a]\n", "images.x must be a mapping"),
        ("images:\n  x: {command: [a]}\n", "images.x: 'entrypoint' is missing"),
        ("images:\n  x: {entrypoint: a}\n", "images.x.entrypoint must be a list of strings"),
        ("images:\n  x: {entrypoint: null}\n", "images.x.entrypoint must be a list of strings"),
        ("images:\n  x: {entrypoint: [a, 2]}\n", r"images.x.entrypoint\[1\] must be a string"),
        ("images:\n  x: {entrypoint: [a], command: [[b]]}\n", r"images.x.command\[0\]"),
        ("images:\n  x: {entrypoint: [a], cmd: [b]}\n", r"images.x: unknown key\(s\) \['cmd'\]"),
    ],
    ids=[
        "syntax",
        "empty-file",
        "list",
        "typo-images",
        "extra-top-key",
        "images-list",
        "non-string-key",
        "entry-list",
        "no-entrypoint",
        "entrypoint-string",
        "entrypoint-null",
        "entrypoint-int",
        "command-nested",
        "typo-command",
    ],
)
def test_bad_files_name_the_file_and_key(tmp_path: Path, text: str, match: str) -> None:
    path = write(tmp_path / "bad.yaml", text)

    with pytest.raises(ValueError, match=match) as caught:
        ImageMap.load(path)

    assert str(path) in str(caught.value)


def test_missing_file_raises_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ImageMap.load(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (None, ["python", "app.py", "--default"]),
        ([], ["python", "app.py"]),
        (["Ref::EVENT_JSON"], ["python", "app.py", "Ref::EVENT_JSON"]),
    ],
    ids=["not-given", "empty", "replaces-default"],
)
def test_argv_for_replaces_command_and_keeps_entrypoint(
    command: list[str] | None, expected: list[str]
) -> None:
    program = ImageProgram(entrypoint=("python", "app.py"), command=("--default",))

    assert argv_for(program, command) == expected
