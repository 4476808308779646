from aicredits.cli.main import main

main()
