"""The ``ecr-mirror`` command.

Errors are one line on stderr and a non-zero exit; never a traceback (``--debug`` shows one).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from . import __version__
from .config import ENV_INSECURE_REGISTRIES, Settings
from .errors import MirrorError
from .runtime import Redactor

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3

_redactor = Redactor()


class Context:
    def __init__(self, debug: bool, insecure: tuple[str, ...], concurrency: int | None) -> None:
        self.debug = debug
        self.insecure = insecure
        self.concurrency = concurrency
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            s = Settings.from_env()
            if self.concurrency:
                from dataclasses import replace

                s = replace(s, concurrency=self.concurrency)
            self._settings = s
        return self._settings


def fail(message: str, code: int = EXIT_ERROR) -> None:
    click.echo(f"ecr-mirror: error: {_redactor(message)}", err=True)
    sys.exit(code)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        debug = bool(getattr(ctx.obj, "debug", False))
        try:
            return fn(*args, **kwargs)
        except MirrorError as exc:
            if debug:
                raise
            fail(str(exc))
        except KeyboardInterrupt:
            click.echo("ecr-mirror: interrupted", err=True)
            sys.exit(130)
        except (click.ClickException, click.exceptions.Exit, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - last line of defence: one line, no traceback
            if debug:
                raise
            first = str(exc).splitlines()[0] if str(exc) else ""
            fail(f"unexpected {type(exc).__name__}: {first} (run with --debug for a traceback)", EXIT_INTERNAL)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="ecr-mirror")
@click.option("--insecure-registry", "insecure", multiple=True, metavar="HOST",
              help=f"Talk plain http to HOST (repeatable). Loopback hosts always use http. Also {ENV_INSECURE_REGISTRIES}.")
@click.option("--concurrency", type=click.IntRange(1, 64), default=None, help="Blob transfers in flight (default 8).")
@click.option("--debug", is_flag=True, help="Verbose logs and tracebacks.")
@click.pass_context
def main(ctx: click.Context, insecure: tuple[str, ...], concurrency: int | None, debug: bool) -> None:
    """Mirror multi-architecture container images into Amazon ECR.

    \b
    One-off copies:   ecr-mirror copy docker.io/library/golang:1.22 123456789012.dkr.ecr.eu-west-1.amazonaws.com/golang:1.22
    Manual multi-arch: ecr-mirror assemble REG/app:1.0 REG/app:1.0-amd64 REG/app:1.0-arm64
    The mirror table: ecr-mirror add / list / remove / sync / status (see each --help)
    """
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.WARNING)
    ctx.obj = Context(debug, insecure, concurrency)


def _client(obj: Context):
    from .runtime import build_registry_client

    client = build_registry_client(obj.settings, insecure=obj.insecure)
    return client


def _progress_display(enabled: bool):
    """A rich byte counter on a terminal; nothing otherwise."""
    if not enabled:
        return None, None
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    progress = Progress(TextColumn("[bold]copying"), BarColumn(bar_width=None), DownloadColumn(), TransferSpeedColumn(),
                        transient=True, console=None)
    task = progress.add_task("copy", total=None)
    return progress, (lambda n: progress.advance(task, n))


def _run_copy(obj: Context, json_out: bool, action: Callable[[Any], Any]) -> None:
    from .copy import Copier

    client = _client(obj)
    tty = sys.stderr.isatty() and not json_out
    progress, advance = _progress_display(tty)
    try:
        with Copier(client, concurrency=obj.settings.concurrency, progress=advance) as copier:
            if progress:
                with progress:
                    report = action(copier)
            else:
                report = action(copier)
    finally:
        _redactor.add(client.secrets())
        client.http.close()
    requests: dict[str, dict[str, int]] = {}
    for (host, method), n in sorted(client.requests.items()):
        requests.setdefault(host, {})[method] = n
    report.requests = requests
    if json_out:
        click.echo(_redactor(json.dumps(report.as_dict(), indent=2, sort_keys=True)))
    else:
        if tty:
            what = "unchanged" if report.unchanged else (
                f"{report.blobs_copied} blobs copied, {report.blobs_skipped} present, {report.blobs_mounted} mounted, "
                f"{report.bytes_copied} bytes")
            click.echo(f"{report.destination}: {', '.join(report.platforms) or report.media_type} ({what})", err=True)
        click.echo(report.digest)


@main.command()
@click.argument("source")
@click.argument("destination")
@click.option("--platform", "platforms", multiple=True, metavar="OS/ARCH[/VARIANT]",
              help="Copy only this platform (repeatable). Default: every platform, digest-identical.")
@click.option("--arch-tags", is_flag=True, help="Also tag each platform's image DEST_TAG-<arch> (e.g. 1.22-amd64, 1.22-arm64).")
@click.option("--json", "json_out", is_flag=True, help="Print a JSON report instead of the digest.")
@click.pass_obj
@handle_errors
def copy(obj: Context, source: str, destination: str, platforms: tuple[str, ...], arch_tags: bool, json_out: bool) -> None:
    """Copy SOURCE to DESTINATION over the registry API, every digest verified.

    \b
    SOURCE       an image: golang:1.22, ghcr.io/org/app:v1, quay.io/x/y@sha256:...
    DESTINATION  an image with a tag (default tag: SOURCE's tag)

    With every platform the destination index has the same digest as the source. With --platform
    a new index of just those platforms is written (children unchanged). The tag is written last,
    so a failed copy leaves it as it was. Prints the destination digest.
    """
    from .manifest import parse_platforms
    from .reference import parse_reference

    src = parse_reference(source)
    dst = parse_reference(destination, default_tag=None)
    if dst.digest:
        raise click.BadParameter("give DESTINATION a tag, not a digest", param_hint="DESTINATION")
    if not dst.tag:
        dst = dst.with_tag(src.tag or "latest")
    wanted = parse_platforms(platforms) if platforms else None
    _run_copy(obj, json_out, lambda c: c.copy(src, dst, platforms=wanted, arch_tags=arch_tags))


@main.command()
@click.argument("destination")
@click.argument("sources", nargs=-1, required=True)
@click.option("--json", "json_out", is_flag=True, help="Print a JSON report instead of the digest.")
@click.pass_obj
@handle_errors
def assemble(obj: Context, destination: str, sources: tuple[str, ...], json_out: bool) -> None:
    """Join single-platform images into one multi-arch index at DESTINATION.

    The manual `docker manifest create` + `docker manifest push` in one step, across registries:
    each SOURCE's platform is read from its config; images and blobs are copied into DESTINATION's
    repository, then the index is written (a Docker manifest list when every source is a Docker
    manifest, an OCI index otherwise). Two sources of the same platform are an error.
    """
    from .reference import parse_reference

    dst = parse_reference(destination, default_tag=None)
    if not dst.tag or dst.digest:
        raise click.BadParameter("DESTINATION needs a tag (and no digest)", param_hint="DESTINATION")
    refs = [parse_reference(s) for s in sources]
    _run_copy(obj, json_out, lambda c: c.assemble(dst, refs))


def run() -> None:  # pragma: no cover - console entry
    main(prog_name="ecr-mirror")


if __name__ == "__main__":  # pragma: no cover
    run()
