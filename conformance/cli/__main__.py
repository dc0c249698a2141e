"""`python -m conformance.cli`, as the tests and the suite's own commands run `kmsconf`."""

import sys

from conformance.cli import main

sys.exit(main())
