"""``python -m {{ cookiecutter.package }}.cli``: the same as the console script."""

import sys

from . import main

sys.exit(main())
