from fedls.cli import main

main()
