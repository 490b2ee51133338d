"""Remove what an option turned off. No network, no ``git init``: the user decides those."""

from pathlib import Path

LICENSE = {{ cookiecutter.license | jsonify }}


def main() -> None:
    """Drop the LICENSE file when the user chose no license."""
    if LICENSE == "none":
        Path("LICENSE").unlink()


if __name__ == "__main__":
    main()
