"""The ``callflow`` command line: the domain's commands.

``webhooks.cli`` adds ``serve`` and ``simulate`` (which need the web app) and is the console
script, so nothing here imports Flask. Each group of commands lives in its own module.
"""

from __future__ import annotations

import click

from callflow.cli.audit import audit
from callflow.cli.doctor import doctor
from callflow.cli.exceptions import exception
from callflow.cli.flows import graph, schema, validate
from callflow.cli.staff import manager
from callflow.cli.twilio import twilio
from callflow.cli.worker import worker


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="callflow")
def cli() -> None:
    """Confidential helpline call flows on Twilio."""


for command in (validate, schema, graph, manager, audit, exception, worker, twilio, doctor):
    cli.add_command(command)
