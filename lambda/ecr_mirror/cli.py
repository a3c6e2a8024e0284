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
from .config import ENV_INSECURE_REGISTRIES, ENV_TABLE, Settings
from .errors import MirrorError
from .runtime import Redactor

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3

_redactor = Redactor()


class Context:
    """What the ``ecr-mirror`` group's options give every command; :attr:`settings` read once, on first use."""

    def __init__(self, debug: bool, insecure: tuple[str, ...], concurrency: int | None) -> None:
        self.debug = debug
        self.insecure = insecure
        self.concurrency = concurrency
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        """``ECR_MIRROR_*`` settings, with ``--concurrency`` applied."""
        if self._settings is None:
            s = Settings.from_env()
            if self.concurrency:
                from dataclasses import replace

                s = replace(s, concurrency=self.concurrency)
            self._settings = s
        return self._settings


def fail(message: str, code: int = EXIT_ERROR) -> None:
    """Print ``ecr-mirror: error: <message>`` (secrets redacted) on stderr and exit with ``code``."""
    click.echo(f"ecr-mirror: error: {_redactor(message)}", err=True)
    sys.exit(code)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A command's errors as one line and an exit status (1 for ecr-mirror errors, 3 for bugs); ``--debug`` re-raises."""

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
    from .runtime import RedactingFilter, quiet_aws_loggers

    logging.basicConfig(level=logging.DEBUG if debug else logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.WARNING)
    quiet_aws_loggers()  # botocore at DEBUG prints tokens and secret strings
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter(_redactor))
    ctx.obj = Context(debug, insecure, concurrency)


def _client(obj: Context):
    from .runtime import build_registry_client

    client = build_registry_client(obj.settings, insecure=obj.insecure)
    _redactor.watch(client.secrets)
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
        click.echo(_redactor(f"ecr-mirror: warning: cannot check repository {destination.repository} ({exc}); pushing anyway"), err=True)


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
    for warning in report.warnings:  # done short of the ideal, the copy stands (exit 0): one line each
        click.echo(_redactor(f"ecr-mirror: warning: {warning}"), err=True)
    if json_out:
        click.echo(_redactor(json.dumps(report.as_dict(), indent=2, sort_keys=True)))
    else:
        if tty:
            what = "unchanged" if report.unchanged else (
                f"{report.blobs_copied} blobs copied, {report.blobs_skipped} present, {report.blobs_mounted} mounted, "
                f"{report.bytes_copied} bytes")
            click.echo(f"{report.destination}: {', '.join(report.platforms) or report.media_type} ({what})", err=True)
        if report.referrers is not None and (report.referrers.items or report.referrers.not_checked):
            # referrers: what was copied, what could not apply, what an unchanged copy left to the next
            click.echo(_redactor(f"{report.destination}: {report.referrers.summary()}"), err=True)
        click.echo(report.digest)


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
              help="Copy only this platform (repeatable). Default: every platform, digest-identical.")
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
    wanted = parse_platforms(platforms) if platforms else None
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


# ---------------------------------------------------------------- the mirror table

table_option = click.option("--table", "table_name", envvar=ENV_TABLE, metavar="NAME",
                            help=f"Mirror table name (default: ${ENV_TABLE}).")


def _table(obj: Context, table_name: str | None):
    from .runtime import boto3_client
    from .store import MirrorTable

    name = table_name or obj.settings.table
    if not name:
        fail(f"no table given: pass --table NAME or set {ENV_TABLE}", EXIT_USAGE)
    return MirrorTable(boto3_client("dynamodb"), name, prefix=obj.settings.repository_prefix)


@main.group()
def table() -> None:
    """Manage the mirror table itself (local and development use; deployed stacks create it)."""


@table.command("create")
@table_option
@click.pass_obj
@handle_errors
def table_create(obj: Context, table_name: str | None) -> None:
    """Create the mirror table (on-demand, with a stream). Does nothing if it exists."""
    t = _table(obj, table_name)
    created = t.create()
    click.echo(f"table {t.name} {'created' if created else 'already exists'}", err=True)


def _split(values: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for v in values:
        out.extend(p.strip() for p in v.split(",") if p.strip())
    return out


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
        click.echo(f"ecr-mirror: warning: {warning}", err=True)
    click.echo(f"row {row.id}: {row.source or ' + '.join(map(str, row.assemble or ()))} -> {row.target_repository}", err=True)


@main.command()
@click.argument("row_ids", nargs=-1, required=True)
@table_option
@click.pass_obj
@handle_errors
def remove(obj: Context, row_ids: tuple[str, ...], table_name: str | None) -> None:
    """Remove rows from the mirror table. Images already mirrored stay in ECR."""
    t = _table(obj, table_name)
    missing = [r for r in row_ids if not t.delete_row(r)]
    if missing:
        fail(f"no such row: {', '.join(missing)}")


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
@click.pass_obj
@handle_errors
def apply(obj: Context, path: str, dry_run: bool, prune: bool, table_name: str | None) -> None:
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
            click.echo(f"ecr-mirror: error: {problem}", err=True)
        sys.exit(EXIT_ERROR)
    for line in plan.lines():
        click.echo(line)
    for warning in plan.warnings:
        click.echo(f"ecr-mirror: warning: {warning}", err=True)
    if dry_run:
        click.echo(f"dry run: {plan.summary(applied=False)}; nothing written")
        return
    writes = plan.writes
    for done, change in enumerate(writes):
        try:
            if change.action == "delete":
                t.delete_row(change.row_id)
            else:
                t.put_row(change.item or {}, overwrite=change.action == "change")
        except MirrorError as exc:
            fail(f"{exc} ({done} of {len(writes)} changes written; apply again to finish)")
    click.echo(f"applied: {plan.summary(applied=True)}")


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
        click.echo(f"ecr-mirror: warning: {warning}", err=True)
    if output == "-":
        click.echo(text, nl=False)
        return
    target = Path(output)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {output}: {exc.strerror or exc}") from exc
    click.echo(f"wrote {len(document['sources'])} rows to {output}", err=True)


@main.command("list")
@click.option("--json", "json_out", is_flag=True, help="Print the rows as JSON.")
@table_option
@click.pass_obj
@handle_errors
def list_rows(obj: Context, json_out: bool, table_name: str | None) -> None:
    """List the rows of the mirror table (what is mirrored, and whether each row is valid)."""
    from .rows import user_attributes

    t = _table(obj, table_name)
    rows = []
    for item, row, error in t.scan_parsed():
        rows.append({
            "id": item.get("id"),
            "source": str(row.source) if row and row.source else item.get("source"),
            "assemble": [str(r) for r in row.assemble] if row and row.assemble else item.get("assemble"),
            "tags": list(row.tags) if row else item.get("tags"),
            "tag_pattern": row.tag_pattern if row else item.get("tag_pattern"),
            "keep_latest": row.keep_latest if row else None,
            "platforms": [str(p) for p in row.platforms] if row and row.platforms else None,
            "target_repository": row.target_repository if row else item.get("target_repository"),
            "enabled": row.enabled if row else item.get("enabled", True),
            "error": str(error) if error else None,
            "attributes": sorted(user_attributes(item)),
        })
    if json_out:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text  # cells from data are text, never markup

    tbl = Table("id", "source", "tags", "platforms", "target", "enabled", "problem", box=None)
    for r in rows:
        tags = ", ".join([*map(str, r["tags"] or []), *([f"/{r['tag_pattern']}/"] if r["tag_pattern"] else [])])
        if r["keep_latest"]:
            tags += f" (newest {r['keep_latest']})"
        cells = (r["id"], r["source"] or " + ".join(map(str, r["assemble"] or [])), tags, ", ".join(r["platforms"] or ["all"]),
                 r["target_repository"], r["enabled"], r["error"] or "")
        tbl.add_row(*(Text(str(c)) for c in cells))
    Console(width=max(120, Console().width)).print(tbl)


@main.command()
@click.option("--id", "row_ids", multiple=True, metavar="ID", help="Sync only this row (repeatable). Default: every enabled row.")
@click.option("--dry-run", is_flag=True, help="Print what would be copied and why; copy nothing, write nothing.")
@click.option("--check", "check_only", is_flag=True, help="Detect and record each tag's state; copy nothing.")
@click.option("--json", "json_out", is_flag=True, help="Print the results as JSON.")
@table_option
@click.pass_obj
@handle_errors
def sync(obj: Context, row_ids: tuple[str, ...], dry_run: bool, check_only: bool, json_out: bool, table_name: str | None) -> None:
    """Sync rows now, in this process (the same code the worker Lambda runs).

    Exit status: 0 when every row synced, 1 when a row failed or is invalid.
    """
    from .referrers import summary_of
    from .rows import is_enabled
    from .runtime import build_syncer

    t = _table(obj, table_name)
    syncer = build_syncer(obj.settings, t, insecure=obj.insecure, docker_config=True)
    _redactor.watch(syncer.client.secrets)
    try:
        if row_ids:
            items = []
            for rid in row_ids:
                item = t.get_row(rid)
                if item is None:
                    fail(f"no such row: {rid}")
                items.append(item)
        else:
            items = [i for i in t.scan_rows() if is_enabled(i)]
        results = syncer.sync_items(items, dry_run=dry_run, check_only=check_only)
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
        for tr in r.tags:
            action = ("would copy" if dry_run else "copied") if (tr.copied or (dry_run and tr.state not in ("in_sync", "failed"))) else ""
            out.append({"id": tr.row_id, "tag": tr.tag, "state": tr.state, "before": tr.state_before, "action": action,
                        "reason": tr.reason, "upstream_digest": tr.upstream_digest, "target_digest": tr.target_digest,
                        "bytes_copied": tr.bytes_copied, "error": tr.error,
                        "referrers": tr.referrers.counts() if tr.referrers is not None else None})
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
            if o.get("error"):
                line += f"  error: {o['error']}"
            click.echo(_redactor(line))
    if any(not r.ok for r in results):
        sys.exit(EXIT_ERROR)


@main.command()
@click.option("--json", "json_out", is_flag=True, help="A JSON list of {id, tag, state, upstream_digest, target_digest, ...}.")
@click.option("--id", "row_ids", multiple=True, metavar="ID", help="Only this row (repeatable).")
@table_option
@click.pass_obj
@handle_errors
def status(obj: Context, json_out: bool, row_ids: tuple[str, ...], table_name: str | None) -> None:
    """Show what the service last recorded for every row and tag."""
    t = _table(obj, table_name)
    records = t.read_status(list(row_ids) or None)
    if json_out:
        click.echo(json.dumps(records, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text  # cells from data are text, never markup

    colours = {"in_sync": "green", "behind": "yellow", "missing": "yellow", "diverged": "red", "broken": "red",
               "failed": "red", "invalid": "magenta"}
    tbl = Table("id", "tag", "state", "upstream", "target", "last success", "error", box=None)
    for r in records:
        state = str(r["state"] or "")
        tbl.add_row(Text(str(r["id"])), Text(str(r["tag"] or "-")), Text(state, style=colours.get(state, "white")),
                    *(Text(str(r.get(k) or "")[:n]) for k, n in (("upstream_digest", 19), ("target_digest", 19),
                                                                    ("last_success", 19), ("error", 80))))
    Console(width=max(140, Console().width)).print(tbl)


def run(argv: list[str] | None = None) -> None:
    """Console entry point: usage errors are one line too (``ecr-mirror: error: …``), exit 2."""
    try:
        code = main.main(args=argv, prog_name="ecr-mirror", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(0)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        click.echo(f"ecr-mirror: error: {exc.format_message()}{hint}", err=True)
        sys.exit(EXIT_USAGE)
    except click.Abort:
        click.echo("ecr-mirror: interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    run()
