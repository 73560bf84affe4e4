"""trainers.denormals: CPU runs flush denormal floats on their training thread, record it, and restore it."""

from __future__ import annotations

import platform
import threading

import pytest
import torch

from trainers import denormals
from trainers.denormals import ENV_SWITCH, TAG, flush_active, flush_denormals
from trainers.engine import train
from trainers.reporting import MemoryReporter

pytestmark = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                                reason="FTZ/DAZ are x86 settings (torch.set_flush_denormal is False elsewhere)")

DENORMAL = 1e-39  # below float32's smallest normal, 1.18e-38


@pytest.fixture(autouse=True)
def _ieee_thread(monkeypatch):
    """Every test starts and ends on a thread with IEEE denormals and no switch in the environment."""
    monkeypatch.delenv(ENV_SWITCH, raising=False)
    torch.set_flush_denormal(False)
    yield
    torch.set_flush_denormal(False)


def test_a_cpu_block_flushes_and_the_thread_is_restored_after():
    assert not flush_active()
    assert (torch.full((4,), DENORMAL) * 1.0).ne(0).all()
    with flush_denormals(torch.device("cpu")) as on:
        assert on and flush_active()
        assert (torch.full((4,), DENORMAL) * 1.0).eq(0).all()  # denormal inputs read as 0 (DAZ)
    assert not flush_active()


def test_the_switch_keeps_ieee_denormals(monkeypatch):
    monkeypatch.setenv(ENV_SWITCH, "0")
    with flush_denormals(torch.device("cpu")) as on:
        assert not on and not flush_active()


def test_cuda_runs_leave_the_host_thread_alone():
    assert not denormals.wanted(torch.device("cuda"))
    with flush_denormals(torch.device("cuda")) as on:
        assert not on and not flush_active()


def test_a_thread_that_already_flushes_keeps_flushing(monkeypatch):
    """A caller's own setting is reported as in force and left as it was found."""
    monkeypatch.setenv(ENV_SWITCH, "0")
    torch.set_flush_denormal(True)
    with flush_denormals(torch.device("cpu")) as on:
        assert on
    assert flush_active()


def test_the_setting_is_per_thread():
    """Another thread's arithmetic is not changed by a block on this one (Tune runs each trial in a thread)."""
    seen: list[bool] = []
    ready, done = threading.Event(), threading.Event()

    def other() -> None:
        ready.wait()
        seen.append(flush_active())
        done.set()

    worker = threading.Thread(target=other)
    worker.start()  # created before the block: it does not inherit the setting
    with flush_denormals(torch.device("cpu")):
        ready.set()
        done.wait(10)
    worker.join()
    assert seen == [False]


@pytest.mark.parametrize("switch, expected", [(None, "true"), ("0", "false")])
def test_a_run_trains_flushed_and_records_it(tmp_path, make_config, monkeypatch, switch, expected):
    if switch is not None:
        monkeypatch.setenv(ENV_SWITCH, switch)
    during: list[bool] = []
    rep = MemoryReporter()
    cfg = make_config(train={"iterations": 4, "val_every": 4, "log_every": 2, "checkpoint_every": 4})
    train(cfg, rep, workdir=tmp_path / "run", on_validation=lambda step, flat: during.append(flush_active()))
    assert rep.tags[TAG] == expected
    assert during == [expected == "true"]  # what the training thread really ran with
    assert not flush_active()  # and the caller's thread is as it was
