"""``python -m alkdev_storage`` runs the command line."""

from alkdev_storage.cli import main

raise SystemExit(main())
