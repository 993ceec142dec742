from planet.cli import main

main()
