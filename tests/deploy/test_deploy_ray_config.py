"""``placement = "ray"`` in a deployment file: checked before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmagentos.deploy import load_deploy_config
from llmagentos.exceptions import ConfigError

ROOT = Path(__file__).resolve().parents[2]
TAXI = ROOT / "examples" / "configs" / "taxi.toml"


def deployment(tmp_path: Path, head: str, service: str = "") -> Path:
    path = tmp_path / "deploy.toml"
    path.write_text(
        f'name = "d"\n{head}\n[[services]]\nname = "planning"\nconfig = "{TAXI}"\n'
        f'modules = "planning"\n{service}'
    )
    return path


def test_the_shipped_example_loads() -> None:
    config = load_deploy_config(ROOT / "examples" / "deploy" / "maze_on_ray.toml")
    assert config.placement == "ray" and config.ray is not None
    assert config.ray.address is None and config.ray.serve_port == 8000
    planning = next(s for s in config.services if s.name == "planning")
    assert planning.replicas == 2 and planning.cpus == 0.25
    assert planning.max_ongoing_requests == 16
    assert planning.state_store is not None and Path(planning.state_store).is_absolute()


def test_serve_settings_are_read(tmp_path: Path) -> None:
    config = load_deploy_config(deployment(
        tmp_path, 'placement = "ray"\n[ray]\naddress = "127.0.0.1:6379"\nserve_port = 0',
        "cpus = 0.5\nautoscaling = { min_replicas = 1, max_replicas = 3 }\n"
        'state_store = "redis://127.0.0.1:6379/0"\n',
    ))  # fmt: skip
    spec = config.services[0]
    assert config.ray is not None and config.ray.address == "127.0.0.1:6379"
    assert spec.autoscaling == {"min_replicas": 1, "max_replicas": 3}
    assert spec.state_store == "redis://127.0.0.1:6379/0" and spec.cpus == 0.5
    assert load_deploy_config(deployment(tmp_path, "")).placement == "processes"


@pytest.mark.parametrize(
    ("head", "service", "field"),
    [
        ('placement = "cloud"', "", "placement"),
        ("", "cpus = 1\n", "services[0].cpus"),
        ("[ray]\nserve_port = 1", "", "ray"),
        ('placement = "ray"\n[ray]\naddress = "nowhere"', "", "ray.address"),
        ('placement = "ray"\n[ray]\nport = 1', "", "ray.port"),
        ('placement = "ray"', "replicas = 2\n", "services[0].state_store"),
        ('placement = "ray"', "cpus = -1\n", "services[0].cpus"),
        ('placement = "ray"', "max_ongoing_requests = 0\n", "services[0].max_ongoing_requests"),
        ('placement = "ray"', 'autoscaling = "lots"\n', "services[0].autoscaling"),
        ('placement = "ray"', 'memory = "m.db"\n', "services[0].memory"),
    ],
)
def test_bad_ray_settings_name_their_field(
    tmp_path: Path, head: str, service: str, field: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_deploy_config(deployment(tmp_path, head, service))
    assert caught.value.field == field
