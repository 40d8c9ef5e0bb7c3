from seisbind.cli import main

raise SystemExit(main())
