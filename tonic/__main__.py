from tonic.cli import main

main()
