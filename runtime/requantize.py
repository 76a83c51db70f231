"""/re_isq: recompile the served artifact at another ISQ level in a child process, then hot-swap it.

The child runs the same `mistralrs compile` as CI, niced and single-threaded so serving keeps its
cores, from the source weights the artifact keeps. It writes the new artifact atomically in place of
the old one, so a restart serves the latest successful build and a failed build changes nothing.
Running sequences move to the new graphs with their KV cache recomputed (the engine re-prefills them).
"""
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

from ..artifact_layout import sha256_file
from .artifact import ArtifactError, open_artifact

logger = logging.getLogger("mistralrs.re_isq")

STAGES = ("queued", "compiling", "swapping", "done", "failed")
# With the engine's threads busy on every core, niceness 4 leaves the compile ~30% of one core: serving
# keeps >= 70% of its throughput, and the recompilation still finishes in about a minute.
COMPILE_NICENESS = int(os.environ.get("MISTRALRS_REISQ_NICE", "4"))


class JobConflict(RuntimeError):
    pass


@dataclass(slots=True)
class RequantizeJob:
    ggml_type: str
    id: str = field(default_factory=lambda: f"reisq-{uuid.uuid4().hex[:12]}")
    status: str = "queued"
    progress: str = ""
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None

    def to_dict(self) -> dict:
        return {"id": self.id, "object": "re_isq.job", "ggml_type": self.ggml_type, "status": self.status,
                "progress": self.progress, "error": self.error, "created": int(self.created),
                "seconds": round((self.finished or time.time()) - self.created, 2)}


class Requantizer:
    def __init__(self, engine):
        self.engine = engine
        self.jobs: dict[str, RequantizeJob] = {}
        self._lock = threading.Lock()
        self._active: RequantizeJob | None = None

    def start(self, ggml_type: str) -> RequantizeJob:
        """Queue a recompilation; JobConflict while another one runs. `ggml_type` must already be validated."""
        with self._lock:
            if self._active is not None:
                raise JobConflict(f"re_isq job {self._active.id} is still {self._active.status}")
            job = self._active = RequantizeJob(ggml_type)
            self.jobs[job.id] = job
        threading.Thread(target=self._run, args=(job,), name=f"re-isq-{job.id}", daemon=True).start()
        return job

    @property
    def active(self) -> RequantizeJob | None:
        return self._active

    def _run(self, job: RequantizeJob) -> None:
        try:
            artifact = self.engine.artifact
            self._check_kept_source(artifact)
            job.status = "compiling"
            self._compile(job, artifact)
            job.status = "swapping"
            self._swap(open_artifact(artifact.root))
            job.status = "done"
            self.engine.counters["recompilations"] += 1
        except Exception as e:  # the job reports any failure; the server keeps the old model
            job.status, job.error = "failed", str(e)
            self.engine.counters["recompilations_failed"] += 1
            logger.error("re_isq %s failed: %s", job.id, e)
        finally:
            job.finished = time.time()
            with self._lock:
                self._active = None
        logger.info("re_isq %s %s in %.1fs", job.id, job.status, job.finished - job.created)

    @staticmethod
    def _check_kept_source(artifact) -> None:
        source = artifact.manifest["source"]
        if not source.get("kept_for_requantization"):
            raise ArtifactError("this artifact was compiled with --no-keep-source: it keeps no weights to re-quantize")
        for name, digest in source["kept_files"].items():
            path = artifact.root / name
            if not path.is_file():
                raise ArtifactError(f"the kept source weights {name} are missing from {artifact.root}")
            if sha256_file(path) != digest:
                raise ArtifactError(f"the kept source weights {name} failed their checksum")

    def _compile(self, job: RequantizeJob, artifact) -> None:
        source = artifact.root / artifact.manifest["source"]["kept_for_requantization"]
        target = artifact.manifest["target"]
        command = [sys.executable, "-m", "mistralrs.cli", "compile", "-m", str(source), "-o", str(artifact.root),
                   "--isq", job.ggml_type, "--backend", artifact.backend,
                   "--target", f"{target['device']}:{'+'.join([target['arch'], *target['requires']])}",
                   "--no-spot-check", "--progress-jsonl", "-q"]
        for key, value in artifact.manifest["backend"].get("options", {}).items():
            command += [f"--{key.replace('_', '-')}", str(value)]
        env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        logger.info("re_isq %s: %s", job.id, " ".join(command))
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                 preexec_fn=lambda: os.nice(COMPILE_NICENESS))
        other_output: deque[str] = deque(maxlen=5)
        for line in child.stdout:
            event = _event(line)
            if event is None:
                other_output.append(line.strip())
            else:
                job.progress = event
        if child.wait() != 0:
            raise RuntimeError(f"recompilation failed (exit {child.returncode}): {' | '.join(other_output)}")

    def _swap(self, artifact) -> None:
        done = threading.Event()
        self.engine.swap(artifact, self.engine.build_executor(artifact), done)
        if not done.wait(600):
            raise RuntimeError("the engine did not take the new model within 600 s")


def _event(line: str) -> str | None:
    try:
        return json.loads(line)["event"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return None
