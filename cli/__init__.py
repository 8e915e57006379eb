"""The ``storesense`` command line.

Every command reports a bad input (config file, recording, broker URL) as one
line naming what is wrong and exits with status 2; no tracebacks.

One module per command group: :mod:`.demo`, :mod:`.config`, :mod:`.edge`,
:mod:`.fusion` (simulate, fusion, replay), :mod:`.hub`, :mod:`.calibrate` and
:mod:`.eval`; :mod:`.common` holds the consoles and the ``--config`` option.
This module puts them together in :data:`app` and runs it from :func:`main`.
"""

from __future__ import annotations

import logging
import sys

import typer

from ..errors import StoresenseError
from . import calibrate, config, demo, edge, eval, fusion, hub
from . import analytics as analytics_cli
from . import deploy as deploy_cli
from . import hq as hq_cli
from . import security as security_cli
from . import store as store_cli
from .common import err_console

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="storesense: edge in-store vision and sensor fusion.")
app.command()(demo.demo)
app.command()(fusion.simulate)
app.command()(fusion.fusion)
app.command()(fusion.replay)
app.command()(hub.hub)
app.command("analytics")(analytics_cli.analytics)
app.command("analytics-eval")(analytics_cli.analytics_eval)
app.command("simulate-day")(analytics_cli.simulate_day_cmd)
app.command()(hq_cli.hq)
app.add_typer(config.config_app, name="config")
app.add_typer(edge.edge_app, name="edge")
app.add_typer(calibrate.calibrate_app, name="calibrate")
app.add_typer(eval.eval_app, name="eval")
app.add_typer(eval.datasets_app, name="datasets")
app.add_typer(store_cli.store_app, name="store")
app.add_typer(deploy_cli.deploy_app, name="deploy")
app.add_typer(security_cli.security_app, name="security")


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at INFO level.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _is_click_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a click usage or parameter error, whichever click raised it.

    typer up to 0.2x raises click's own exceptions; later typer releases vendor
    click (``typer._click``) and raise copies of them that are not subclasses of
    ``click.ClickException``. Both are recognised by their class name along the
    MRO and their ``format_message``/``exit_code`` interface.
    """
    return (any(cls.__name__ == "ClickException" for cls in type(exc).__mro__)
            and callable(getattr(exc, "format_message", None)) and isinstance(getattr(exc, "exit_code", None), int))


def usage_error_line(exc: BaseException) -> str:
    """One line for a command-line mistake: the command, what is wrong, and where help is."""
    ctx = getattr(exc, "ctx", None)
    command = getattr(ctx, "command_path", "") or "storesense"
    message = " ".join(str(exc.format_message()).split())  # type: ignore[attr-defined]
    return f"{command}: {message} (see '{command} --help')"


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs the app, turning known errors into one line.

    A bad input (config, recording, URL) and a command-line mistake (unknown
    command or option, missing or ill-typed value) each print one line on
    stderr and exit with status 2.
    """
    try:
        rc = app(args=argv, prog_name="storesense", standalone_mode=False)
    except StoresenseError as exc:
        err_console.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        if not _is_click_error(exc):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":  # a group called bare: its help is the answer
            if str(exc.format_message()).strip():  # type: ignore[attr-defined]
                exc.show()  # type: ignore[attr-defined]  (click 8.2 prints the help here; typer 0.29 already did)
        else:
            err_console.print(f"[red]error:[/] {usage_error_line(exc)}", highlight=False)
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    if isinstance(rc, int) and rc:
        sys.exit(rc)
