import os
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "offline")

# A test that asks for Ray is an e2e test (Ray, then vLLM engines and DeepSpeed actors): marked here by the
# fixture it uses, so that `pytest -m "not e2e"` stays a quick loop without anyone remembering the mark.
RAY_FIXTURES = {"ray_cluster", "ray_job"}


def pytest_collection_modifyitems(items):
    for item in items:
        if RAY_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def ray_only_in_e2e(request):
    """A test outside e2e that starts Ray by itself (not through the fixtures) fails: it lacks the mark."""
    def ray_running():
        return "ray" in sys.modules and sys.modules["ray"].is_initialized()

    before = ray_running()
    yield
    if not before and ray_running() and request.node.get_closest_marker("e2e") is None:
        pytest.fail(f"{request.node.nodeid} started Ray: mark it @pytest.mark.e2e", pytrace=False)


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray runtime for every test that needs actors (starting one costs seconds)."""
    import ray

    from actors.cluster import WORKER_ENV

    # PYTHONPATH: actors can import test helpers such as tests.user_plugins
    ray.init(num_cpus=4, include_dashboard=False,
             runtime_env={"env_vars": {**WORKER_ENV, "PYTHONPATH": ROOT}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_model():
    from system.models import tiny_model_path

    return tiny_model_path()


@pytest.fixture(scope="session")
def smollm2():
    from system.models import embedded_model_path

    return embedded_model_path()


@pytest.fixture
def ray_job(ray_cluster):
    """The session's Ray runtime, emptied after the test even if it failed half-way: removing a
    placement group kills the actors in it and frees its resources for the next test. Actors die
    asynchronously, so the teardown waits until no named actor is left: a test that failed with its
    engine-0 alive would otherwise fail the next one ("The name engine-0 is already taken")."""
    from ray.util import list_named_actors, placement_group_table
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    yield ray_cluster
    for pg_id, info in placement_group_table().items():
        if info["state"] != "REMOVED":
            remove_placement_group(PlacementGroup(ray_cluster.PlacementGroupID(bytes.fromhex(pg_id))))
    for named in list_named_actors(all_namespaces=True):
        try:
            ray_cluster.kill(ray_cluster.get_actor(named["name"], namespace=named["namespace"]))
        except ValueError:  # died on its own meanwhile
            pass
    deadline = time.time() + 60
    while (left := [a["name"] for a in list_named_actors(all_namespaces=True)]) and time.time() < deadline:
        time.sleep(0.2)
    assert not left, f"ray_job teardown: actors {left} still alive 60 s after they were killed"


@pytest.fixture(scope="module")
def distributed():
    """A one-rank gloo group in this process, as a policy actor has; gone after the module."""
    import socket

    import deepspeed
    import deepspeed.utils.groups
    import torch

    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1",
                      LOCAL_RANK="0")
    deepspeed.init_distributed(dist_backend="gloo")
    yield
    torch.distributed.destroy_process_group()
    # DeepSpeed keeps its clone of the world group across groups: the next module's engines would get
    # the destroyed one ("Group ... is not registered").
    deepspeed.utils.groups._WORLD_GROUP = None
