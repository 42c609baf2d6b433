"""`python -m entrypoints.cli`: the `padellm-ner` command."""

import sys

from . import main

sys.exit(main())
