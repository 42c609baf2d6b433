"""`python -m padellm_ner.cli`, as the module it replaced could be run."""

import sys

from . import main

sys.exit(main())
