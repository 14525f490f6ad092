"""A trial alone on a node takes the idle CPUs for its next epoch and gives them back when another trial
reserves them (heartlab.tune.trial.ThreadShare); Ray's resource calls are replaced by a fake node here."""

from __future__ import annotations

import pytest
import ray
import torch

from heartlab.tune.trial import ThreadShare


@pytest.fixture
def node(monkeypatch):
    """A fake Ray node: ``node['nodes']`` nodes alive, ``node['cpus']`` CPUs, ``node['free']`` unreserved."""
    state = {"nodes": 1, "cpus": 4, "free": 0.0}
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True}] * state["nodes"])
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": float(state["cpus"])})
    monkeypatch.setattr(ray, "available_resources", lambda: {"CPU": state["free"]} if state["free"] else {})
    monkeypatch.delenv("HEARTLAB_SHARE_IDLE_CPUS", raising=False)
    threads = torch.get_num_threads()
    yield state
    torch.set_num_threads(threads)


def test_a_trial_alone_borrows_the_idle_cpus_and_gives_them_back(node):
    share = ThreadShare(own=1)
    torch.set_num_threads(share.now)
    share.update()  # the other slots are busy
    assert share.now == 1 and torch.get_num_threads() == 1
    node["free"] = 3.0  # the other trials ended: three CPUs unreserved
    share.update()
    assert share.now == 4 and torch.get_num_threads() == 4
    node["free"] = 1.5  # a new 2-CPU trial started: give back what it reserved (fractions are not threads)
    share.update()
    assert share.now == 2 and torch.get_num_threads() == 2
    node["free"] = 0.0
    share.update()
    assert share.now == 1 and torch.get_num_threads() == 1


def test_never_more_threads_than_the_node_has(node):
    node["free"] = 10.0
    share = ThreadShare(own=2)
    share.update()
    assert share.now == 4


@pytest.mark.parametrize("nodes, env", [(2, None), (1, "0")])
def test_no_borrowing_on_a_cluster_or_when_switched_off(node, monkeypatch, nodes, env):
    node["nodes"], node["free"] = nodes, 3.0
    if env is not None:
        monkeypatch.setenv("HEARTLAB_SHARE_IDLE_CPUS", env)
    share = ThreadShare(own=1)
    share.update()
    assert share.now == 1
