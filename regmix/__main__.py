import sys

from regmix.cli import main

sys.exit(main())
