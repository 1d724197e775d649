from retail_dev.cli import main

raise SystemExit(main())
