"""Remove what an option turned off. No network, no ``git init``: the user decides those."""

import json
from pathlib import Path

# Rendered by cookiecutter as JSON inside a raw string (see pre_gen_project.py).
ANSWERS_JSON = r"""{{ cookiecutter | jsonify }}"""


def main() -> None:
    """Drop the LICENSE file when the user chose no license."""
    if json.loads(ANSWERS_JSON)["license"] == "none":
        Path("LICENSE").unlink()


if __name__ == "__main__":
    main()
