"""The terminal face of queuectl: asyncclick commands that parse, call ``Queue``, render.

Nothing here decides a rule of the queue; ``queuectl.queue.Queue`` does, for this
package and for any other face (``queuectl.web``) alike.
"""

from queuectl.cli.main import cli, main

__all__ = ["cli", "main"]
