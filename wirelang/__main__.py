from wirelang.cli import main

main()
