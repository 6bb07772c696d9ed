import sys

from worldrt.host.cli import main

sys.exit(main())
