from fleetrun.cli.main import main

main()
