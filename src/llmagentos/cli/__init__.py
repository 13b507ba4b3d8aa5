"""The ``llmagentos`` command line: ``run``, ``env list``, ``registry list``, ``--version``.

The commands are thin layers over the library (:mod:`llmagentos.experiment`,
:mod:`llmagentos.envs`, :mod:`llmagentos.registry`); see ``docs/cli.md``.
"""

from llmagentos.cli.main import app, main

__all__ = ["app", "main"]
