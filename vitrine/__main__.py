import sys

from vitrine.cli.main import main

sys.exit(main())
