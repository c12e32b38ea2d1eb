import sys

from kforge_cli.cli.main import main

sys.exit(main())
