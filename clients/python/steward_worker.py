"""steward_worker: pull jobs from a steward lease-mode pipeline. One file, standard library only.

A long-running worker (one that loads its model once) asks steward for jobs over HTTP on
127.0.0.1. steward starts the worker with everything it needs in the environment:
STEWARD_URL, STEWARD_QUEUE, STEWARD_SERVICE (this replica's name) and STEWARD_TOKEN (this
replica's secret, which every request must carry). While a job runs, a background thread
sends heartbeats, so steward knows the worker is alive; if the worker dies, steward gives
the job to another replica.

    from steward_worker import Worker

    def handle(job):
        text = open(job.input).read()
        job.progress(0.5, "read")
        ...
        # return normally: the job is complete; raise: it failed (and is retried)

    Worker().run(handle)
"""

import json
import os
import sys
import threading
import traceback
import urllib.error
import urllib.request

__all__ = ["Worker", "Job", "LeaseLost", "Refused"]


class LeaseLost(Exception):
    """steward no longer considers this worker the holder of the job (it timed out, or
    the lease expired); stop working on it."""


class Refused(Exception):
    """steward did not take what the worker said: a completion whose expected output is
    missing counts as a failed attempt (the job is retried or quarantined)."""


class Job:
    def __init__(self, worker, data):
        self._worker = worker
        self.id = data["id"]
        self.attempt = data.get("attempt", 1)
        # A file name that is not UTF-8 comes byte for byte in input_hex; decoded as the OS
        # would decode it, so open(job.input) finds the very file.
        raw = data.get("input_hex")
        self.input = os.fsdecode(bytes.fromhex(raw)) if raw else data.get("input")
        self.payload = data.get("payload") or {}
        self._lease_ttl = data.get("lease_ttl_ms", 30000) / 1000.0
        self._done = threading.Event()
        self._beat = threading.Thread(target=self._heartbeats, daemon=True)
        self._beat.start()

    def _act(self, action, body=None):
        # Every action names the attempt this worker leased: an answer for an attempt that
        # has since been given to someone else is refused (409, LeaseLost).
        self._worker._post(f"/v1/jobs/{self.id}/{action}", dict(body or {}, attempt=self.attempt))

    def _heartbeats(self):
        # A third of the lease's life between beats leaves room for two to be lost.
        while not self._done.wait(self._lease_ttl / 3):
            try:
                self._act("heartbeat")
            except LeaseLost:
                return
            except OSError:
                pass

    def progress(self, fraction, message=None):
        self._act("progress", {"progress": float(fraction), "message": message})

    def complete(self):
        self._done.set()
        self._act("complete")

    def fail(self, error):
        self._done.set()
        self._act("fail", {"error": str(error)[-4000:]})


class Worker:
    def __init__(self, url=None, queue=None, name=None, token=None):
        self.url = (url or os.environ["STEWARD_URL"]).rstrip("/")
        self.queue = queue or os.environ["STEWARD_QUEUE"]
        self.name = name or os.environ.get("STEWARD_SERVICE", f"worker-{os.getpid()}")
        self.token = token or os.environ["STEWARD_TOKEN"]

    def _post(self, path, body=None, timeout=90):
        data = json.dumps(body or {}).encode()
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {self.token}",
                "X-Steward-Worker": self.name,
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                return (resp.status, json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            if e.code == 409:
                raise LeaseLost(e.read().decode(errors="replace")) from None
            if e.code == 422:
                raise Refused(e.read().decode(errors="replace")) from None
            raise

    def lease(self, wait=30):
        """The next job, or None after `wait` seconds without one."""
        status, data = self._post(f"/v1/queues/{self.queue}/lease?wait={int(wait)}s", timeout=wait + 30)
        return Job(self, data) if status == 200 else None

    def jobs(self, wait=30):
        """Jobs, one after another, for as long as the worker runs."""
        while True:
            job = self.lease(wait)
            if job is not None:
                yield job

    def run(self, handle, wait=30):
        """Calls `handle(job)` for every job: returning completes it, raising fails it."""
        for job in self.jobs(wait):
            try:
                handle(job)
            except LeaseLost:
                continue
            except Exception:
                try:
                    job.fail(traceback.format_exc())
                except LeaseLost:
                    pass
                continue
            try:
                job.complete()
            except LeaseLost:
                print(f"steward_worker: job {job.id} was taken back before it completed", file=sys.stderr)
            except Refused as why:
                print(f"steward_worker: job {job.id}: {why}", file=sys.stderr)
