"""Write requirements-control.lock: requirements.lock without torch and what only torch needs
(its CUDA libraries, triton) and the models' libraries (timm, torchvision). The control-plane
image installs it: the ledger's steps, the exit handler, the chart's hooks and MLflow server,
none of which imports torch (tests/test_control_image.py runs them with torch blocked).

    python images/control_lock.py   # `make lock` runs it; a test checks the file is current
"""

import re
import sys
from pathlib import Path

#: Distributions the control plane leaves out; nvidia-* (torch's CUDA libraries) too.
LEFT_OUT = {"torch", "torchvision", "timm", "triton"}
#: Kept whoever needs it: the image builds oblivio itself with it.
KEPT = {"setuptools"}


def control_lock(text: str) -> str:
    """The lock's entries (a ``name==version`` line and its indented lines) minus those left
    out and those only they need (the lock's ``# via`` lines say who needs what), hashes
    untouched."""
    blocks = {b.split("==", 1)[0]: b for b in re.split(r"(?m)^(?=\S)", text) if b.strip()}
    needers = {name: {line.strip("# ").split()[0] for line in block.splitlines()
                      if re.match(r"\s+#\s{3}\S", line) and "-c " not in line}
               for name, block in blocks.items()}
    out = {n for n in blocks if n in LEFT_OUT or n.startswith("nvidia-")}
    while True:
        orphans = {n for n, by in needers.items()
                   if n not in out | KEPT and by and by <= out}
        if not orphans:
            return "".join(b for n, b in blocks.items() if n not in out)
        out |= orphans


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    out = root / "requirements-control.lock"
    out.write_text(control_lock((root / "requirements.lock").read_text()))
    print(f"wrote {out}", file=sys.stderr)
