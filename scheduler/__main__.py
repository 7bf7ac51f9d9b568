import sys

from carbonsched.cli.main import main

sys.exit(main())
