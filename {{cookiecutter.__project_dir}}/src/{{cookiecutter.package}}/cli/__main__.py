"""``python -m {{ cookiecutter.package }}.cli``: the same as the console script."""

from . import main

raise SystemExit(main())
