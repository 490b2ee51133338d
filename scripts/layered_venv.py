"""Create a virtual environment that sees every package of the current one, PyTorch included.

A baked project's venv is layered on the template's venv instead of installing PyTorch again
(several GB): a ``.pth`` file in the new venv's site-packages adds the current venv's
site-packages (``--system-site-packages`` would link the base interpreter, not this venv).
pip inside the new venv then counts the layered packages as installed.

Usage: python scripts/layered_venv.py DEST
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path


def site_packages(python: Path) -> Path:
    """The purelib site-packages folder of the interpreter ``python``."""
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip())


def create(dest: Path) -> Path:
    """Create the layered venv at ``dest`` (reused if it exists); return its python."""
    python = dest / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    if not python.exists():
        venv.EnvBuilder(with_pip=False, clear=False).create(dest)
    parent = Path(sysconfig.get_paths()["purelib"])
    line = f"import site; site.addsitedir({str(parent)!r})\n"
    (site_packages(python) / "_layered_on_parent_venv.pth").write_text(line, encoding="utf-8")
    return python


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="folder of the new venv")
    print(create(parser.parse_args().dest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
