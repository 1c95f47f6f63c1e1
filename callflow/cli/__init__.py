"""The ``callflow`` command line: the domain's commands.

``webhooks.cli`` adds ``serve``, ``simulate`` and ``worker`` (which need the web app, or its
routes) and is the console script, so nothing here imports Flask. Each group of commands lives
in its own module.
"""

from __future__ import annotations

import click

from callflow.cli.audit import audit
from callflow.cli.doctor import doctor
from callflow.cli.flows import graph, schema, validate
from callflow.cli.register import exception
from callflow.cli.report import report
from callflow.cli.shift import shift
from callflow.cli.staff import manager
from callflow.cli.twilio import twilio


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="callflow")
def cli() -> None:
    """Confidential helpline call flows on Twilio."""


for command in (validate, schema, graph, manager, shift, audit, exception, twilio, doctor,
                report):
    cli.add_command(command)
