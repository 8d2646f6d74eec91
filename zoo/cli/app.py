"""The ``zoo`` command group and what every command (a plugin's too) uses: the registry the command works on,
``--json`` output, tables, and the entry point that turns a zoo error into one line and exit code 1.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from zoo.errors import ZooError, cli_wording

log = logging.getLogger("zoo")


def registry_of(ctx: click.Context, *, create: bool = False):  # type: ignore[no-untyped-def]
    """The registry the command works on (for plugin commands too). Only commands that add (``create=True``)
    may create one: the others fail naming the path, so that a mistyped ``--registry`` is not a new, empty
    registry. A SQLite registry created by a command that then fails is removed again
    (:func:`discard_new_registry`): a refused first add leaves nothing behind."""
    from zoo.registry import Registry
    from zoo.store.db import default_url, sqlite_path

    obj = ctx.ensure_object(dict)
    if "registry" not in obj:
        url = str(obj.get("url") or default_url())
        path = sqlite_path(url if "://" in url else f"sqlite:///{url}")
        fresh = create and path is not None and not path.exists()
        try:
            obj["registry"] = Registry(url, blob_root=obj.get("blob_root"), create=create)
        except ZooError as exc:
            raise exc.spelled(as_flag) from None
        obj["new_registry"] = (path, obj["registry"].blobs.root) if fresh else None
        ctx.call_on_close(obj["registry"].close)
    return obj["registry"]


def discard_new_registry(ctx: click.Context) -> None:
    """After a failed command: remove the SQLite registry it created, if it still holds nothing (no
    checkpoint, no dataset), with its blob folder when that holds no file."""
    obj = ctx.find_root().ensure_object(dict)
    new = obj.get("new_registry")
    if not new:
        return
    path, blob_root = new
    reg = obj.pop("registry")
    try:
        empty = not reg.list(limit=1) and not reg.datasets()
    finally:
        reg.close()
    if not empty:
        return
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    if blob_root.is_dir() and not any(p.is_file() for p in blob_root.rglob("*")):
        shutil.rmtree(blob_root, ignore_errors=True)
    log.info("removed the registry %s this failed command had created", path)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(fn)


def emit(data: Any, as_json: bool, human: Callable[[], None]) -> None:
    """Print ``data`` as JSON with ``--json``, else call ``human()`` (for plugin commands too)."""
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        human()


def table(rows: list[list[str]], headers: list[str]) -> None:
    widths = (
        [max(len(str(x)) for x in col) for col in zip(headers, *rows)] if rows else [len(h) for h in headers]
    )
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    for r in rows:
        click.echo("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))


def fmt_params(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def checkpoint_rows(records) -> list[list[str]]:  # type: ignore[no-untyped-def]
    return [
        [
            r.ref,
            r.family,
            r.arch.name,
            fmt_params(r.num_params),
            r.dataset or "-",
            ",".join(f"{k}={v:g}" for k, v in sorted(r.metrics.items())) or "-",
            r.origin,
            r.sha256[:12],
        ]
        for r in records
    ]


CHECKPOINT_HEADERS = ["REF", "FAMILY", "ARCH", "PARAMS", "DATASET", "METRICS", "ORIGIN", "BLOB"]


class ZooGroup(click.Group):
    """The command group: a :class:`~zoo.ZooError` from any command (a plugin's too) becomes one line on
    stderr and exit code 1, however the CLI is invoked. Plugins' commands (``zoo_register_commands``: the
    generator's ``train``, the main job's ``demo``) are added on the first lookup, and again when the set
    of plugins changes, without loading the built-in families (:func:`zoo.plugins.register_commands`):
    ``zoo --help`` lists them without importing torch."""

    _plugins_generation: tuple[bool, int] | None = None

    def _add_plugin_commands(self) -> None:
        from zoo import plugins

        current = plugins.commands_generation()
        if self._plugins_generation != current:
            plugins.register_commands(self)
            self._plugins_generation = current

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._add_plugin_commands()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with cli_wording():  # what a command records on the way (a failed job) says commands too
                return super().invoke(ctx)
        except ZooError as exc:
            discard_new_registry(ctx)
            click.echo(f"Error: {exc.for_cli()}", err=True)  # its hints as commands to paste
            ctx.exit(1)


@click.group(cls=ZooGroup)
@click.option(
    "--registry",
    "url",
    envvar="ZOO_REGISTRY_URL",
    default=None,
    metavar="URL",
    help="Registry database: a SQLAlchemy URL or a SQLite path (default: sqlite:///registry.db).",
)
@click.option(
    "--blob-root",
    envvar="ZOO_BLOB_ROOT",
    default=None,
    metavar="DIR",
    help="Blob store folder (default: registry.blobs/ beside a SQLite file).",
)
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.version_option(package_name="zoo")
@click.pass_context
def cli(ctx: click.Context, url: str | None, blob_root: str | None, verbose: int) -> None:
    """zoo: a registry of pretrained PyTorch models, and a generator of new weights from it."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    ctx.ensure_object(dict).update(url=url, blob_root=blob_root)


def as_flag(keyword: str, value: Any) -> str:
    """A Python keyword argument of a message's fix as this command line says it: ``weights='ema'`` ->
    ``--weights ema`` (for :meth:`ZooError.spelled`)."""
    flag = "--" + keyword.replace("_", "-")
    return flag if value is None else f"{flag} {shlex.quote(str(value))}"


def main() -> None:
    """Console entry point: runs the CLI and turns zoo errors into one-line messages and exit code 1."""
    try:
        cli._add_plugin_commands()  # type: ignore[attr-defined]
        code = cli.main(standalone_mode=False)  # returns the code of ctx.exit(...), e.g. ZooGroup's 1
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ZooError as exc:
        click.echo(f"Error: {exc.for_cli()}", err=True)
        sys.exit(1)
    except SystemExit:
        raise
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    if isinstance(code, int) and code:
        sys.exit(code)
