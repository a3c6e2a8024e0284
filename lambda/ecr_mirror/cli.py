"""The ``ecr-mirror`` command.

Errors are one line on stderr and a non-zero exit; never a traceback (``--debug`` shows one).
Everything from data reaches the terminal through :mod:`ecr_mirror.console` (text, not markup;
control characters escaped). Exit statuses: :data:`EXIT_OK` … :data:`EXIT_INTERRUPTED`.
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
from .advice import Where, explain
from .config import ENV_INSECURE_REGISTRIES, ENV_STACK, ENV_STATE_TABLE, ENV_TABLE, Settings, default_state_table
from .console import EXIT_INTERRUPTED, SafeFormatter, exit_interrupted, safe
from .errors import Interrupted, MirrorError
from .runtime import Redactor

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
#: ``sync``: nothing failed, but a tag is not in sync (what ``--check`` and ``--dry-run`` report before a copy)
EXIT_NOT_IN_SYNC = 4

EXIT_STATUS_HELP = f"""\b
Exit status:
  {EXIT_OK}    success (sync: every tag in sync)
  {EXIT_ERROR}    an error: registry, AWS, configuration; sync: a row or tag failed or is invalid
  {EXIT_USAGE}    bad usage (unknown option, missing argument)
  {EXIT_INTERNAL}    a bug (run with --debug for the traceback)
  {EXIT_NOT_IN_SYNC}    sync: nothing failed, but a tag is not in sync (--check, --dry-run: a copy is due;
       or another sync is copying it right now)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C); the destination tag is left as it was"""

_redactor = Redactor()


class Context:
    """What the ``ecr-mirror`` group's options give every command; :attr:`settings` read once, on first use."""

    def __init__(self, debug: bool, insecure: tuple[str, ...], concurrency: int | None, ca_file: str | None = None,
                 stack: str | None = None) -> None:
        self.debug = debug
        self.insecure = insecure
        self.concurrency = concurrency
        self.ca_file = ca_file
        self.stack = stack
        self.where = Where()  # filled in as the command learns its table and region, for error advice
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        """``ECR_MIRROR_*`` settings, then what ``--stack``'s outputs say (table, state table, repository
        prefix, tag mutability, target registry: the values the stack gives its functions; its region is
        used for every AWS call), with ``--concurrency`` applied."""
        if self._settings is None:
            from dataclasses import replace

            s = Settings.from_env()
            if self.stack:
                from .config import OUTPUT_REGION, settings_from_stack
                from .runtime import read_stack_outputs

                outputs, region = read_stack_outputs(self.stack)
                s = settings_from_stack(s, self.stack, outputs)
                stack_region = outputs.get(OUTPUT_REGION) or region
                if stack_region:  # the tables, the functions and the registry are in the stack's region
                    os.environ["AWS_REGION"] = stack_region
                self.where = Where(table=s.table, region=stack_region)
            if self.concurrency:
                s = replace(s, concurrency=self.concurrency)
            self._settings = s
        return self._settings


def fail(message: str, code: int = EXIT_ERROR) -> None:
    """Print ``ecr-mirror: error: <message>`` (secrets redacted, controls escaped) on stderr and exit with ``code``."""
    click.echo(f"ecr-mirror: error: {safe(_redactor(message))}", err=True)
    sys.exit(code)


def echo(text: str, *, err: bool = False) -> None:
    """One line of output built from data: secrets redacted, control characters escaped."""
    click.echo(safe(_redactor(text)), err=err)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A command's errors as one line and an exit status (1 for ecr-mirror errors, 3 for bugs); ``--debug`` re-raises."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        debug = bool(getattr(ctx.obj, "debug", False))
        try:
            return fn(*args, **kwargs)
        except Interrupted:  # a transfer noticed the abort before the main thread did
            exit_interrupted()
        except MirrorError as exc:
            if debug:
                raise
            fail(explain(exc, getattr(ctx.obj, "where", Where())))
        except KeyboardInterrupt:
            exit_interrupted()
        except (click.ClickException, click.exceptions.Exit, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - last line of defence: one line, no traceback
            if debug:
                raise
            first = str(exc).splitlines()[0] if str(exc) else ""
            fail(f"unexpected {type(exc).__name__}: {first} (run with --debug for a traceback)", EXIT_INTERNAL)

    return wrapper


def _configure_logging(debug: bool) -> None:
    """Log lines on stderr, data in them escaped and secrets redacted; DEBUG with ``--debug``, else ERROR."""
    from .runtime import quiet_aws_loggers, redact_logs

    root = logging.getLogger()
    if not root.handlers:  # as logging.basicConfig: only when nobody configured logging (a test runner may have)
        handler = logging.StreamHandler()
        handler.setFormatter(SafeFormatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.ERROR)
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.WARNING)
    quiet_aws_loggers()  # botocore at DEBUG prints tokens and secret strings
    redact_logs(_redactor)


# Global options: given before the command (`ecr-mirror --debug copy …`) or after it (`ecr-mirror copy --debug …`).
_INSECURE_HELP = f"Talk plain http to HOST (repeatable). Loopback hosts always use http. Also {ENV_INSECURE_REGISTRIES}."
_CONCURRENCY_HELP = "Blob transfers in flight (default 8)."
_CA_FILE_HELP = "Also trust the CA certificates in this PEM file for https registries (a private registry's own CA). SSL_CERT_FILE replaces the default CAs."
_DEBUG_HELP = "Verbose logs and tracebacks."
_STACK_HELP = (f"Take the table, repository prefix, tag mutability, target registry and region from the outputs "
               f"of this deployed CloudFormation stack (name or ARN), as its functions have them. Also {ENV_STACK}.")


def _late_global(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    """Callback of a global option repeated on a command: apply it to the group's :class:`Context`."""

    def apply(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        obj = ctx.find_object(Context)
        if obj is None or value in (None, False, ()):
            return
        if name == "debug":
            obj.debug = True
            _configure_logging(True)
        elif name == "insecure":
            obj.insecure = (*obj.insecure, *value)
        elif name == "concurrency":
            obj.concurrency = value
            obj._settings = None  # noqa: SLF001 - read again with the new value
        elif name == "ca_file":
            obj.ca_file = value
        elif name == "stack":
            obj.stack = value
            obj._settings = None  # noqa: SLF001 - read again from the stack

    return apply


def _global_options() -> list[click.Option]:
    """The group's options, for a command's own parameters (not passed to the command function)."""
    common: dict[str, Any] = dict(expose_value=False)
    return [
        click.Option(["--insecure-registry"], multiple=True, metavar="HOST", help=_INSECURE_HELP, callback=_late_global("insecure"), **common),
        click.Option(["--concurrency"], type=click.IntRange(1, 64), default=None, help=_CONCURRENCY_HELP,
                     callback=_late_global("concurrency"), **common),
        click.Option(["--ca-file"], type=click.Path(dir_okay=False), default=None, metavar="PEM", help=_CA_FILE_HELP,
                     callback=_late_global("ca_file"), **common),
        click.Option(["--debug"], is_flag=True, help=_DEBUG_HELP, callback=_late_global("debug"), **common),
        click.Option(["--stack"], metavar="NAME", default=None, help=_STACK_HELP, callback=_late_global("stack"),
                     **common),
    ]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, epilog=EXIT_STATUS_HELP)
@click.version_option(__version__, prog_name="ecr-mirror")
@click.option("--insecure-registry", "insecure", multiple=True, metavar="HOST", help=_INSECURE_HELP)
@click.option("--concurrency", type=click.IntRange(1, 64), default=None, help=_CONCURRENCY_HELP)
@click.option("--ca-file", type=click.Path(dir_okay=False), default=None, metavar="PEM", help=_CA_FILE_HELP)
@click.option("--debug", is_flag=True, help=_DEBUG_HELP)
@click.option("--stack", envvar=ENV_STACK, metavar="NAME", default=None, help=_STACK_HELP)
@click.pass_context
def main(ctx: click.Context, insecure: tuple[str, ...], concurrency: int | None, ca_file: str | None, debug: bool,
         stack: str | None) -> None:
    """Mirror multi-architecture container images into Amazon ECR.

    \b
    One-off copies:   ecr-mirror copy docker.io/library/golang:1.22 123456789012.dkr.ecr.eu-west-1.amazonaws.com/golang:1.22
    Manual multi-arch: ecr-mirror assemble REG/app:1.0 REG/app:1.0-amd64 REG/app:1.0-arm64
    Look at images:   ecr-mirror tags / inspect / digest (see each --help)
    The mirror table: ecr-mirror add / list / remove / sync / status / apply / export / table (see each --help)

    Global options may also follow the command (ecr-mirror copy --debug ...).
    Credentials come from the Docker config (auths, credsStore, credHelpers), and ECR's token for ECR hosts.
    """
    _configure_logging(debug)
    ctx.obj = Context(debug, insecure, concurrency, ca_file, stack or None)


def _split(values: tuple[str, ...]) -> list[str]:
    """Repeated and comma-separated values as one list: ('a,b', 'c') -> ['a', 'b', 'c']."""
    out: list[str] = []
    for v in values:
        out.extend(p.strip() for p in v.split(",") if p.strip())
    return out


def _client(obj: Context):
    from .runtime import build_registry_client

    client = build_registry_client(obj.settings, insecure=obj.insecure, ca_file=obj.ca_file)
    _redactor.watch(client.secrets)
    return client


def _ensure_ecr_repository(obj: Context, destination: Any) -> None:
    """ECR refuses pushes into a repository that does not exist (ecr-facts.md 1): like ``sync``, create it
    first when DESTINATION is an ECR host (or ECR_MIRROR_TARGET_REGISTRY); other registries create on push."""
    from .errors import AwsError
    from .runtime import ecr_target_for

    target = ecr_target_for(obj.settings, destination.api_host)
    if target is None:
        return
    try:
        target.ensure_repository(destination.repository)
    except AwsError as exc:
        if exc.code != "AccessDeniedException":
            raise
        # a role allowed to push but not to describe or create repositories: the push itself tells
        echo(f"ecr-mirror: warning: cannot check repository {destination.repository} ({exc}); pushing anyway", err=True)


def _run_copy(obj: Context, json_out: bool, action: Callable[[Any], Any]) -> None:
    """Run ``action(copier)`` with a progress display on a terminal; Ctrl-C aborts it; print the digest
    (stdout) and a summary in human sizes (stderr), or the JSON report."""
    import time

    from .console import CopyDisplay, copy_summary, interrupt_guard
    from .copy import Copier

    client = _client(obj)
    display = CopyDisplay(enabled=None if not json_out else False)
    started = time.monotonic()
    try:
        with Copier(client, concurrency=obj.settings.concurrency, progress=display) as copier, \
                interrupt_guard(client.abort, display), display:
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
        echo(copy_summary(report, time.monotonic() - started), err=True)
        if report.referrers is not None and (report.referrers.items or report.referrers.not_checked):
            # referrers: what was copied, what could not apply, what an unchanged copy left to the next
            echo(f"{report.destination}: {report.referrers.summary()}", err=True)
        for warning in report.warnings:
            echo(f"ecr-mirror: warning: {warning}", err=True)
        echo(report.digest)


#: ``--no-referrers`` of ``copy`` and ``assemble`` (issue 14: referrers travel by default)
no_referrers_option = click.option(
    "--no-referrers", is_flag=True,
    help="Leave signatures, SBOMs and attestations behind (default: they are copied: the referrers API, the "
         "sha256-<digest> tag schema and cosign's .sig/.att/.sbom tags).")


def _referrer_policy(no_referrers: bool):
    """A person asked for this image now: discover its referrers even when the image is unchanged."""
    from .referrers import ReferrerPolicy

    return None if no_referrers else ReferrerPolicy(when_unchanged=True)


nondistributable_option = click.option(
    "--allow-nondistributable-artifacts", "allow_nondistributable", is_flag=True,
    help="Also copy non-distributable (foreign) layers, e.g. Windows base layers, where their bytes can be "
         "fetched and the destination takes them. Default: left out, as their registries serve them.")


@main.command()
@click.argument("source")
@click.argument("destination")
@click.option("--platform", "platforms", multiple=True, metavar="OS/ARCH[/VARIANT]",
              help="Copy only this platform (repeatable, or comma-separated). Default: every platform, digest-identical.")
@click.option("--arch-tags", is_flag=True, help="Also tag each platform's image DEST_TAG-<arch> (e.g. 1.22-amd64, 1.22-arm64).")
@nondistributable_option
@click.option("--json", "json_out", is_flag=True, help="Print a JSON report instead of the digest.")
@no_referrers_option
@click.pass_obj
@handle_errors
def copy(obj: Context, source: str, destination: str, platforms: tuple[str, ...], arch_tags: bool,
         allow_nondistributable: bool, json_out: bool, no_referrers: bool) -> None:
    """Copy SOURCE to DESTINATION over the registry API, every digest verified.

    \b
    SOURCE       an image: golang:1.22, ghcr.io/org/app:v1, quay.io/x/y@sha256:...
    DESTINATION  an image with a tag (default tag: SOURCE's tag)

    With every platform the destination index has the same digest as the source. With --platform
    a new index of just those platforms is written (children unchanged). The tag is written last,
    so a failed copy leaves it as it was. Then the image's signatures, SBOMs and attestations follow
    it (those of an upstream index that --platform rewrote do not apply; --json says which and why).
    Prints the destination digest.
    """
    from .manifest import parse_platforms
    from .reference import parse_reference

    src = parse_reference(source)
    dst = parse_reference(destination, default_tag=None)
    if dst.digest:
        raise click.BadParameter("give DESTINATION a tag, not a digest", param_hint="DESTINATION")
    if not dst.tag:
        dst = dst.with_tag(src.tag or "latest")
    wanted = parse_platforms(_split(platforms)) if platforms else None
    policy = _referrer_policy(no_referrers)
    _ensure_ecr_repository(obj, dst)
    _run_copy(obj, json_out, lambda c: c.copy(src, dst, platforms=wanted, arch_tags=arch_tags,
                                              allow_nondistributable=allow_nondistributable, referrers=policy))


@main.command()
@click.argument("destination")
@click.argument("sources", nargs=-1, required=True)
@nondistributable_option
@click.option("--json", "json_out", is_flag=True, help="Print a JSON report instead of the digest.")
@no_referrers_option
@click.pass_obj
@handle_errors
def assemble(obj: Context, destination: str, sources: tuple[str, ...], allow_nondistributable: bool,
             json_out: bool, no_referrers: bool) -> None:
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
    policy = _referrer_policy(no_referrers)
    _ensure_ecr_repository(obj, dst)
    _run_copy(obj, json_out, lambda c: c.assemble(dst, refs, allow_nondistributable=allow_nondistributable,
                                                  referrers=policy))


# ---------------------------------------------------------------- looking at images (as crane, skopeo, regctl do)


def _with_client(obj: Context, action: Callable[[Any], Any]) -> Any:
    """``action(client)`` with a registry client that Ctrl-C aborts; the client closed after."""
    from .console import interrupt_guard

    client = _client(obj)
    try:
        with interrupt_guard(client.abort):
            return action(client)
    finally:
        _redactor.add(client.secrets())
        client.http.close()


@main.command()
@click.argument("repository")
@click.option("--json", "json_out", is_flag=True, help="Print a JSON list.")
@click.pass_obj
@handle_errors
def tags(obj: Context, repository: str, json_out: bool) -> None:
    """List the tags of REPOSITORY, one a line (as the registry lists them).

    \b
    ecr-mirror tags docker.io/library/golang
    ecr-mirror tags 123456789012.dkr.ecr.eu-west-1.amazonaws.com/mirror/docker.io/library/golang
    """
    from .reference import parse_repository

    ref = parse_repository(repository)
    found = _with_client(obj, lambda c: c.tags_list(ref))
    if json_out:
        click.echo(json.dumps(found, indent=2))
        return
    for tag in found:
        echo(tag)


@main.command()
@click.argument("reference")
@click.option("--raw", is_flag=True, help="Write the manifest's exact bytes, as the registry serves them (their sha256 is the digest).")
@click.option("--platform", metavar="OS/ARCH[/VARIANT]",
              help="From an index, show the manifest of this platform instead.")
@click.pass_obj
@handle_errors
def inspect(obj: Context, reference: str, raw: bool, platform: str | None) -> None:
    """Show the manifest of REFERENCE: for a multi-arch image, the index with each platform and digest.

    Printed as `docker manifest inspect` shows it (the JSON, indented); the digest of what is shown
    goes to stderr. With --raw: the exact bytes, nothing added.

    \b
    ecr-mirror inspect golang:1.22
    ecr-mirror inspect --platform linux/arm64 golang:1.22
    ecr-mirror inspect --raw golang:1.22 | sha256sum
    """
    from .copy import part_label
    from .errors import CopyError
    from .manifest import Platform, select_children
    from .reference import parse_reference

    ref = parse_reference(reference)
    wanted = Platform.parse(platform) if platform else None

    def read(client: Any) -> Any:
        manifest = client.manifest_get(ref)
        if wanted is None:
            return manifest
        if not manifest.is_index:
            raise CopyError(f"{ref} is a single image, not an index: --platform does not apply")
        child = select_children(manifest, [wanted])
        images = [d for d in child if part_label(d) != "attestations"]
        return client.manifest_get(ref.with_digest(images[0].digest), media_type=images[0].media_type)

    manifest = _with_client(obj, read)
    if raw:
        sys.stdout.buffer.write(manifest.raw)
        sys.stdout.flush()
        return
    click.echo(json.dumps(manifest.data, indent=3))
    echo(f"{manifest.media_type} {manifest.digest}", err=True)


@main.command()
@click.argument("reference")
@click.pass_obj
@handle_errors
def digest(obj: Context, reference: str) -> None:
    """Print the digest REFERENCE points at (one HEAD request; for a multi-arch image, the index's digest).

    A registry that answers the HEAD 404 is asked again with a GET before REFERENCE is called missing.

    \b
    ecr-mirror digest golang:1.22
    """
    from .errors import NotFoundError
    from .reference import parse_reference

    ref = parse_reference(reference)
    head = _with_client(obj, lambda c: c.manifest_head(ref, confirm_missing=True))
    if head is None:
        raise NotFoundError(f"{ref} not found")
    echo(head.digest)


# ---------------------------------------------------------------- the mirror table

table_option = click.option("--table", "table_name", envvar=ENV_TABLE, metavar="NAME",
                            help=f"Mirror table name (default: ${ENV_TABLE}).")
state_table_option = click.option("--state-table", "state_table_name", envvar=ENV_STATE_TABLE, metavar="NAME",
                                  help=f"State table name (default: ${ENV_STATE_TABLE}, else <table>-state).")


def _table(obj: Context, table_name: str | None):
    from .runtime import boto3_client
    from .store import MirrorTable

    settings = obj.settings  # first: --stack may set the region
    if obj.stack and _from_environment("table_name"):
        table_name = None  # --stack says which table; only --table on the command line overrides it
    name = table_name or settings.table
    if not name:
        fail(f"no table given: pass --table NAME or --stack NAME, or set {ENV_TABLE}", EXIT_USAGE)
    dynamodb = boto3_client("dynamodb")
    obj.where = Where(table=name, region=dynamodb.meta.region_name or "")
    return MirrorTable(dynamodb, name, prefix=obj.settings.repository_prefix)


def _state(obj: Context, rows: Any, state_table_name: str | None):
    """The state table beside mirror table ``rows``: ``--state-table``/``$ECR_MIRROR_STATE_TABLE``, else ``<table>-state``."""
    from .runtime import boto3_client
    from .store import StateTable

    if obj.stack and _from_environment("state_table_name"):
        state_table_name = None
    from_stack = obj.settings.state_table if obj.stack and rows.name == obj.settings.table else ""
    name = state_table_name or from_stack or default_state_table(rows.name)
    obj.where = Where(table=rows.name, region=obj.where.region, state_table=name)
    return StateTable(boto3_client("dynamodb"), name, rows=rows)


def _from_environment(parameter: str) -> bool:
    """Whether the current command's ``parameter`` came from its environment variable (not the command line)."""
    from click.core import ParameterSource

    return click.get_current_context().get_parameter_source(parameter) == ParameterSource.ENVIRONMENT


@main.group()
def table() -> None:
    """Manage the mirror table itself (local and development use; deployed stacks create it)."""


@table.command("create")
@table_option
@state_table_option
@click.pass_obj
@handle_errors
def table_create(obj: Context, table_name: str | None, state_table_name: str | None) -> None:
    """Create the mirror table (on-demand, with a stream) and the state table beside it (on-demand, TTL,
    no stream). Does nothing for a table that exists."""
    t = _table(obj, table_name)
    st = _state(obj, t, state_table_name)
    for each in (t, st):
        created = each.create()
        echo(f"table {each.name} {'created' if created else 'already exists'}", err=True)


@main.command()
@click.argument("row_id")
@click.option("--source", metavar="REPOSITORY", help="Upstream repository without tag, e.g. docker.io/library/golang.")
@click.option("--tag", "tags", multiple=True, metavar="TAG[@DIGEST]",
              help="A tag to mirror (repeatable, or comma-separated); TAG@sha256:... pins it to that digest.")
@click.option("--tag-pattern", "tag_patterns", multiple=True, metavar="REGEX",
              help="Mirror every upstream tag the whole REGEX matches (repeatable: any of them).")
@click.option("--exclude-pattern", "exclude_patterns", multiple=True, metavar="REGEX",
              help="Leave out tags the whole REGEX matches (repeatable).")
@click.option("--versions", metavar="RANGE", help="Mirror upstream tags in a version range, e.g. '>=1.21 <2'.")
@click.option("--keep-latest", type=int, metavar="N",
              help="With --tag-pattern/--versions: only the newest N by version order.")
@click.option("--platform", "platforms", multiple=True, metavar="OS/ARCH[/VARIANT]",
              help="Mirror only these platforms (repeatable). Default: all, digest-identical.")
@click.option("--target-repository", metavar="NAME", help="ECR repository (default <prefix>/<source>).")
@click.option("--arch-tags/--no-arch-tags", default=None, help="Also write <tag>-<arch> tags.")
@click.option("--allow-nondistributable-artifacts/--no-allow-nondistributable-artifacts", "allow_nondistributable",
              default=None, help="Also copy non-distributable (foreign) layers where reachable.")
@click.option("--referrers/--no-referrers", default=None, help="Also copy referrers (signatures, SBOMs); default on.")
@click.option("--assemble", "assemble", multiple=True, metavar="IMAGE",
              help="Instead of --source: single-platform images joined under the one --tag (repeatable).")
@click.option("--disabled", is_flag=True, help="Add the row disabled.")
@click.option("--replace", is_flag=True, help="Overwrite an existing row of this id.")
@table_option
@click.pass_obj
@handle_errors
def add(obj: Context, row_id: str, source: str | None, tags: tuple[str, ...], tag_patterns: tuple[str, ...],
        exclude_patterns: tuple[str, ...], versions: str | None, keep_latest: int | None, platforms: tuple[str, ...],
        target_repository: str | None, arch_tags: bool | None, allow_nondistributable: bool | None,
        referrers: bool | None, assemble: tuple[str, ...], disabled: bool, replace: bool, table_name: str | None) -> None:
    """Add a row ROW_ID to the mirror table (validated first; it syncs within a minute once deployed).

    \b
    ecr-mirror add golang --source docker.io/library/golang --tag 1.22 --tag 1.23
    ecr-mirror add node --source node --tag-pattern '22[.][0-9]+[.][0-9]+-alpine' --keep-latest 3
    ecr-mirror add kubectl --source registry.k8s.io/kubectl --versions '>=1.30 <2' --keep-latest 5
    ecr-mirror add base --source debian --tag 'bookworm@sha256:<64 hex digits>'
    ecr-mirror add app-arm --source ghcr.io/org/app --tag v1 --platform linux/arm64
    ecr-mirror add joined --assemble reg/app:1-amd64 --assemble reg/app:1-arm64 --tag 1

    A second row writing the same target repository and tag is refused.
    """
    from .rows import parse_row, row_to_item

    t = _table(obj, table_name)
    item = row_to_item(
        row_id, source=source, tags=_split(tags) or None, tag_pattern=tag_patterns[0] if len(tag_patterns) == 1 else None,
        tag_patterns=tag_patterns if len(tag_patterns) > 1 else None, exclude_patterns=exclude_patterns or None,
        versions=versions, keep_latest=keep_latest, platforms=_split(platforms) or None,
        target_repository=target_repository, arch_tags=arch_tags, assemble=list(assemble) or None,
        enabled=False if disabled else None, allow_nondistributable_artifacts=allow_nondistributable,
        referrers=referrers, prefix=obj.settings.repository_prefix,
    )
    warnings = _refuse_overlaps(parse_row(item, prefix=obj.settings.repository_prefix), t)
    row = t.put_row(item, overwrite=replace)
    for warning in warnings:
        echo(f"ecr-mirror: warning: {warning}", err=True)
    echo(f"row {row.id}: {row.source or ' + '.join(map(str, row.assemble or ()))} -> {row.target_repository}", err=True)


@main.command()
@click.argument("row_ids", nargs=-1, required=True)
@table_option
@state_table_option
@click.pass_obj
@handle_errors
def remove(obj: Context, row_ids: tuple[str, ...], table_name: str | None, state_table_name: str | None) -> None:
    """Remove rows from the mirror table, with what the service recorded for them (so a row added again
    under the same id starts afresh). Images already mirrored stay in ECR. If any id is not a row,
    nothing is removed."""
    t = _table(obj, table_name)
    row_ids = tuple(dict.fromkeys(row_ids))
    missing = [r for r in row_ids if t.get_row(r) is None]
    if missing:
        fail(f"no such row: {', '.join(missing)} (nothing removed)")
    st = _state(obj, t, state_table_name)
    for done, row_id in enumerate(row_ids):
        try:
            t.delete_row(row_id)
            st.delete_row_state(row_id)
        except MirrorError as exc:
            fail(f"{exc} (removed {done} of {len(row_ids)} rows: {', '.join(row_ids[:done]) or 'none'})")
        echo(f"row {row_id} removed", err=True)


# ---------------------------------------------------------------- rows as code (ecr_mirror.rowsfile)


def _refuse_overlaps(row: Any, t: Any) -> list[str]:
    """Fail if ``row`` writes a target repository and explicit tag another row of table ``t`` writes;
    return warnings for rows that may select the same tags through patterns or ranges."""
    from .rows import find_overlaps

    others = [r for _, r, _ in t.scan_parsed(consistent=True) if r is not None and r.id != row.id]
    overlaps = [o for o in find_overlaps([*others, row]) if row.id in (o.row_id, o.other_id)]
    clashes = [o for o in overlaps if o.tag is not None]
    if clashes:
        fail(f"{clashes[0].describe()}: each target repository and tag may be written by one row only "
             f"(give another target repository or tag, or remove row {clashes[0].row_id!r} first)")
    return [o.describe() for o in overlaps]


def _read_rows_file(path: str, prefix: str) -> Any:
    from pathlib import Path

    from .errors import ConfigError
    from .rowsfile import MAX_FILE_BYTES, load_rows_yaml

    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        else:
            with Path(path).open("rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read rows file {path}: {exc.strerror or exc}") from exc
    return load_rows_yaml(data, name="<stdin>" if path == "-" else path, prefix=prefix)


@main.command("apply")
@click.option("-f", "--file", "path", required=True, metavar="FILE", help="The rows file (YAML); - reads standard input.")
@click.option("--dry-run", is_flag=True, help="Print the changes; write nothing.")
@click.option("--prune", is_flag=True, help="Also delete the rows that are not in the file.")
@table_option
@state_table_option
@click.pass_obj
@handle_errors
def apply(obj: Context, path: str, dry_run: bool, prune: bool, table_name: str | None,
          state_table_name: str | None) -> None:
    """Make the mirror table match a rows file (rows as code; see the README for the format).

    \b
    + id   a row the file adds           ~ id   a row it changes (attribute by attribute)
    - id   a row --prune deletes         ? id   a row not in the file, left as it is

    The whole file is validated before anything is written; an invalid file writes nothing. Rows whose
    attributes already match are not written, so applying twice changes nothing. Exit status: 0 when
    the table matches (or would, with --dry-run), 1 on an invalid file or a failed write.
    """
    from .errors import RowsFileError
    from .rowsfile import plan_changes

    prefix = obj.settings.repository_prefix
    try:
        rows_file = _read_rows_file(path, prefix)
        t = _table(obj, table_name)
        plan = plan_changes(rows_file, t.scan_rows(consistent=True), prune=prune, prefix=prefix)
        if plan.problems:
            raise RowsFileError(plan.problems)
    except RowsFileError as exc:
        for problem in exc.problems:
            echo(f"ecr-mirror: error: {problem}", err=True)
        sys.exit(EXIT_ERROR)
    for line in plan.lines():
        echo(line)
    for warning in plan.warnings:
        echo(f"ecr-mirror: warning: {warning}", err=True)
    if dry_run:
        echo(f"dry run: {plan.summary(applied=False)}; nothing written")
        return
    t.apply_changes(plan.writes, state=_state(obj, t, state_table_name))
    echo(f"applied: {plan.summary(applied=True)}")


@main.command("export")
@click.option("-o", "--output", metavar="FILE", default="-", help="Write the rows file to FILE (default: standard output).")
@table_option
@click.pass_obj
@handle_errors
def export_rows(obj: Context, output: str, table_name: str | None) -> None:
    """Write the mirror table as a rows file: `ecr-mirror apply -f FILE` on it changes nothing.

    Rows that do not validate are left out, with a warning each.
    """
    from pathlib import Path

    from .errors import ConfigError
    from .rowsfile import dump_rows_yaml, export_document

    t = _table(obj, table_name)
    document, warnings = export_document(t.scan_rows(consistent=True), prefix=obj.settings.repository_prefix)
    text = dump_rows_yaml(document, header=f"ecr-mirror rows file: the rows of table {t.name}.\n"
                                           "`ecr-mirror apply -f FILE` makes a table match it.")
    for warning in warnings:
        echo(f"ecr-mirror: warning: {warning}", err=True)
    if output == "-":
        click.echo(text, nl=False)  # YAML from yaml.safe_dump: control characters already escaped
        return
    target = Path(output)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {output}: {exc.strerror or exc}") from exc
    echo(f"wrote {len(document['sources'])} rows to {output}", err=True)


def _plain(value: Any) -> Any:
    """A row attribute as JSON-ready data: references and platforms as strings, tuples as lists."""
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_plain(v) for v in value]
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def row_listing(item: dict[str, Any], row: Any, error: Any) -> dict[str, Any]:
    """Every user attribute of a row (:data:`~ecr_mirror.rows.USER_ATTRIBUTES`): as validated, with
    defaults filled in, for a valid row; as written for an invalid one. Plus ``error`` and
    ``attributes`` (the names the item itself holds)."""
    from .rows import USER_ATTRIBUTES, user_attributes

    out: dict[str, Any] = {}
    for name in USER_ATTRIBUTES:
        value = getattr(row, name) if row is not None and hasattr(row, name) else item.get(name)
        out[name] = _plain(value)
    if row is not None:  # every pin, however written (``tags: [1.22@sha256:…]``, a digests map or list)
        out["digests"] = dict(row.pins) or None
    out["error"] = str(error) if error else None
    out["attributes"] = sorted(user_attributes(item))
    return out


#: ``list`` table: (column, attribute) for the attributes shown in a column of their own
_LIST_COLUMNS = (("id", "id"), ("source", "source"), ("tags", "tags"), ("platforms", "platforms"),
                 ("target", "target_repository"), ("arch tags", "arch_tags"), ("enabled", "enabled"))
#: columns shown only when some row is not at the default (the attribute's name says what it does)
_LIST_OPTIONAL_COLUMNS = (("foreign layers", "allow_nondistributable_artifacts"), ("referrers", "referrers"))
#: attributes shown inside the tags cell (see :func:`_list_cell`)
_LIST_TAG_ATTRIBUTES = frozenset({"tag_pattern", "tag_patterns", "exclude_patterns", "versions", "keep_latest", "digests"})
#: the default of each optional column's attribute: the column appears when some row differs
_LIST_DEFAULTS = {"allow_nondistributable_artifacts": False, "referrers": True}


def _list_cell(attribute: str, r: dict[str, Any]) -> str:
    value = r.get(attribute)
    if attribute == "source":
        return str(value) if value else " + ".join(map(str, r.get("assemble") or []))
    if attribute == "tags":  # every way a row selects tags, in one cell
        pins = r.get("digests") or {}
        if isinstance(pins, list):  # as written in an invalid row: ["1.22@sha256:…"]
            pins = dict(str(p).partition("@")[::2] for p in pins)
        pinned = [f"{t}@{d}" for t, d in (pins.items() if isinstance(pins, dict) else [])]
        explicit = [str(t) for t in value or [] if not isinstance(pins, dict) or t not in pins]
        patterns = [r["tag_pattern"]] if r.get("tag_pattern") else list(r.get("tag_patterns") or [])
        parts = [*explicit, *pinned, *(f"/{p}/" for p in patterns)]
        parts += [f"versions {r['versions']}"] if r.get("versions") else []
        parts += [f"not /{p}/" for p in r.get("exclude_patterns") or []]
        return ", ".join(parts) + (f" (newest {r['keep_latest']})" if r.get("keep_latest") else "")
    if attribute == "platforms":
        return ", ".join(map(str, value)) if value else "all"
    if attribute == "allow_nondistributable_artifacts":
        return "copy" if value else "skip"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return "" if value is None else str(value)


@main.command("list")
@click.option("--json", "json_out", is_flag=True, help="Print the rows as JSON (every attribute).")
@table_option
@click.pass_obj
@handle_errors
def list_rows(obj: Context, json_out: bool, table_name: str | None) -> None:
    """List the rows of the mirror table (what is mirrored, and whether each row is valid).

    On a terminal the table fits its width (long values wrap); piped, nothing is cut. A
    "foreign layers" column appears when a row copies non-distributable layers (--json: every attribute).
    """
    t = _table(obj, table_name)
    rows = [row_listing(item, row, error) for item, row, error in t.scan_parsed()]
    if json_out:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    from .console import print_table

    optional = [(h, a) for h, a in _LIST_OPTIONAL_COLUMNS if any(r.get(a) not in (None, _LIST_DEFAULTS.get(a)) for r in rows)]
    columns = [*_LIST_COLUMNS, *optional]
    shown = {a for _, a in _LIST_COLUMNS + _LIST_OPTIONAL_COLUMNS} | _LIST_TAG_ATTRIBUTES | {"assemble", "error", "attributes"}
    extra = [k for r in rows for k in r if k not in shown]  # attributes a later schema adds get a column too
    extra = list(dict.fromkeys(extra))
    headers = [h for h, _ in columns] + extra + ["problem"]
    body = [[_list_cell(a, r) for _, a in columns] + [_list_cell(a, r) for a in extra] + [r["error"] or ""] for r in rows]
    print_table(headers, body, styles=lambda col, text: "red" if col == len(headers) - 1 and text else None)


@main.command()
@click.option("--id", "row_ids", multiple=True, metavar="ID", help="Sync only this row (repeatable). Default: every enabled row.")
@click.option("--dry-run", is_flag=True, help="Print what would be copied and why; copy nothing, write nothing.")
@click.option("--check", "check_only", is_flag=True, help="Detect and record each tag's state; copy nothing.")
@click.option("--audit", is_flag=True,
              help="Check every tag at ECR, settled or not, and that its index's children are all still there, "
                   "and look for signatures, SBOMs and attestations added upstream since (the schedule does this "
                   "every auditInterval). Without it, a tag whose upstream has not moved since its last success is "
                   "taken as recorded.")
@click.option("--json", "json_out", is_flag=True, help="Print the results as JSON.")
@table_option
@state_table_option
@click.pass_obj
@handle_errors
def sync(obj: Context, row_ids: tuple[str, ...], dry_run: bool, check_only: bool, audit: bool, json_out: bool,
         table_name: str | None, state_table_name: str | None) -> None:
    """Sync rows now, in this process (the same code the worker Lambda runs).

    On a terminal, shows the row and tag being worked on and the bytes copied. Exit status: 0 when
    every tag is in sync, 1 when a row or tag failed or is invalid, 4 when nothing failed but a tag
    is not in sync (with --check or --dry-run: a copy is due; or another sync is copying it), so either
    can gate a pipeline.
    """
    from .console import SyncDisplay, interrupt_guard
    from .referrers import summary_of
    from .rows import is_enabled, item_peers
    from .runtime import build_syncer
    from .status import PassRecord, new_pass_id, now_timestamp

    t = _table(obj, table_name)
    st = _state(obj, t, state_table_name)
    syncer = build_syncer(obj.settings, st, insecure=obj.insecure, docker_config=True, ca_file=obj.ca_file)
    if dry_run:  # a dry run writes nothing, the pull budget included
        syncer.client.use_budget(None)
    _redactor.watch(syncer.client.secrets)
    display = SyncDisplay(enabled=None if not json_out else False, log=None if json_out else sys.stderr)
    syncer.progress, syncer.copier.progress = display.tag, display
    started = now_timestamp()
    try:
        every = list(t.scan_rows(consistent=True))  # also for the rows each one may conflict with
        if row_ids:
            items = []
            for rid in row_ids:
                item = t.get_row(rid)
                if item is None:
                    fail(f"no such row: {rid}")
                items.append(item)
        else:
            items = [i for i in every if is_enabled(i)]
        by_id = {str(i.get("id")): i for i in every}
        peers = {rid: [by_id[p] for p in ids if p in by_id]
                 for rid, ids in item_peers(every, obj.settings.repository_prefix).items()}
        with interrupt_guard(syncer.client.abort, display), display:
            results = syncer.sync_items(items, run=syncer.begin("cli"), audit=audit, dry_run=dry_run,
                                        check_only=check_only, peers=peers)
        if not dry_run:  # one write per run: "last verified" for the rows it finished
            st.put_pass(PassRecord(new_pass_id(started), started, kind="cli", audit=audit, rows_enqueued=len(items),
                                   rows=tuple(r.row_id for r in results if r.ok and not r.skipped),
                                   finished_at=now_timestamp()))
    finally:
        _redactor.add(syncer.client.secrets())
        syncer.copier.close()
        syncer.client.http.close()
    out = []
    for r in results:
        if r.invalid:
            out.append({"id": r.row_id, "tag": None, "state": "invalid", "error": r.invalid})
        elif r.error and not r.tags:
            out.append({"id": r.row_id, "tag": None, "state": "failed", "error": r.error})
        elif r.skipped == "disabled":
            out.append({"id": r.row_id, "tag": None, "state": "disabled", "action": "skipped",
                        "reason": "the row is disabled; enable it with `ecr-mirror add --replace` or set enabled to true"})
        elif r.matched_nothing:
            out.append({"id": r.row_id, "tag": None, "state": "no_tags", "error": r.note})
        for tr in r.tags:
            action = ("would copy" if dry_run else "copied") if (tr.copied or (dry_run and tr.state not in ("in_sync", "failed"))) else ""
            if tr.skipped:
                action = "skipped"
            out.append({"id": tr.row_id, "tag": tr.tag, "state": tr.state, "before": tr.state_before, "action": action,
                        "reason": tr.skipped or tr.reason, "upstream_digest": tr.upstream_digest,
                        "target_digest": tr.target_digest, "bytes_copied": tr.bytes_copied, "settled": tr.settled,
                        "error": tr.error, "referrers": tr.referrers.counts() if tr.referrers is not None else None,
                        "arch_tags": tr.arch_tags, "warnings": list(tr.warnings or ()),
                        "pinned_digest": tr.pinned_digest, "upstream_tag_digest": tr.upstream_tag_digest,
                        "refill_at": _iso(tr.refill_at)})
    if json_out:
        click.echo(_redactor(json.dumps(out, indent=2)))
    else:
        for o in out:
            line = f"{o['id']}:{o['tag'] or '-'}  {o['state']}"
            if o.get("action"):
                line += f"  ({o['action']}: {o.get('reason')})"
            if o.get("referrers") and any(o["referrers"].get(k) for k in ("copied", "present", "not_applicable", "error")):
                line += f"  [{summary_of(o['referrers'])}]"
            elif o.get("before") and o["before"] != o["state"]:
                line += f"  (was {o['before']})"
            if o["state"] == "deferred":
                line += f"  (waits for upstream pulls: {o.get('reason')})"
            if o.get("error"):
                line += f"  error: {o['error']}"
            if o.get("arch_tags"):
                line += f"  (arch tags written: {', '.join(o['arch_tags'])})"
            echo(line)
            for warning in o.get("warnings") or ():
                echo(f"  warning: {warning}")
    code = sync_exit_status(results)
    if code != EXIT_OK:
        sys.exit(code)


@main.command()
@click.option("--json", "json_out", is_flag=True, help="A JSON list of {id, tag, state, upstream_digest, target_digest, ...}.")
@click.option("--id", "row_ids", multiple=True, metavar="ID", help="Only this row (repeatable).")
@table_option
@state_table_option
@click.pass_obj
@handle_errors
def status(obj: Context, json_out: bool, row_ids: tuple[str, ...], table_name: str | None, state_table_name: str | None) -> None:
    """Show what the service last recorded for every row and tag.

    "last verified": when the tag was last known to hold what is recorded (its last change or success, or
    the end of the newest pass that finished its row). On a terminal digests are shortened to 12 hex
    digits, times to the second, and long errors wrap; piped (or --json) every value is complete.
    """
    from .status import RowState, has_legacy_status, legacy_row_status, legacy_tag_statuses, status_records

    t = _table(obj, table_name)
    st = _state(obj, t, state_table_name)
    if row_ids:
        items = {rid: item for rid in dict.fromkeys(row_ids) if (item := t.get_row(rid)) is not None}
        if missing := [rid for rid in dict.fromkeys(row_ids) if rid not in items]:
            fail(f"no such row: {', '.join(missing)}")
        states = {rid: st.read_state(rid) for rid in items}
    else:
        items = {str(i.get("id")): i for i in t.scan_rows(consistent=True)}
        states = st.scan_states()
    for rid, item in items.items():  # rows not yet migrated from the legacy layout: shown as they are
        if has_legacy_status(item) and states.get(rid, RowState()).is_new:
            states[rid] = RowState(legacy_tag_statuses(item), legacy_row_status(item))
    shown_ids = sorted(rid for rid in states if rid in items)
    verified = st.verified_at(shown_ids) if shown_ids else {}
    records = [r for rid in shown_ids for r in status_records(rid, states[rid], verified.get(rid))]
    if json_out:
        click.echo(json.dumps(records, indent=2, default=str))
        return
    print_status(records)


def sync_exit_status(results: list[Any]) -> int:
    """The exit status of ``sync`` for its :class:`~ecr_mirror.sync.RowResult` list: :data:`EXIT_ERROR`
    when a row is invalid or failed, or a tag failed, is in conflict with another row's or pinned to a
    digest upstream does not have; else :data:`EXIT_NOT_IN_SYNC` when a tag is not in sync (found behind,
    missing, diverged or broken and not copied: ``--check``, ``--dry-run``, an immutable repository; left
    to another sync that is copying it, ``skipped``; ``deferred``) or a row's selection matched no upstream
    tag (``no_tags``); else :data:`EXIT_OK`."""
    from .drift import CONFLICT, IN_SYNC, INVALID

    if any(not r.ok for r in results) or any(t.state in (CONFLICT, INVALID) for r in results for t in r.tags):
        return EXIT_ERROR
    if any(t.state != IN_SYNC for r in results for t in r.tags) or any(r.matched_nothing for r in results):
        return EXIT_NOT_IN_SYNC
    return EXIT_OK


_STATE_COLOURS = {"in_sync": "green", "behind": "yellow", "missing": "yellow", "diverged": "red", "broken": "red",
                  "deferred": "cyan", "failed": "red", "invalid": "magenta", "no_tags": "yellow",
                  "conflict": "red"}


def _iso(epoch: float | None) -> str | None:
    """Unix seconds as a status timestamp (None for None)."""
    if epoch is None:
        return None
    from datetime import UTC, datetime

    from .status import format_timestamp

    return format_timestamp(datetime.fromtimestamp(epoch, UTC))


def print_status(records: list[dict[str, Any]]) -> None:
    """The ``status`` table: complete values when piped; on a terminal, short digests (12 hex digits, as
    ``docker images`` shows IDs), times to the second and wrapped errors, so a row fits 80 columns."""
    from .console import is_terminal, print_table

    short = is_terminal(sys.stdout)

    def digest(value: Any) -> str:
        text = str(value or "")
        return text[7:19] + "…" if short and text.startswith("sha256:") and len(text) > 19 else text

    def when(value: Any) -> str:
        text = str(value or "")
        return text[:19].replace("T", " ") + "Z" if short and len(text) > 20 and text.endswith("Z") else text

    headers = ["id", "tag", "state", "upstream", "target", "last verified", "error"]
    def problem(r: dict[str, Any]) -> str:  # the error, else what is worth knowing (a moved pin, warnings)
        if r.get("state") == "deferred":  # why it waits, and until when (issue 15)
            return f"deferred: {r.get('reason') or 'upstream pulls are short'}" + (
                f"; refill expected at {r['refill_at']}" if r.get("refill_at") else "")
        notes = [r.get("error"), r.get("note"), *(f"warning: {w}" for w in r.get("warnings") or ())]
        return "; ".join(n for n in notes if n)

    body = [[r["id"], r["tag"] or "-", r["state"] or "", digest(r.get("upstream_digest")), digest(r.get("target_digest")),
             when(r.get("last_verified")), problem(r)] for r in records]
    print_table(headers, body, styles=lambda col, text: _STATE_COLOURS.get(text) if col == 2 else None)


def _add_global_options(group: click.Group) -> None:
    """Give every command (and sub-group) under ``group`` the global options, so they work after the command too."""
    for command in group.commands.values():
        command.params.extend(_global_options())
        if isinstance(command, click.Group):
            _add_global_options(command)


_add_global_options(main)


def run(argv: list[str] | None = None) -> None:
    """Console entry point: usage errors are one line too (``ecr-mirror: error: …``), exit 2."""
    try:
        code = main.main(args=argv, prog_name="ecr-mirror", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(0)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        click.echo(f"ecr-mirror: error: {safe(exc.format_message())}{hint}", err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:  # e.g. a --ca-file path click refuses
        click.echo(f"ecr-mirror: error: {safe(exc.format_message())}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        exit_interrupted()
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    run()
