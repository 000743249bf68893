import sys

from fnac.cli import main

sys.exit(main())
