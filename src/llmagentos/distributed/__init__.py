"""Past one machine: agents, episodes and modules on a Ray cluster (``llmagentos[ray]``).

* :mod:`~llmagentos.distributed.cluster`: connecting to Ray (a local instance bound to
  127.0.0.1, or a running cluster by address), with bounded waits and typed errors;
* :mod:`~llmagentos.distributed.pickling`: checks that what is sent to Ray can be sent,
  naming the module and the attribute that cannot;
* :mod:`~llmagentos.distributed.rollouts`: an agent's episodes on Ray workers
  (``agent.run(..., backend="ray")``);
* :mod:`~llmagentos.distributed.merge`: what training on several workers learned, merged
  into one agent (Q-tables and schedule counters);
* :mod:`~llmagentos.distributed.population`: independent runs (an experiment's seeds, a
  population of settings) side by side on the cluster.

Nothing here imports Ray until it is used.
"""

from llmagentos.distributed.cluster import ClusterUnreachable, connect, import_ray
from llmagentos.distributed.pickling import NotSerializable, check_serializable

__all__ = ["ClusterUnreachable", "NotSerializable", "check_serializable", "connect", "import_ray"]
