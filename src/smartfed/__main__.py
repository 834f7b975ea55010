"""`python -m smartfed` is the `smartfed` command."""

import sys

from smartfed.cli.main import main

sys.exit(main())
