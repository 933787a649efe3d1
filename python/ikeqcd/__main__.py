from ikeqcd.cli import main

raise SystemExit(main())
