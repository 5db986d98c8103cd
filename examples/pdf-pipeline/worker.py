#!/usr/bin/env python3
"""The lease-mode worker of examples/pdf-pipeline/lease.toml: it "loads a model" once, then
pulls jobs from steward until it is stopped. The same poison.pdf that crashes extract.py
crashes this worker (SIGSEGV); steward gives the job to another replica, and after
max_attempts quarantines it, while every other file is done."""
import json, os, signal, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "clients", "python"))
from steward_worker import Worker

time.sleep(0.3)  # load the model once
out_dir = os.environ.get("OUTPUT_DIR", "out")
os.makedirs(out_dir, exist_ok=True)


def handle(job):
    text = open(job.input, encoding="utf-8", errors="replace").read()
    if "%POISON%" in text:
        print(f"parsing {job.input}: malformed xref table", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGSEGV)
    job.progress(0.5, "parsed")
    stem = os.path.splitext(os.path.basename(job.input))[0]
    tmp = os.path.join(out_dir, stem + ".json.part")
    with open(tmp, "w") as f:
        json.dump({"source": os.path.basename(job.input), "words": len(text.split()), "worker": os.environ["STEWARD_SERVICE"]}, f)
    os.replace(tmp, os.path.join(out_dir, stem + ".json"))


Worker().run(handle)
