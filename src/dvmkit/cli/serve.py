"""``dvm serve FILE.py:dvm``: run a DVM defined in a Python file, configured from the outside.

``dvm serve --builtin NAME`` serves one of dvmkit's own DVMs (:mod:`dvmkit.dvms`) instead.

Settings come from, in order of precedence: command-line flags, environment variables
(``NOSTR_SECRET_KEY``, ``DVMKIT_RELAYS`` comma-separated, ``DVMKIT_DB``, ``DVMKIT_KEY_FILE``),
a TOML file (``--config``), then what the code itself says. The DVM's key comes from
``--sec``/``NOSTR_SECRET_KEY``; failing that from its key file, created with a fresh key and
0600 permissions on first run. The key is never printed or logged: only its npub is.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dvmkit.cli.common import DEFAULT_RELAY, EXIT_BAD_INPUT, SECRET_ENV, env_relays, error
from dvmkit.errors import DVMError
from dvmkit.nostr.keys import Keys

if TYPE_CHECKING:
    # The provider (websockets, the store, asyncio) loads only when a DVM is served: every
    # other `dvm` command starts without it.
    from dvmkit.provider.config import Limits
    from dvmkit.provider.dvm import DVM


def _limit_fields() -> frozenset[str]:
    from dvmkit.provider.config import Limits

    return frozenset(Limits.__dataclass_fields__)


class ServeError(Exception):
    """A configuration problem: reported as one line, exit code 2."""


def serve_command(
    target: Annotated[
        str | None,
        typer.Argument(help="FILE.py:NAME or package.module:NAME of a DVM", show_default=False),
    ] = None,
    builtin: Annotated[
        str | None,
        typer.Option(
            "--builtin", help="serve a built-in DVM: count, echo, pow, search or trending"
        ),
    ] = None,
    relay: Annotated[
        list[str] | None, typer.Option("--relay", "-r", help="relay URL (repeatable)")
    ] = None,
    sec: Annotated[
        str | None,
        typer.Option(
            "--sec",
            envvar=SECRET_ENV,
            show_envvar=True,
            show_default=False,
            help="the DVM's secret key (hex or nsec)",
        ),
    ] = None,
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            envvar="DVMKIT_KEY_FILE",
            help="where the key is kept [default: .dvmkit/<d>.key, created 0600]",
        ),
    ] = None,
    db: Annotated[
        Path | None, typer.Option("--db", envvar="DVMKIT_DB", help="the job store (SQLite file)")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="a TOML settings file")] = None,
    encryption: Annotated[
        str | None,
        typer.Option(
            "--encryption",
            envvar="DVMKIT_ENCRYPTION",
            help="private jobs: optional (default), required, or off",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve a DVM until SIGINT or SIGTERM."""
    try:
        dvm = _choose(target, builtin)
        settings = read_config(config) if config is not None else {}
        apply_settings(
            dvm, settings, relays=relay, sec=sec, key_file=key_file, db=db, encryption=encryption
        )
    except (ServeError, DVMError, ValueError) as exc:
        error(str(exc))
        raise typer.Exit(EXIT_BAD_INPUT) from None
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )

    def ready() -> None:
        # The first stderr line, once the DVM listens: scripts may wait for it.
        relays = ", ".join(dvm.relays)
        print(
            f"dvm: serving {dvm.name} as {dvm.keys.npub} on {relays}", file=sys.stderr, flush=True
        )

    dvm.run(on_ready=ready)


def _choose(target: str | None, builtin: str | None) -> DVM:
    if builtin is None:
        if target is None:
            raise ServeError("name a DVM: FILE.py:NAME, or --builtin NAME")
        return load_dvm(target)
    if target is not None:
        raise ServeError("give either FILE.py:NAME or --builtin NAME, not both")
    return load_builtin(builtin)


def load_builtin(name: str) -> DVM:
    """A built-in DVM, with no relays yet (the flags, env or TOML give them).

    Raises:
        ServeError: no built-in DVM has that name; the message lists them.
    """
    from dvmkit import dvms  # only `--builtin` pays for importing them

    try:
        return dvms.build(name, relays=[])
    except ValueError as exc:
        raise ServeError(str(exc)) from None


def load_dvm(target: str) -> DVM:
    """Import ``FILE.py:NAME`` or ``module:NAME`` and return the DVM it names.

    Raises:
        ServeError: the file or module cannot be imported, or NAME is not a DVM.
    """
    source, sep, name = target.rpartition(":")
    if not sep or not source or not name:
        raise ServeError(f"{target!r}: write FILE.py:NAME or module:NAME, e.g. echo.py:dvm")
    try:
        if source.endswith(".py") or os.sep in source:
            path = Path(source)
            if not path.is_file():
                raise ServeError(f"{source}: no such file")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            if spec is None or spec.loader is None:
                raise ServeError(f"{source}: cannot be imported")
            module = importlib.util.module_from_spec(spec)
            sys.path.insert(0, str(path.parent.resolve()))
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(source)
    except ServeError:
        raise
    except Exception as exc:  # the user's module failed to import: say why, briefly
        raise ServeError(f"{source}: import failed: {type(exc).__name__}: {exc}") from None
    dvm = getattr(module, name, None)
    from dvmkit.provider.dvm import DVM

    if not isinstance(dvm, DVM):
        raise ServeError(f"{target}: {name!r} is not a dvmkit DVM")
    return dvm


def read_config(path: Path) -> dict[str, Any]:
    """Read a TOML settings file: ``relays``, ``db``, ``key_file``, ``heartbeat_interval``
    and a ``[limits]`` table with :class:`~dvmkit.provider.config.Limits` fields."""
    import tomllib

    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ServeError(f"{path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ServeError(f"{path}: not valid TOML: {exc}") from None
    known = {"relays", "db", "key_file", "heartbeat_interval", "limits", "encryption"}
    unknown = sorted(set(data) - known)
    if "sec" in data or "secret" in data:
        raise ServeError(f"{path}: keep secrets out of config files; use a key file")
    if unknown:
        raise ServeError(
            f"{path}: unknown setting {unknown[0]!r}; known: {', '.join(sorted(known))}"
        )
    return data


def apply_settings(
    dvm: DVM,
    settings: dict[str, Any],
    *,
    relays: list[str] | None,
    sec: str | None,
    key_file: Path | None,
    db: Path | None,
    encryption: str | None = None,
) -> None:
    """Apply flags, environment and TOML settings to ``dvm`` (flags win)."""
    from dvmkit.provider.config import Limits

    chosen_relays = relays or env_relays() or _strings(settings, "relays") or list(dvm.relays)
    limits = dvm.limits
    if "limits" in settings:
        table = settings["limits"]
        fields = _limit_fields()
        if not isinstance(table, dict) or set(table) - fields:
            bad = sorted(set(table) - fields) if isinstance(table, dict) else ["limits"]
            known = ", ".join(sorted(fields))
            raise ServeError(f"unknown limit {bad[0]!r}; known: {known}")
        try:
            limits = Limits(**{**_limits_dict(limits), **table})
        except TypeError as exc:
            raise ServeError(f"bad [limits]: {exc}") from None
    keys = (
        Keys.parse(sec)
        if sec
        else load_or_create_key(
            key_file or _path(settings, "key_file") or Path(".dvmkit") / f"{dvm.d}.key"
        )
    )
    interval = settings.get("heartbeat_interval")
    if interval is not None and (type(interval) is not int or interval <= 0):
        raise ServeError("heartbeat_interval must be a positive whole number of seconds")
    mode = encryption or settings.get("encryption")
    if mode not in (None, "optional", "required", "off"):
        raise ServeError(f"encryption is optional, required or off, not {str(mode)[:20]!r}")
    dvm.configure(
        keys=keys,
        relays=chosen_relays or [DEFAULT_RELAY],
        store_path=db or _path(settings, "db"),
        limits=limits,
        heartbeat_interval=interval,
        encryption=mode,  # type: ignore[arg-type]  # checked just above
    )


def load_or_create_key(path: Path) -> Keys:
    """The DVM's key from ``path``; on first run a new key is written there, mode 0600.

    Raises:
        ServeError: the file is readable by others, or does not hold a key.
    """
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ServeError(f"{path} is readable by others (mode {mode:o}); run chmod 600 {path}")
        try:
            return Keys.parse(path.read_text().strip())
        except DVMError:
            raise ServeError(f"{path} does not hold a secret key (hex or nsec)") from None
    keys = Keys.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: never overwrite a key another process just wrote; 0600 from the first byte.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(keys.secret_hex() + "\n")
    return keys


def _strings(settings: dict[str, Any], key: str) -> list[str]:
    value = settings.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ServeError(f"{key} must be a list of strings")
    return value


def _path(settings: dict[str, Any], key: str) -> Path | None:
    value = settings.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ServeError(f"{key} must be a path")
    return Path(value)


def _limits_dict(limits: Limits) -> dict[str, Any]:
    return {name: getattr(limits, name) for name in _limit_fields()}
