#!/usr/bin/env python3
"""A stand-in for an OCR step: reads one "PDF" (a text file here), writes its word count
and first line as JSON. One sample, poison.pdf, crashes it with SIGSEGV every time, the way
a bad PDF can crash a real pipeline's worker every time it is retried."""
import json, os, signal, sys, time

src, dst = sys.argv[1], sys.argv[2]
text = open(src, encoding="utf-8", errors="replace").read()
if "%POISON%" in text:
    print(f"parsing {src}: malformed xref table", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGSEGV)
time.sleep(0.05)  # pretend to work
tmp = dst + ".part"
with open(tmp, "w") as f:
    json.dump({"source": os.path.basename(src), "words": len(text.split()), "first_line": text.splitlines()[0] if text else ""}, f)
os.replace(tmp, dst)  # the output appears whole or not at all
