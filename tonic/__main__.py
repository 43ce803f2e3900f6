from tonic.launch import main

main()
