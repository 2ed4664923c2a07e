"""``queuectl config set | get | list``: settings stored in the database."""

from __future__ import annotations

import asyncclick as click

from queuectl.cli import completion
from queuectl.cli.app import App, echo_json, output, pass_app


@click.group()
async def config() -> None:
    """Read and change settings stored in the database.

    \b
    Examples:
      queuectl config list
      queuectl config set max-retries 1
    """


# A negative VALUE ("-1") is a value to validate, not an unknown option.
@config.command(
    "set",
    short_help="Set KEY to VALUE (stored in the database).",
    context_settings={"ignore_unknown_options": True},
)
@click.argument("key", shell_complete=completion.config_keys)
@click.argument("value")
@pass_app
async def config_set(app: App, key: str, value: str) -> None:
    """Set KEY to VALUE (`max-retries`, `max_retries` and `MaxRetries` are one key).

    \b
    Examples:
      queuectl config set max-retries 1
      queuectl config set backoff-base 3
    """
    name, parsed = await (await app.queue()).set_setting(key, value)
    click.echo(f"{name} = {parsed}")


@config.command("get")
@click.argument("key", shell_complete=completion.config_keys)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
async def config_get(app: App, key: str, as_json: bool) -> None:
    """Print the value of KEY.

    \b
    Example:
      queuectl config get max-retries
    """
    from queuectl.config import key_name, normalize_key

    value = await (await app.queue(create=False)).get_setting(key)
    if as_json:
        echo_json({key_name(normalize_key(key)): value})
    else:
        click.echo(str(value))


@config.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
async def config_list(app: App, as_json: bool) -> None:
    """Print every setting, with its default.

    \b
    Examples:
      queuectl config list
      queuectl config list --json
    """
    settings = await (await app.queue(create=False)).settings()
    if as_json:
        echo_json(settings)
        return
    from queuectl.cli.render import config_table
    from queuectl.config import QueueConfig

    out = output()
    out.show(config_table(out, settings, QueueConfig().to_dict()))
