"""The image mapping of the local endpoint: which local program stands in for which image.

No container engine runs here, so each image a job definition names is mapped, by its repository
name, to the program a container of that image would run. The mapping is a YAML file::

    images:
      main-app:
        entrypoint: ["{python}", "{here}/main-app/app.py"]
        command: []

``entrypoint`` and ``command`` play the roles of a Dockerfile's ``ENTRYPOINT`` and ``CMD``.
``{python}`` becomes the Python interpreter running the endpoint and ``{here}`` the directory of
the YAML file; any other braces are kept as written, so JSON arguments need no escaping.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ImageMap", "ImageProgram", "UnknownImageError", "argv_for", "repository_name"]

log = logging.getLogger(__name__)

_ENTRY_KEYS = ("entrypoint", "command")
_DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


@dataclass(frozen=True)
class ImageProgram:
    """The program a container of one image runs: the image's ``ENTRYPOINT`` and ``CMD``.

    :param entrypoint: always part of the command line; a job's ``command`` does not replace it.
    :param command: the default arguments, replaced by a job's ``command`` when it gives one.
    """

    entrypoint: tuple[str, ...]
    command: tuple[str, ...]


class UnknownImageError(LookupError):
    """Raised when no mapping file names the repository of an image a job wants to run."""

    def __init__(self, image: str, repository: str, sources: Iterable[Path] = ()) -> None:
        self.image = image
        self.repository = repository
        self.sources = tuple(sources)
        searched = ", ".join(str(path) for path in self.sources) or "no mapping file was loaded"
        super().__init__(
            f"no local program for image {image!r} (repository {repository!r}); searched: "
            f"{searched}. Add an entry under 'images:' in a mapping file, for example:\n"
            f"  {repository}:\n"
            f'    entrypoint: ["{{python}}", "{{here}}/{repository}/main.py"]'
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.image, self.repository, self.sources))


def repository_name(image: str) -> str:
    """Return the repository name of an image reference, the key of the image mapping.

    The registry host (a first path segment containing ``.`` or ``:``, or ``localhost``), the
    ``:tag`` and the ``@digest`` are dropped. Docker Hub's implicit ``library/`` prefix is dropped
    too, so ``docker.io/library/busybox`` and ``busybox`` share one entry.

    :param image: an image reference such as ``123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1``.
    :raises ValueError: when no repository name is left.
    """
    name = image.strip().partition("@")[0]

    first, slash, rest = name.partition("/")
    registry = ""
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, name = first, rest

    # With the registry gone, a colon can only start the tag.
    name = name.partition(":")[0]
    if registry in _DOCKER_HUB_HOSTS and name.startswith("library/") and name.count("/") == 1:
        name = name.removeprefix("library/")

    if not name or name.startswith("/") or name.endswith("/"):
        raise ValueError(f"image reference {image!r} has no repository name")
    return name


def argv_for(program: ImageProgram, command: list[str] | None) -> list[str]:
    """Return the command line of a container, with the semantics of AWS Batch and Docker.

    A job's ``command`` replaces the image's default ``command`` and keeps its ``entrypoint``.

    :param program: the image's program.
    :param command: the command from the job definition or its overrides; ``None`` when neither
        gives one. An empty list is a command too: it leaves the entrypoint alone.
    """
    arguments = program.command if command is None else command
    return [*program.entrypoint, *arguments]


class ImageMap:
    """The programs that stand in for images, keyed by repository name.

    :param programs: the program of each repository name.
    :param sources: the mapping files these came from, named when an image is missing.
    """

    def __init__(self, programs: Mapping[str, ImageProgram], sources: Iterable[Path] = ()) -> None:
        self._programs = dict(programs)
        self._sources = tuple(sources)

    @classmethod
    def load(cls, *paths: Path) -> ImageMap:
        """Read mapping files; an entry of a later file replaces the same entry of an earlier one.

        :param paths: YAML files, in increasing order of precedence.
        :raises ValueError: when a file is not valid YAML or not shaped like a mapping file.
        :raises OSError: when a file cannot be read.
        """
        programs: dict[str, ImageProgram] = {}
        for path in paths:
            loaded = _load_file(Path(path))
            log.debug("Read %s image(s) from %s", len(loaded), path)
            programs.update(loaded)
        return cls(programs, (Path(path) for path in paths))

    @property
    def repositories(self) -> tuple[str, ...]:
        """The repository names this map knows, sorted."""
        return tuple(sorted(self._programs))

    @property
    def sources(self) -> tuple[Path, ...]:
        """The mapping files this map was read from, in the order given."""
        return self._sources

    def resolve(self, image: str) -> ImageProgram:
        """Return the program that stands in for an image.

        :param image: the image reference of a container, as the job definition gives it.
        :raises UnknownImageError: when no mapping file names the image's repository.
        :raises ValueError: when the reference has no repository name at all.
        """
        repository = repository_name(image)
        try:
            return self._programs[repository]
        except KeyError:
            raise UnknownImageError(image, repository, self._sources) from None


def _load_file(path: Path) -> dict[str, ImageProgram]:
    with path.open(encoding="utf-8") as stream:
        try:
            document = yaml.safe_load(stream)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML: {exc}") from None

    if not isinstance(document, dict) or "images" not in document:
        raise ValueError(f"{path}: expected a mapping with an 'images' key, got {document!r:.80}")
    unknown = sorted(str(key) for key in document if key != "images")
    if unknown:
        raise ValueError(f"{path}: unknown top-level key(s) {unknown}; only 'images' is read")
    images = document["images"] or {}
    if not isinstance(images, dict):
        raise ValueError(f"{path}: 'images' must map repository names to programs")

    here = str(path.resolve().parent)
    return {
        _repository_key(path, key): _parse_entry(path, key, entry, here)
        for key, entry in images.items()
    }


def _repository_key(path: Path, key: object) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError(f"{path}: images key {key!r} must be a repository name such as main-app")
    return key


def _parse_entry(path: Path, key: str, entry: object, here: str) -> ImageProgram:
    where = f"{path}: images.{key}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be a mapping with 'entrypoint' and optional 'command'")
    unknown = sorted(str(name) for name in entry if name not in _ENTRY_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected {list(_ENTRY_KEYS)}")
    if "entrypoint" not in entry:
        raise ValueError(f"{where}: 'entrypoint' is missing; give the program as a list of strings")

    return ImageProgram(
        entrypoint=_parse_argv(where, "entrypoint", entry["entrypoint"], here),
        command=_parse_argv(where, "command", entry.get("command") or [], here),
    )


def _parse_argv(where: str, field: str, value: object, here: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"{where}.{field} must be a list of strings, got {value!r:.80}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise ValueError(f"{where}.{field}[{index}] must be a string, got {item!r:.80}")
    return tuple(_expand(item, here) for item in value)


def _expand(item: str, here: str) -> str:
    # Plain replacement rather than str.format: arguments may hold JSON and other braces.
    return item.replace("{python}", sys.executable).replace("{here}", here)
