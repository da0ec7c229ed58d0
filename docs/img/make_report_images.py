"""Regenerate docs/img/glorot_gradients.png (the demo's chapter-3 figure) and
docs/img/report.png (a screenshot of the demo's report.html in headless Chromium).

Run: .venv/bin/python docs/img/make_report_images.py   (about a minute; needs `chromium`)
"""

import shutil
import subprocess
import tempfile
from pathlib import Path

from gradprobe.report.demo import run_demo

HERE = Path(__file__).parent
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]  # fmt: skip

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo"
        run_demo(out=out, seed=0)
        shutil.copy(out / "glorot_gradients.png", HERE / "glorot_gradients.png")
        shot = HERE / "report.png"
        subprocess.run(
            [shutil.which("chromium") or "chromium", *FLAGS, f"--user-data-dir={tmp}/profile",
             "--window-size=1000,1250", f"--screenshot={shot}", (out / "report.html").as_uri()],
            check=True, capture_output=True,
        )  # fmt: skip
    for name in ("glorot_gradients.png", "report.png"):
        print(f"{HERE / name}: {(HERE / name).stat().st_size / 1000:.0f} kB")
