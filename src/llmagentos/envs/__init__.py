"""Environments: the Gymnasium-shaped protocol, ``make_env`` and the env executor."""

from llmagentos.envs.executor import EnvExecutor
from llmagentos.envs.make import env_ids, make_env
from llmagentos.envs.protocol import Env

__all__ = ["Env", "EnvExecutor", "env_ids", "make_env"]
