"""`--ray`: Ray actors behind one run, on a small local Ray instance (2 CPUs, no dashboard), shut down at the end."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from scale_helpers import convert_on, differences, options, page_indices

from deepocr_cli.engine import load_engine
from deepocr_cli.planning.modes import Mode
from deepocr_cli.run.convert import convert
from deepocr_cli.scale.engine import open_engine

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_workers_write_what_one_process_writes(ray_instance, scripted_checkpoint: Path, workload: Path,
                                                   reference: Path, tmp_path: Path) -> None:
    report = convert([workload], options(scripted_checkpoint, tmp_path / "out", ray="local", workers=2))
    assert report.exit_code == 0
    assert differences(reference, tmp_path / "out") == []
    assert [w["worker"] for w in report.workers] == ["ray#0", "ray#1"]
    assert all(w["requests"] > 0 and w["tokens_per_s"] > 0 for w in report.workers)
    assert ray_instance.is_initialized()  # a Ray instance the caller started is left running


def test_a_killed_actor_has_its_pages_redone_on_another(ray_instance, scripted_checkpoint: Path, workload: Path,
                                                        reference: Path, tmp_path: Path) -> None:
    opts = options(scripted_checkpoint, tmp_path / "out", ray="local", workers=2)
    engine = open_engine(opts)
    killed: list[int] = []

    def kill_once(worker: int, tasks: list) -> None:
        if not killed:
            killed.append(worker)
            engine.backend.kill(worker)  # ray.kill: the actor dies with the batch in flight

    engine.dispatcher.on_dispatch = kill_once
    report = convert_on(engine, [workload], opts)
    assert killed
    assert report.exit_code == 0
    assert sum(w["deaths"] for w in report.workers) == 1
    assert differences(reference, tmp_path / "out") == []
    assert page_indices(tmp_path / "out") == page_indices(reference)


def test_inputs_are_shipped_not_read_by_workers(ray_instance, scripted_checkpoint: Path, tmp_path: Path) -> None:
    """A worker never opens the source: the page image travels in the request, so the file can be gone."""
    path = tmp_path / "only-on-the-driver.png"
    img = Image.new("RGB", (500, 300), "white")
    ImageDraw.Draw(img).text((20, 20), "shipped", fill="black")
    img.save(path)
    engine = open_engine(options(scripted_checkpoint, tmp_path / "out", ray="local", workers=1))
    try:
        with Image.open(path) as opened:
            prepared = engine.prepare(opened, Mode.SMALL)
        path.unlink()
        assert str(path).encode() not in pickle.dumps(prepared.pixels)
        [got] = engine.generate([prepared], max_new_tokens=24)
    finally:
        engine.close()
    local = load_engine(str(scripted_checkpoint), device="cpu")
    [want] = local.generate([local.prepare(img, Mode.SMALL)], max_new_tokens=24)
    assert got.token_ids == want.token_ids and got.text == want.text


def test_scheduler_interface_streams_results_as_workers_finish(ray_instance, scripted_checkpoint: Path,
                                                               tmp_path: Path) -> None:
    """The add/step interface a continuous-batching runner drives: every request comes back once, tagged."""
    engine = open_engine(options(scripted_checkpoint, tmp_path / "out", ray="local", workers=2))
    images = [Image.new("RGB", (300 + 40 * i, 200), "white") for i in range(5)]
    try:
        sched = engine.scheduler(slots=4)
        for i, img in enumerate(images):
            sched.add(engine.engine_request(engine.prepare(img, Mode.TINY, tag=f"page-{i}"), 24))
        got = {}
        steps = 0
        while sched.has_work and steps < 600:
            for done in sched.step():
                res = engine.result(done)
                assert res.tag not in got
                got[res.tag] = res
            steps += 1
    finally:
        engine.close()
    local = load_engine(str(scripted_checkpoint), device="cpu")
    want = local.generate([local.prepare(img, Mode.TINY) for img in images], max_new_tokens=24)
    assert sorted(got) == [f"page-{i}" for i in range(5)]
    assert [got[f"page-{i}"].token_ids for i in range(5)] == [w.token_ids for w in want]
    assert sched.metrics.report()["pages"] == 5
