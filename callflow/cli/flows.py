"""Commands on the flow files: validate, schema, graph."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from callflow.language.graph import FORMATS, draw
from callflow.language.loader import describe_skipped, load_flowset, skipped_files
from callflow.language.schema import render
from callflow.platform.config import Settings
from callflow.platform.errors import FlowSetInvalid


def flows_dir(path: str | None) -> str:
    return path or Settings.from_env().flows_dir


def load_or_exit(path: str | None, outcome: str):
    """The flows in ``path``, or each error and how many, with ``outcome`` (what this means
    for the command), and exit 1. Editors' files the folder holds are named in one line."""
    skipped = skipped_files(Path(flows_dir(path)))
    if skipped:
        click.echo(describe_skipped(skipped), err=True)
    try:
        return load_flowset(flows_dir(path))
    except FlowSetInvalid as exc:
        for error in exc.errors:
            click.echo(f"error: {error}", err=True)
        click.echo(f"{len(exc.errors)} error(s){outcome}", err=True)
        sys.exit(1)


@click.command()
@click.argument("path", required=False)
def validate(path: str | None) -> None:
    """Prove the flows in PATH (default: CALLFLOW_FLOWS or flows/) keep the policy."""
    flowset = load_or_exit(path, "; fix them and run `callflow validate` again")
    for warning in flowset.warnings:
        click.echo(f"warning: {warning}", err=True)
    for flow in flowset.flows.values():
        click.echo(f"ok: {flow.path}: {flow.helpline} ({', '.join(flow.numbers)}), "
                   f"{len(flow.steps)} steps; every path to a person passes the notice; "
                   "nothing records, transcribes or identifies the caller")
    click.echo(f"{len(flowset.flows)} flow(s), {len(flowset.teams)} team(s) valid")


@click.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write to this file.")
def schema(output: str | None) -> None:
    """Print the JSON Schema of flow files (shipped as flows/schema.json)."""
    text = render()
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


@click.command()
@click.argument("flow")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="mermaid",
              show_default=True)
@click.option("--flows", "path", help="The flows folder (default: CALLFLOW_FLOWS or flows/).")
def graph(flow: str, fmt: str, path: str | None) -> None:
    """Draw FLOW (its id, e.g. respect-phoneline) as a diagram."""
    flowset = load_or_exit(path, "; no diagram can be drawn until they are fixed")
    if flow not in flowset.flows:
        raise click.ClickException(f"no flow '{flow}'; the flows are: "
                                   f"{', '.join(sorted(flowset.flows))}")
    click.echo(draw(flowset.flows[flow], fmt), nl=False)
