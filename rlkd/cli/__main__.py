"""``python -m rlkd.cli``: the ``rlkd`` command."""

import sys

from rlkd.cli import main

sys.exit(main())
