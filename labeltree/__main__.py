from labeltree.cli import main

main()
