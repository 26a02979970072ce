from vmsentry.cli import main

raise SystemExit(main())
